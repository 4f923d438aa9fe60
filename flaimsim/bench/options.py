"""Run options shared by ``flaimsim run``, ``bench`` and ``sweep``, and how they become a
:class:`RunConfig` (presets first, then explicit options)."""

from __future__ import annotations

import argparse
from typing import Any

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
    p.add_argument("--fit-tol", type=float, default=None,
                   help="stop each model fit once it moves less than this many noise "
                        "standard deviations (RMS per measured cell) over 25 iterations, "
                        "twice in a row; the iteration counts become caps (default: off)")
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
