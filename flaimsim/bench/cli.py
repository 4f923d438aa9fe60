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
from typing import Any, Sequence

from ..protocols.config import DATASETS, PRESETS, PROTOCOLS, ConfigError, RunConfig

MAIN_JOB_PROTOCOLS = ("central", "distaim", "naive-flaim", "aug-flaim-oracle",
                      "aug-flaim-private")
# The main job: the small SynthFS preset with DistAIM under real MPC (3 server processes).
MAIN_JOB = dict(PRESETS["synthfs-small"], rounds=4, mpc="real", epsilon=1.0)


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", action="append", choices=PROTOCOLS,
                   help="protocol to run (repeatable); default: the main job's five")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="starting configuration (default for synthfs: synthfs-small)")
    p.add_argument("--dataset", choices=DATASETS + ("custom",), default=None)
    p.add_argument("--data-name", default=None, help="file stem for --dataset custom")
    p.add_argument("--data-dir", default=None, help="folder with <name>.csv and "
                   "<name>-domain.json (default for adult: ../shared/data/adult)")
    p.add_argument("--epsilon", type=float, default=None)
    p.add_argument("--delta", type=float, default=None)
    p.add_argument("--rounds", type=int, default=None, help="T, the number of AIM rounds")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--alpha", type=float, default=None, help="budget share for measurements")
    p.add_argument("--mode", choices=("fixed", "adaptive"), default=None)
    p.add_argument("--max-model-size", type=float, default=None, dest="max_model_size_mb")
    p.add_argument("--max-bins", type=int, default=None)
    p.add_argument("--workload-marginals", type=int, default=None)
    p.add_argument("--clients", type=int, default=None)
    p.add_argument("--partition", choices=("iid", "dirichlet", "cluster", "natural"),
                   default=None)
    p.add_argument("--beta", type=float, default=None)
    p.add_argument("--participation", type=float, default=None, help="Poisson rate p")
    p.add_argument("--mpc", choices=("real", "model"), default=None)
    p.add_argument("--servers", type=int, choices=(2, 3), default=None)
    p.add_argument("--sharing", choices=("shamir", "additive"), default=None)
    p.add_argument("--distaim-participation", choices=("all", "poisson"), default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--aggregation", choices=("secagg", "servers"), default=None)
    p.add_argument("--synthfs-features", type=int, default=None)
    p.add_argument("--synthfs-records", type=int, default=None)
    p.add_argument("--synthfs-bins", type=int, default=None)
    p.add_argument("--synthfs-alpha", type=float, default=None)
    p.add_argument("--workload-seed", type=int, default=None)
    p.add_argument("--label", default=None, help="target column (default: the last)")
    p.add_argument("--iters-round", type=int, default=None)
    p.add_argument("--iters-final", type=int, default=None)
    p.add_argument("--out", default=None, help="write config.json, result.json, ledgers here")


def config_from_args(args: argparse.Namespace, defaults: dict[str, Any] | None = None
                     ) -> RunConfig:
    fields = set(RunConfig.__dataclass_fields__)
    values = dict(defaults or {})
    preset = getattr(args, "preset", None)
    if preset is None and (getattr(args, "dataset", None) or values.get("dataset")) in (
            None, "synthfs"):
        preset = "synthfs-small"
    if preset:
        values.update(PRESETS[preset])
    for key, value in vars(args).items():
        if key in fields and value is not None and key != "protocol":
            values[key] = value
    if getattr(args, "dataset", None) == "custom":
        if not args.data_name or not args.data_dir:
            raise ConfigError("--dataset custom needs --data-name and --data-dir")
        values["dataset"] = args.data_name
    return RunConfig(**values)


def cmd_run(args: argparse.Namespace) -> int:
    from .runs import format_table, run_protocols

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
    from . import benches

    out = benches.run_bench(args.what, args)
    if args.json:
        print(json.dumps(out, default=str))
    else:
        print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Measure the MPC cost table for a data set's setting and cache it (``--mpc model``)."""
    from ..parties.cost_model import cache_dir, calibrate, load_or_calibrate
    from ..protocols.distaim import score_bound
    from ..protocols.prepare import prepare
    from ..mechanisms.accounting import AimSchedule, cdp_rho

    config = config_from_args(args, {"protocol": "distaim"})
    data = prepare(config)
    sigma = AimSchedule.fixed(cdp_rho(config.epsilon, config.delta), config.rounds,
                              config.rounds + len(data.workload.one_ways), config.alpha).sigma
    bound = score_bound(data.workload, data.train.n, sigma)
    if args.table:
        table = calibrate(config.servers, data.train.n, bound)
        from pathlib import Path
        Path(args.table).write_text(table.to_json())
        where = args.table
    else:
        table, _ = load_or_calibrate(config.servers, data.train.n, bound)
        where = str(cache_dir())
    summary = {"table": where, "key": table.key, "mpyc_version": table.mpyc_version,
               "count_bits": table.count_bits, "element_bytes": table.element_bytes,
               "max_relative_residual": table.max_relative_residual,
               "bytes_per_party_example": {
                   "decompose_per_cell": sum(b for b, _ in table.predict(
                       "decompose", cells=1000).values()) / 1000 / table.m,
                   "score_per_cell": sum(b for b, _ in table.predict(
                       "score", cells=100000, k=1).values()) / 100000 / table.m,
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
    from . import explain, plots, sweep, table  # each module owns its subcommand

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
