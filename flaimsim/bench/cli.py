"""The ``flaimsim`` command line: a thin layer over the Python API.

    flaimsim run      one or more protocols on one data set (no options: the main job)
    flaimsim bench    micro-benchmarks and per-protocol timings, printed as JSON
    flaimsim sweep    protocols over T, ε, partitions and seeds (parallel, resumable)
    flaimsim table    the DistAIM vs FLAIM trade-off table of a sweep directory
    flaimsim plot     PNG plots of a sweep directory
    flaimsim explain  a tiny run, step by step: who sends what to whom
    flaimsim serve    one MPC compute server on this host (drive it with run --servers-at)
    flaimsim data     prepare the paper's raw data sets in the private-pgm format
    flaimsim reproduce  the poster's trade-off table in the paper's setting, every data set
    flaimsim report   rebuild report.html (one self-contained page) from a result folder
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from flaimsim.bench.options import add_run_options, config_from_args
from flaimsim.bench.signals import Terminated, terminate_as_interrupt
from flaimsim.protocols.config import ConfigError


def cmd_run(args: argparse.Namespace) -> int:
    from flaimsim.bench.api import given_options, run
    from flaimsim.bench.runs import fit_width
    from flaimsim.protocols.privacy import format_privacy

    result = run(args.protocol, args.dataset, preset=args.preset, out=args.out,
                 force=args.force, **given_options(args))
    fit = (lambda text: text) if args.wide else fit_width
    print(result.header())
    print(result.table(wide=args.wide))
    for r in result.results:
        for note in r.notes:
            print(fit(f"note ({r.record['protocol']}): {note}"))
    from flaimsim.bench.emulated import format_network_lines

    for line in format_network_lines([r.record for r in result.results]):
        print(fit(line))
    for r in result.results:
        print(fit(format_privacy(r.record["protocol"], r.record["privacy"])))
    if args.profile:
        from flaimsim.parties.profile import format_profile

        for r in (r for r in result.results if r.record.get("profile")):
            print(f"\nprofile ({r.record['protocol']}, {r.record.get('bytes_source')}; "
                  f"{r.record.get('comm_rounds')} communication rounds):")
            print(format_profile(r.record.get("profile") or []))
    if args.out:
        print(fit(f"wrote {args.out}/config.json, result.json, table.csv, table.md and "
                  "report.html"))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from flaimsim.bench import benches

    out = benches.run_bench(args.what, args)
    if args.json:
        print(json.dumps(out, default=str))
    else:
        print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Measure the MPC cost table for a data set's setting and cache it (``--mpc model``)."""
    from flaimsim.parties.distaim.cost_model import cache_dir, calibrate
    from flaimsim.parties.distaim.options import DistAimOptions
    from flaimsim.protocols.distaim import cost_setting, cost_table
    from flaimsim.protocols.prepare import prepare

    config = config_from_args(args, {"protocol": "distaim"})
    setting = cost_setting(config, prepare(config))   # the run's widths, from public values
    if args.table:
        from flaimsim.protocols.mpc_security import mpyc_option
        from flaimsim.safe_output import write_text

        table = calibrate(DistAimOptions.of(config, setting.max_count,
                                            mpyc_option(setting.kappa)),
                          setting.score_bound, setting.select_epsilon)
        write_text(args.table, table.to_json())
        where = args.table
    else:
        table, _ = cost_table(config, setting)
        where = str(cache_dir())
    summary = {"table": where, "key": table.key, "mpyc_version": table.mpyc_version,
               "count_bits": table.count_bits, "element_bytes": table.element_bytes,
               "max_relative_residual": table.max_relative_residual,
               "bytes_per_party_example": {
                   "decompose_per_cell": sum(b for b, _ in table.predict(
                       "decompose", cells=1000, chunks=1).values()) / 1000 / table.m,
                   "score_per_multiplication": sum(b for b, _ in table.predict(
                       "score", k=1, mults=100000, steps=16).values()) / 100000 / table.m,
                   "select_k161": sum(b for b, _ in table.predict(
                       "select", k=161).values()) / table.m,
                   "measure_per_cell": sum(b for b, _ in table.predict(
                       "measure", cells=1000).values()) / 1000 / table.m}}
    print(json.dumps(summary, indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Become one compute server (party ``--party`` of the ``--peers`` list) on this host."""
    import os

    from flaimsim.parties.mpc.addresses import parse_address, parse_addresses

    peers = parse_addresses(args.peers)
    if len(peers) < 2:
        raise ConfigError(f"--peers lists {len(peers)} address: MPC needs at least 2 servers "
                          "(3 to tolerate one corrupted server); list every server's MPyC "
                          "address, in party order")
    if not 0 <= args.party < len(peers):
        raise ConfigError(f"--party {args.party} is not in 0..{len(peers) - 1} "
                          f"(--peers lists {len(peers)})")
    host, port = parse_address(args.control)
    if (host, port) in peers:
        raise ConfigError(f"--control {args.control} is also an MPyC address in --peers: the "
                          "driver's port and the servers' port must differ")
    check_port_free(host, port, "--control")
    check_port_free(*peers[args.party], "--peers (this server's own entry)")
    argv = [sys.executable, "-m", "flaimsim.parties.mpc.server_loop",
            *[a for h, p in peers for a in ("-P", f"{h}:{p}")], "-I", str(args.party),
            "--bit-length", str(args.bit_length), "--mix32-64bit",
            "--control-host", host, "--control-port", str(port),
            "--connect-timeout", str(args.connect_timeout),
            "--idle-timeout", str(args.idle_timeout),
            "--command-timeout", str(args.command_timeout),
            "--load", "flaimsim.parties.distaim.server_commands"]
    if args.threshold is not None:
        argv[argv.index("-I"):argv.index("-I")] = ["-T", str(args.threshold)]
    if args.publish:
        parse_address(args.publish)
        argv += ["--publish", args.publish]
    if args.mpc_security is not None:   # MPyC's -K; a driver checks it against its run's κ
        argv += ["-K", str(args.mpc_security)]
    print(f"flaimsim serve: party {args.party} of {len(peers)}, control {args.control}",
          file=sys.stderr, flush=True)
    os.environ["MPYC_MIX32_64BIT"] = "1"
    os.execv(sys.executable, argv)  # this process becomes the server (same pid, same signals)
    return 0  # not reached


def check_port_free(host: str, port: int, option: str) -> None:
    """One line naming the port and the option that moves it, before the server starts."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"{option}: unknown host {host!r} ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            why = ("is in use by another program" if exc.errno == errno.EADDRINUSE
                   else f"cannot be bound ({exc.strerror})")
            raise ConfigError(f"port {port} on {host} {why}: choose another port in "
                              f"{option}") from None


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run one MPC compute server on this host",
                       description="Run compute server --party i of the --peers list. Start "
                       "one per host, then drive them with `flaimsim run ... --servers-at "
                       "C0,C1,C2` (their --control addresses, in party order). The server "
                       "serves one driver after another; it exits if a driver or peer "
                       "disconnects mid-session, or on SIGTERM/Ctrl-C.")
    p.add_argument("--party", type=int, required=True, help="this server's index i")
    p.add_argument("--peers", required=True, metavar="H0:P0,H1:P1,H2:P2",
                   help="every server's MPyC address, in party order (the same list at all)")
    p.add_argument("--control", required=True, metavar="HOST:PORT",
                   help="where this server listens for the driver and the clients")
    p.add_argument("--publish", default=None, metavar="HOST:PORT",
                   help="address clients are told to send shares to (default: --control)")
    p.add_argument("--threshold", type=int, default=None, help="MPyC t (default (m-1)//2)")
    p.add_argument("--bit-length", type=int, default=32, help="default SecInt bit length")
    p.add_argument("--connect-timeout", type=float, default=600.0,
                   help="exit if the other servers are not all up within this many seconds")
    p.add_argument("--idle-timeout", type=float, default=0.0,
                   help="exit after this many seconds without a driver (0: never)")
    p.add_argument("--command-timeout", type=float, default=3600.0,
                   help="exit if one command runs longer than this (0: no limit)")
    p.add_argument("--mpc-security", type=int, default=None, metavar="KAPPA",
                   help="MPyC's statistical security parameter (default: MPyC's 30); a "
                        "driver refuses servers whose kappa differs from its run's")
    p.set_defaults(func=cmd_serve)


def cmd_data(args: argparse.Namespace) -> int:
    """``data prepare NAME RAW... --out DIR``: code raw files by the documented rule."""
    from pathlib import Path

    from flaimsim.mechanisms.raw_data import RAW_SPECS, prepare_raw, raw_dir_for, \
        write_prepared

    spec = RAW_SPECS[args.name]
    raw = [Path(p) for p in args.raw] or [raw_dir_for(args.name) / f for f in spec.files]
    fraction = spec.paper_subsample if args.paper_subsample else args.subsample
    prepared = prepare_raw(args.name, raw, fraction, args.seed, args.limit)
    out = write_prepared(prepared, args.out, raw)
    print(f"{args.name}: {prepared.codes.shape[0]} records of {prepared.raw_records} "
          f"(subsample {fraction or 'none'}), {len(prepared.columns)} columns -> "
          f"{out}/{args.name}.csv, {args.name}-domain.json, {args.name}-coding.json")
    return 0


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    from flaimsim.datasets.fetch import add_fetch_parser
    from flaimsim.datasets.status import add_list_parser
    from flaimsim.mechanisms.raw_data import RAW_SPECS

    p_data = sub.add_parser("data", help="fetch and prepare the paper's raw data sets")
    data_sub = p_data.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser(
        "prepare", help="raw files -> NAME.csv + NAME-domain.json (continuous attributes in "
        "32 equal-width bins, categorical ones coded by sorted value)")
    p.add_argument("name", choices=sorted(RAW_SPECS))
    p.add_argument("raw", nargs="*", help="raw file(s), in order (default: the data set's "
                   "files in $FLAIMSIM_RAW_DIR, the package, the data cache or "
                   "../shared/data/raw)")
    p.add_argument("--out", required=True, help="output directory")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--subsample", type=float, default=None,
                       help="keep this fraction of records (seeded)")
    group.add_argument("--paper-subsample", action="store_true",
                       help="the paper's fraction (covtype 0.2, census 0.3)")
    p.add_argument("--seed", type=int, default=0, help="subsampling seed")
    p.add_argument("--limit", type=int, default=None, help="read only N data lines per file")
    p.set_defaults(func=cmd_data)
    add_fetch_parser(data_sub)
    add_list_parser(data_sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flaimsim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Errors end in one line; --debug (anywhere on "
                                     "the line) shows their traceback.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run protocols and print the comparison table")
    add_run_options(p_run, main_job=True)
    p_run.add_argument("--wide", action="store_true",
                       help="print every column of the table (default: the columns that fit "
                            "120 characters; the full table goes to --out's table.csv/md)")
    p_run.add_argument("--profile", action="store_true",
                       help="also print each phase's secure operations: bytes, messages, "
                            "rounds, seconds (default: off; always in result.json as "
                            "'profile')")
    p_run.set_defaults(func=cmd_run)
    p_bench = sub.add_parser("bench", help="benchmarks, printed as JSON")
    p_bench.add_argument("what", choices=("central", "transport", "scoring", "em", "secagg",
                                               "noise", "options", "resharing",
                                               "flaim-options", "network", "fastpaths",
                                               "tbf"))
    add_run_options(p_bench)
    p_bench.add_argument("--json", action="store_true", help="one JSON object on one line")
    p_bench.add_argument("--repeats", type=int, default=1,
                         help="network: runs per measured time, medians taken (default: 1)")
    p_bench.add_argument("--bench-pairs", type=int, default=1,
                         help="fastpaths: plain/fast run pairs, alternating (default 1)")
    p_bench.set_defaults(func=cmd_bench)
    p_cal = sub.add_parser("calibrate", help="measure the MPC cost model for --mpc model")
    add_run_options(p_cal)
    p_cal.add_argument("--table", default=None, help="write the table here (default: cache)")
    p_cal.set_defaults(func=cmd_calibrate)
    # each owns a subcommand
    from flaimsim.bench import explain, plots, report, reproduce, sweep, table

    for module in (sweep, table, plots, explain, reproduce, report):
        module.add_parser(sub)
    add_serve_parser(sub)
    add_data_parser(sub)
    return parser


# Errors a user can cause (bad options or data, an unwritable --out, a party that failed):
# one line, exit 2. Anything else is a defect: still one line, exit 1, with --debug's hint.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError)


def error_line(exc: BaseException) -> str:
    """One line for ``exc``: its message's first line; a longer message (e.g. the servers'
    stderr tails after a party failure) is shown whole with --debug."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    more = f" (--debug shows {len(lines) - 1} more lines)" if len(lines) > 1 else ""
    return lines[0] + more


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug anywhere on the line (or FLAIMSIM_DEBUG=1): let errors end in their traceback.
    debug = "--debug" in argv or os.environ.get("FLAIMSIM_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    # MPyC parses sys.argv when first imported (prefix-matching its own options, e.g. --out
    # against --output-file); the driver has already parsed ours, so hide them from it.
    sys.argv = sys.argv[:1]
    with terminate_as_interrupt():
        try:
            return int(args.func(args) or 0)
        except (KeyboardInterrupt, Terminated) as exc:
            if debug:
                raise
            code = 143 if isinstance(exc, Terminated) else 130
            print(f"flaimsim: stopped by {'SIGTERM' if code == 143 else 'SIGINT (Ctrl-C)'}"
                  "; files already written in --out are complete, nothing half-written",
                  file=sys.stderr)
            return code
        except USER_ERRORS as exc:
            if debug:
                raise
            print(f"flaimsim: error: {error_line(exc)}", file=sys.stderr)
            return 2
        except Exception as exc:
            if debug:
                raise
            print(f"flaimsim: unexpected error {type(exc).__name__}: {error_line(exc)} "
                  "(rerun with --debug for the traceback)", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
