"""Run options shared by ``flaimsim run``, ``bench`` and ``sweep``, and how they become a
:class:`RunConfig`.

Resolution, lowest first: RunConfig's defaults, the preset (``--preset``, else the data set's
own, :func:`~flaimsim.protocols.config.default_preset`: ``synthfs-small`` for SynthFS,
``paper`` for every other data set), the main job's settings (``run`` without
``--protocol``), then the options given. The help texts quote the same values.
"""

from __future__ import annotations

import argparse
import difflib
from dataclasses import asdict
from typing import Any

from ..parties.links import PRESETS as LINK_PRESETS
from ..protocols.config import (DATASETS, PRESETS, PROTOCOLS, ConfigError, RunConfig,
                                check_preset, default_preset)

MAIN_JOB_PROTOCOLS = ("central", "distaim", "naive-flaim", "aug-flaim-oracle",
                      "aug-flaim-private")
# The main job (``run`` without --protocol): T = 4 at ε = 1, DistAIM under real MPC (3 server
# processes) where the preset is small enough for it, else under the calibrated cost model.
MAIN_JOB = dict(rounds=4, epsilon=1.0)
REAL_MPC_PRESETS = ("synthfs-small",)


def main_job_defaults(preset: str) -> dict[str, Any]:
    """The main job's settings on top of ``preset``."""
    return dict(MAIN_JOB, mpc="real" if preset in REAL_MPC_PRESETS else "model")


def preset_values(preset: str) -> dict[str, Any]:
    """Every RunConfig field as ``preset`` sets it (RunConfig's default where it is silent)."""
    return {**asdict(RunConfig()), **PRESETS[preset]}


def _show(value: Any) -> str:
    return "none" if value is None else str(value)


def sweep_synthfs_values() -> dict[str, Any]:
    """What a sweep without --preset runs on SynthFS: the paper's setting with the paper's
    SynthFS sizes (:func:`flaimsim.bench.sweep.paper_defaults`)."""
    return {**preset_values("paper"), **PRESETS["synthfs-paper"]}


def _default_text(name: str, main_job: bool, sweep: bool = False) -> str:
    """"default: X" from the presets themselves, naming where SynthFS's (or the main job's)
    value differs, so that help cannot drift from the code. ``sweep``: SynthFS's values are
    :func:`sweep_synthfs_values`."""
    paper = _show(preset_values("paper")[name])
    small = _show((sweep_synthfs_values() if sweep else preset_values("synthfs-small"))[name])
    if name.startswith("synthfs_") or paper == small:  # SynthFS's own: its preset's value
        text = f"default: {small}"
    else:
        text = f"default: {paper}; synthfs: {small}"
    if main_job and name in main_job_defaults("paper"):
        job_paper, job_small = (_show(main_job_defaults(p)[name]) for p in ("paper",
                                                                            "synthfs-small"))
        if job_paper != job_small:
            text += f"; main job: {job_paper}, on synthfs {job_small}"
        elif job_paper != paper or job_small != small:
            text += f"; main job: {job_paper}"
    return text


def add_run_options(p: argparse.ArgumentParser, main_job: bool = False,
                    sweep: bool = False) -> None:
    """The run options in groups; ``main_job`` adds the main job's values to the help;
    ``sweep`` quotes a sweep's defaults (the paper's setting, on SynthFS its paper sizes)."""

    def opt(group: argparse._ArgumentGroup, flag: str, help: str, dest: str | None = None,
            **kw: Any) -> None:
        name = dest or flag.lstrip("-").replace("-", "_")
        group.add_argument(flag, dest=name, default=None,
                           help=f"{help} ({_default_text(name, main_job, sweep)})", **kw)

    job = " the main job's (run without --protocol)," if main_job else ""
    run = p.add_argument_group("what to run", "Settings resolve, lowest first: the preset "
                               f"(--preset, else the data set's own),{job} then the options "
                               "given.")
    run.add_argument("--protocol", action="append", choices=PROTOCOLS,
                     help="protocol to run (repeatable; default: the main job's five, "
                          f"{', '.join(MAIN_JOB_PROTOCOLS)})")
    run.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="starting configuration; options given override it (default: " + (
                         "paper; on synthfs the paper's SynthFS sizes, synthfs-paper)" if sweep
                         else "the data set's own: synthfs-small for synthfs, paper for any "
                         "other)"))
    opt(run, "--seed", "run seed; every seeded stream derives from it", type=int)

    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS + ("custom",), default=None,
                      help=f"data set; custom reads --data-name from --data-dir "
                           f"(default: {RunConfig.dataset})")
    data.add_argument("--data-name", default=None,
                      help="file stem for --dataset custom: <name>.csv and <name>-domain.json "
                           "(default: none)")
    data.add_argument("--data-dir", default=None,
                      help="folder with <name>.csv and <name>-domain.json (default for adult: "
                           "$FLAIMSIM_ADULT_DIR, else the copy shipped in the package)")
    data.add_argument("--label", default=None,
                      help="target column of the downstream classifier (default: the last)")
    opt(data, "--test-fraction", "share of the records held out to test the downstream "
        "classifier", type=float)
    opt(data, "--max-bins", "coarsen attributes to at most B values (public, data-independent)",
        type=int, metavar="B")
    opt(data, "--synthfs-features", "SynthFS: attributes d", type=int)
    opt(data, "--synthfs-records", "SynthFS: records per client", type=int)
    opt(data, "--synthfs-bins", "SynthFS: values per attribute", type=int)
    opt(data, "--synthfs-alpha", "SynthFS: Zipf exponent of the clients' centres (smaller: "
        "more skew)", type=float)

    privacy = p.add_argument_group("privacy")
    opt(privacy, "--epsilon", "ε of the (ε, δ)-DP guarantee, converted to a zCDP budget ρ",
        type=float)
    opt(privacy, "--delta", "δ of the (ε, δ)-DP guarantee", type=float)
    opt(privacy, "--alpha", "share of each round's budget spent on measurement", type=float)
    privacy.add_argument("--max-records", type=int, default=None, dest="max_records",
                         help="public upper bound on the training records N; sets the bit "
                              "lengths and SecAgg word widths seen on the wire (default: the "
                              "data set's documented size; a custom file's row count, marked "
                              "not public)")

    aim = p.add_argument_group("AIM")
    opt(aim, "--rounds", "T, the number of AIM rounds", type=int, metavar="T")
    opt(aim, "--mode", "fixed T or adaptive budget (adaptive: central only)",
        choices=("fixed", "adaptive"))
    opt(aim, "--workload-marginals", "random 3-way marginals in the workload W", type=int)
    opt(aim, "--workload-seed", "seed drawing the workload marginals", type=int)
    opt(aim, "--workload-degree", "size of each workload marginal (AIM's: 3-way)", type=int)
    opt(aim, "--max-model-size", "cap on the graphical model's size in MB",
        dest="max_model_size_mb", type=float, metavar="MB")
    opt(aim, "--iters-round", "model-fitting iterations per round", type=int)
    opt(aim, "--iters-final", "model-fitting iterations of the final fit", type=int)
    opt(aim, "--iters-budget", "approximate: at most this many fitting steps over the run's "
        "rounds, min(iters-round, B // T) a round (none: off; runs with T <= B / iters-round "
        "are unchanged)", type=int, metavar="B")
    opt(aim, "--fit-tol", "stop each model fit once it moves less than this many noise "
        "standard deviations (RMS per measured cell) over 25 iterations, twice in a row; the "
        "iteration counts become caps (none: off)", type=float)

    fed = p.add_argument_group("federation")
    opt(fed, "--clients", "K, the number of clients", type=int, metavar="K")
    opt(fed, "--partition", "how records are split over clients; iid on synthfs keeps its "
        "natural clients", choices=("iid", "dirichlet", "cluster", "natural"))
    opt(fed, "--beta", "Dirichlet concentration of --partition dirichlet", type=float)
    opt(fed, "--participation", "p, the Poisson rate at which a client takes part in a round",
        type=float, metavar="P")
    opt(fed, "--embedding", "the cluster split's embedding: umap (the paper's) or pca (faster)",
        dest="cluster_embedding", choices=("umap", "pca"))

    mpc = p.add_argument_group("MPC (DistAIM)")
    opt(mpc, "--mpc", "real: MPyC server processes; model: the calibrated cost table",
        choices=("real", "model"))
    opt(mpc, "--servers", "compute servers (3 tolerates one corruption, 2 none)", type=int,
        choices=(2, 3))
    opt(mpc, "--servers-at", "drive compute servers already running (`flaimsim serve`) at "
        "these control addresses, in party order, instead of spawning them",
        metavar="H0:C0,H1:C1,H2:C2")
    opt(mpc, "--connect-timeout", "with --servers-at: seconds to reach each standing server "
        "and hear its reply; past it the run is refused, naming the address and why",
        dest="connect_timeout_s", type=float, metavar="S")
    if not sweep:  # a sweep's parallel cells would all want the same ports
        opt(mpc, "--base-port", "ports of the compute servers this run spawns: P..P+m-1 for "
            "MPyC, P+m..P+2m-1 for their control connections (FLAIM's --aggregation servers: "
            "the next 2m); a port in use is refused, naming it (none: ports the system "
            "reports free)", type=int, metavar="P")
    opt(mpc, "--sharing", "client shares: compact (additive mod 2^b, b = width of the public "
        "record bound), shamir, or additive mod p", choices=("compact", "shamir", "additive"))
    opt(mpc, "--score", "DistAIM's quality score (l1 is AIM's)", choices=("l1", "l2"))
    opt(mpc, "--em", "secure selection: gumbel (exponential mechanism) or rnm "
        "(report-noisy-max, zCDP eps^2/2, run at eps_t/2)", choices=("gumbel", "rnm"))
    opt(mpc, "--score-frac-bits", "fractional bits of the public model marginal in secure "
        "scoring", type=int)
    opt(mpc, "--party-timeout", "seconds one server command may take before the watchdog "
        "stops the servers", dest="party_timeout_s", type=float, metavar="S")
    opt(mpc, "--check-model", "with --mpc real: price the run's steps with the calibrated "
        "cost table and report modelled against measured bytes per phase",
        action="store_const", const=True)
    opt(mpc, "--mpc-security", "MPyC's statistical security parameter kappa: each masked "
        "opening leaks at most 2^-kappa; none: the smallest kappa >= 30 that keeps the run's "
        "bound within delta/10", dest="mpc_security", type=int, metavar="KAPPA")
    opt(mpc, "--distaim-participation", "which clients' answers DistAIM uses: all (in round "
        "0) or poisson (each client's, once it is first sampled)", choices=("all", "poisson"))

    net = p.add_argument_group("network")
    presets = ", ".join(f"{k} ({n.latency_s * 1e3:g} ms, {n.bandwidth_bps / 1e6:g} Mbit/s)"
                        for k, n in LINK_PRESETS.items())
    opt(net, "--network", "emulate links in user space for every protocol socket (MPyC "
        "peers, client<->server, FLAIM's star; not the driver's control channel): "
        f"{presets} or LATENCY_MS,BANDWIDTH_MBIT; ',party' shares one access link per party "
        "(--mpc real for DistAIM); the record gets the measured wall time, the compute time "
        "of the same run through the relay with no latency and the model's estimate; "
        "'relay' alone routes every socket through the relay with no delay",
        metavar="lan|wan|MS,MBIT[,link|party]")
    opt(net, "--network-compute", "with --network: relay measures the compute time by the "
        "same run through the relay with no delay (the protocol runs three times: plain, "
        "emulated, relay only); none runs it once, over the emulated links, with no compute "
        "time or estimate (default: relay)", dest="network_compute", choices=("relay", "none"))

    flaim = p.add_argument_group("FLAIM")
    opt(flaim, "--dropout", "share of sampled clients that drop out of a round", type=float)
    opt(flaim, "--aggregation", "secagg: SecAgg+ at an aggregator; servers: the MPC servers",
        choices=("secagg", "servers"))
    opt(flaim, "--flaim-noise", "central: the aggregator noises exact sums of >= 2 choosers "
        "(a lone chooser's group adds noise shares); distributed: every client adds a noise "
        "share (KLS21), the aggregator sees noisy sums only", dest="flaim_noise",
        choices=("central", "distributed"))

    out = p.add_argument_group("output")
    out.add_argument("--out", default=None,
                     help="write config.json, result.json and ledgers here (default: none)")
    out.add_argument("--force", action="store_true",
                     help="replace an earlier run's files in --out, and run settings that "
                          "would take days (default: refuse)")


def resolve_preset(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> str:
    """The preset a run starts from: ``--preset``, else the data set's own."""
    preset = getattr(args, "preset", None)
    dataset = getattr(args, "dataset", None) or (defaults or {}).get("dataset")
    if dataset == "custom":
        dataset = getattr(args, "data_name", None) or "custom"
    if preset is not None:
        check_preset(preset, dataset or PRESETS[preset].get("dataset", RunConfig.dataset))
        return preset
    return default_preset(dataset or RunConfig.dataset)


def config_from_args(args: argparse.Namespace, defaults: dict[str, Any] | None = None
                     ) -> RunConfig:
    """RunConfig from the preset (:func:`resolve_preset`), ``defaults`` and the options."""
    fields = set(RunConfig.__dataclass_fields__)
    if getattr(args, "dataset", None) == "custom":
        if not args.data_name or not args.data_dir:
            raise ConfigError("--dataset custom needs --data-name and --data-dir")
        if args.data_name in DATASETS:
            raise ConfigError(f"--data-name {args.data_name!r} is a built-in data set's name; "
                              f"use --dataset {args.data_name} --data-dir DIR, or rename")
    values = dict(PRESETS[resolve_preset(args, defaults)])
    values.update(defaults or {})
    for key, value in vars(args).items():
        if key in fields and value is not None and key != "protocol":
            values[key] = value
    if values.get("servers_at") and getattr(args, "servers", None) is None:
        from flaimsim.parties.mpc.addresses import parse_addresses

        values["servers"] = len(parse_addresses(values["servers_at"]))  # one per address
    if getattr(args, "dataset", None) == "custom":
        values["dataset"] = args.data_name
    return RunConfig(**values)


# ---- options given by keyword (the Python API; the command lines go through it too) -------

# Keywords that are not RunConfig fields: the file stem of a custom data set.
EXTRA_OPTIONS = ("data_name",)
_NOT_OPTIONS = ("protocol", "extra")
_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,),
                                       "bool": (bool,)}


def option_names() -> tuple[str, ...]:
    """Every keyword :func:`run` and :func:`sweep` take as an option."""
    return tuple(n for n in RunConfig.__dataclass_fields__ if n not in _NOT_OPTIONS
                 ) + EXTRA_OPTIONS


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """The given options (``None`` dropped), each a known name of the right type; else a
    :class:`ConfigError` that names it (and the nearest known name)."""
    known = option_names()
    fields = RunConfig.__dataclass_fields__
    out = {}
    for name, value in options.items():
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"unknown option {name!r}{hint}")
        if value is None:
            continue
        kinds = [k.strip() for k in str(fields[name].type).split("|")] if name in fields \
            else ["str"]
        allowed = tuple(t for k in kinds for t in _TYPES.get(k, (object,)))
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            want = " or ".join(k for k in kinds if k != "None")
            raise ConfigError(f"option {name!r} must be {want}, got {value!r}")
        out[name] = value
    return out


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run options a command line gave (``dataset`` apart), as keywords of :func:`run`."""
    given = vars(args)
    return {k: given[k] for k in option_names() if k in given and k != "dataset"}


def protocol_list(protocols: Sequence[str] | str | None) -> list[str] | None:
    """``protocols`` as a list of known names (``None``: not given)."""
    if protocols is None:
        return None
    chosen = [protocols] if isinstance(protocols, str) else list(protocols)
    unknown = [p for p in chosen if p not in PROTOCOLS]
    if unknown or not chosen:
        raise ConfigError(f"protocols must name one or more of {PROTOCOLS}, got {chosen!r}")
    return chosen


def options_namespace(dataset: str | None, preset: str | None, options: dict[str, Any]
               ) -> argparse.Namespace:
    """What the command line's parser would give: every option (``None``: not given), the
    data set and the preset, each checked (:func:`check_options`)."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if dataset is not None and dataset not in DATASETS + ("custom",):
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {DATASETS} or "
                          "'custom' (with data_name= and data_dir=)")
    given = {**dict.fromkeys(option_names()), **check_options(options)}  # None: not given
    return argparse.Namespace(**{**given, "dataset": dataset, "preset": preset,
                                 "protocol": None})
