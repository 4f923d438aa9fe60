"""The ``flaimsim`` command line: a thin layer over the Python API.

    flaimsim run      one or more protocols on one data set (no options: the main job)
    flaimsim bench    micro-benchmarks and per-protocol timings, printed as JSON
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from ..protocols.config import DATASETS, PROTOCOLS, ConfigError, RunConfig

MAIN_JOB_PROTOCOLS = ("central", "distaim", "naive-flaim", "aug-flaim-oracle",
                      "aug-flaim-private")
# The main job: small enough for real MPC with 3 server processes in minutes on 2 cores.
MAIN_JOB = dict(dataset="synthfs", clients=20, synthfs_features=6, synthfs_records=200,
                max_bins=8, workload_marginals=8, rounds=4, mpc="real", epsilon=1.0,
                participation=0.5, iters_round=100, iters_final=300)


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", action="append", choices=PROTOCOLS,
                   help="protocol to run (repeatable); default: the main job's five")
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
    p.add_argument("--iters-round", type=int, default=None)
    p.add_argument("--iters-final", type=int, default=None)
    p.add_argument("--out", default=None, help="write config.json, result.json, ledgers here")


def config_from_args(args: argparse.Namespace, defaults: dict[str, Any] | None = None
                     ) -> RunConfig:
    fields = set(RunConfig.__dataclass_fields__)
    values = dict(defaults or {})
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
