"""The ``flaimsim`` command line: a thin layer over the Python API.

    flaimsim run      one or more protocols on one data set (no options: the main job)
    flaimsim bench    micro-benchmarks and per-protocol timings, printed as JSON
    flaimsim sweep    protocols over T, ε, partitions and seeds (parallel, resumable)
    flaimsim table    the DistAIM vs FLAIM trade-off table of a sweep directory
    flaimsim plot     PNG plots of a sweep directory
    flaimsim explain  a tiny run, step by step: who sends what to whom
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from flaimsim.bench.options import MAIN_JOB, MAIN_JOB_PROTOCOLS, add_run_options, config_from_args
from flaimsim.protocols.config import ConfigError


def cmd_run(args: argparse.Namespace) -> int:
    from flaimsim.bench.runs import format_table, run_protocols

    main_job = not args.protocol
    protocols = args.protocol or list(MAIN_JOB_PROTOCOLS)
    config = config_from_args(args, MAIN_JOB if main_job else None).replace(
        protocol=protocols[0])
    results = run_protocols(config, protocols, args.out)
    print(format_table([r.record for r in results]))
    for r in results:
        for note in r.notes:
            print(f"note ({r.record['protocol']}): {note}")
    if args.out:
        print(f"wrote {args.out}/config.json and {args.out}/result.json")
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
    from flaimsim.parties.mpc.cost_model import cache_dir, calibrate, load_or_calibrate
    from flaimsim.protocols.distaim import aggregate_bound, offset_std, score_bound
    from flaimsim.protocols.prepare import prepare
    from flaimsim.mechanisms.accounting import AimSchedule, cdp_rho

    config = config_from_args(args, {"protocol": "distaim"})
    data = prepare(config)
    sigma = AimSchedule.fixed(cdp_rho(config.epsilon, config.delta), config.rounds,
                              config.rounds + len(data.workload.one_ways), config.alpha).sigma
    max_count = aggregate_bound(config, data)
    bound = score_bound(data.workload, max_count, offset_std(sigma, config.servers))
    if args.table:
        table = calibrate(config.servers, max_count, bound, frac_bits=config.score_frac_bits)
        from pathlib import Path
        Path(args.table).write_text(table.to_json())
        where = args.table
    else:
        table, _ = load_or_calibrate(config.servers, max_count, bound,
                                     frac_bits=config.score_frac_bits)
        where = str(cache_dir())
    summary = {"table": where, "key": table.key, "mpyc_version": table.mpyc_version,
               "count_bits": table.count_bits, "element_bytes": table.element_bytes,
               "max_relative_residual": table.max_relative_residual,
               "bytes_per_party_example": {
                   "decompose_per_cell": sum(b for b, _ in table.predict(
                       "decompose", cells=1000).values()) / 1000 / table.m,
                   "score_per_multiplication": sum(b for b, _ in table.predict(
                       "score", k=1, mults=100000, steps=16).values()) / 100000 / table.m,
                   "select_k161": sum(b for b, _ in table.predict(
                       "select", k=161).values()) / table.m,
                   "measure_per_cell": sum(b for b, _ in table.predict(
                       "measure", cells=1000).values()) / 1000 / table.m}}
    print(json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flaimsim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run protocols and print the comparison table")
    add_run_options(p_run)
    p_run.set_defaults(func=cmd_run)
    p_bench = sub.add_parser("bench", help="benchmarks, printed as JSON")
    p_bench.add_argument("what", choices=("central", "transport", "scoring", "em", "secagg"))
    add_run_options(p_bench)
    p_bench.add_argument("--json", action="store_true", help="one JSON object on one line")
    p_bench.set_defaults(func=cmd_bench)
    p_cal = sub.add_parser("calibrate", help="measure the MPC cost model for --mpc model")
    add_run_options(p_cal)
    p_cal.add_argument("--table", default=None, help="write the table here (default: cache)")
    p_cal.set_defaults(func=cmd_calibrate)
    from flaimsim.bench import explain, plots, sweep, table  # each module owns its subcommand

    for module in (sweep, table, plots, explain):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # MPyC parses sys.argv when first imported (prefix-matching its own options, e.g. --out
    # against --output-file); the driver has already parsed ours, so hide them from it.
    sys.argv = sys.argv[:1]
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"flaimsim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
