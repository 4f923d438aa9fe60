"""Sweeps: every combination of protocol × T × ε × partition × seed, run in parallel through
``concurrent.futures.ProcessPoolExecutor`` (spawn start method: jax and MPyC do not survive
fork), or on a Dask distributed cluster (``--scheduler tcp://HOST:8786``; ``--scheduler
local`` starts a ``LocalCluster``), resumable cell by cell.

On Dask a worker only computes: it returns the cell's files and the driver writes them, so
workers need no shared file system and a killed worker cannot leave half a cell. Dask
reschedules the cells of a worker that dies; whatever is still missing runs on the next
invocation with the same arguments (resume).

The sweep directory (its layout, cell keys, reading cells back, sweep.csv) is
:mod:`flaimsim.bench.sweep_dir`'s; its names are re-exported here.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Callable, Sequence

from flaimsim.bench.dask_sweep import run_on_dask
from flaimsim.bench.signals import Terminated, shielded, stop_processes, worker_init
from flaimsim.bench.sweep_dir import (CELLS, Cell, CellError, cell_key, load_cells, read_cell,
                                      read_config, set_aside, stale_options, write_sweep_csv)
from flaimsim.protocols.config import PROTOCOLS, ConfigError, RunConfig
from flaimsim.safe_output import OutFolder, write_json, write_text

DEFAULT_ROUNDS = (2, 4, 8, 10, 16, 32)
# The pair the trade-off table compares; add naive-flaim, aug-flaim-oracle and central with
# --protocols (each Adult cell costs 1–8 minutes of model fitting on 2 cores).
DEFAULT_PROTOCOLS = ("distaim", "aug-flaim-private")
# Fields that determine the prepared data (load, split, federation, workload).
_DATA_FIELDS = ("dataset", "data_dir", "max_bins", "label", "seed", "test_fraction",
                "partition", "clients", "beta", "cluster_embedding", "synthfs_features",
                "synthfs_records", "synthfs_alpha", "synthfs_bins", "workload_marginals",
                "workload_degree", "workload_seed")


@dataclass(frozen=True)
class SweepSpec:
    """The base configuration and the axes that vary."""

    base: RunConfig
    protocols: tuple[str, ...] = DEFAULT_PROTOCOLS
    rounds: tuple[int, ...] = DEFAULT_ROUNDS
    epsilons: tuple[float, ...] = (1.0,)
    partitions: tuple[str, ...] = ("iid",)
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for name in ("protocols", "rounds", "epsilons", "partitions", "seeds"):
            if not getattr(self, name):
                raise ConfigError(f"sweep axis {name!r} is empty")
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown:
            raise ConfigError(f"unknown protocol(s) {unknown}; choose from {PROTOCOLS}")

    def configs(self) -> list[RunConfig]:
        """One validated RunConfig per cell: repeat by repeat (seed by seed, in the order
        given), largest T first within a repeat. A sweep cut short (a sitting ends) so leaves
        whole repeats of the grid, a table at fewer repeats rather than none; long cells
        still start early."""
        out = [self.base.replace(protocol=p, rounds=t, epsilon=e, partition=part,
                                 seed=s).without_idle_budget()
               for p, t, e, part, s in product(self.protocols, self.rounds, self.epsilons,
                                               self.partitions, self.seeds)]
        repeat = {s: i for i, s in enumerate(self.seeds)}
        return sorted(out, key=lambda c: (repeat[c.seed], -c.rounds))

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.to_dict(), "protocols": list(self.protocols),
                "rounds": list(self.rounds), "epsilons": list(self.epsilons),
                "partitions": list(self.partitions), "seeds": list(self.seeds)}


@dataclass(frozen=True)
class CellOutcome:
    key: str
    ok: bool
    seconds: float
    error: str | None = None
    # The cell's files (name -> text), while they travel from a worker to the writer.
    files: dict[str, str] | None = field(default=None, compare=False, repr=False)


_PREPARED: dict[tuple, Any] = {}
PREPARED_KEPT = 5  # prepared data sets a worker keeps (oldest dropped first)


def _prepared(config: RunConfig):
    """prepare(config), cached per worker process for cells that share their data."""
    from flaimsim.protocols.prepare import prepare

    key = tuple(getattr(config, f) for f in _DATA_FIELDS)
    if key not in _PREPARED:
        # A few at a time (Adult's prepared set pickles to ~6 MB): a T's cells come
        # seed after seed, and re-preparing (split, k-means, workload) cost ~27 s a cell.
        while len(_PREPARED) >= PREPARED_KEPT:
            del _PREPARED[next(iter(_PREPARED))]
        _PREPARED[key] = prepare(config)
    return _PREPARED[key]


def compute_cell(config: RunConfig) -> CellOutcome:
    """Run one cell; its files (``<key>.ledger.csv``, ``<key>.json``) come back in
    ``files``, written by :func:`write_cell`. Never raises (but for SIGTERM/Ctrl-C)."""
    from flaimsim.protocols import runner

    key = cell_key(config)
    start = time.perf_counter()
    try:
        result = runner(config.protocol)(config, data=_prepared(config), progress=None)
        ledger_text = result.ledger.to_csv()
        privacy = result.loop.privacy.to_records() if result.loop is not None else None
        doc = json.dumps({"key": key, "config": config.to_dict(), "record": result.record,
                          "notes": list(result.notes), "privacy": privacy,
                          "ledger": f"{key}.ledger.csv"}, indent=1, default=str)
        return CellOutcome(key, True, time.perf_counter() - start,
                           files={f"{key}.ledger.csv": ledger_text, f"{key}.json": doc})
    except Exception as exc:  # a failed cell is reported, the sweep goes on
        return CellOutcome(key, False, time.perf_counter() - start,
                           f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")


def write_cell(outcome: CellOutcome, cells_dir: str | Path) -> CellOutcome:
    """Write a computed cell's files atomically, the JSON (which marks it done) last."""
    if outcome.files:
        for name in sorted(outcome.files, key=lambda n: n.endswith(".json")):
            write_text(Path(cells_dir) / name, outcome.files[name])
    return CellOutcome(outcome.key, outcome.ok, outcome.seconds, outcome.error)


def run_cell(config: RunConfig, cells_dir: str) -> CellOutcome:
    """Run one cell and write ``<key>.ledger.csv`` then ``<key>.json``; never raises."""
    return write_cell(compute_cell(config), cells_dir)


def dask_cell(config: RunConfig) -> CellOutcome:
    """One cell on a Dask worker (whose command line is not MPyC's): files come back."""
    _worker_init()
    return compute_cell(config)


def _worker_init() -> None:
    # MPyC parses sys.argv on import; the sweep's own options are not for it.
    sys.argv = sys.argv[:1]


def _pool_worker_init() -> None:
    _worker_init()
    worker_init()  # Ctrl-C is the driver's; SIGTERM unwinds the cell; no orphan workers


def _guarded(execute: Callable[[RunConfig, str], CellOutcome], config: RunConfig,
             cells_dir: str) -> CellOutcome:
    """``execute`` in a pool worker; SIGTERM (the driver stopping) ends the worker once the
    cell's ``finally`` blocks have run, instead of letting it take the next queued cell."""
    try:
        return execute(config, cells_dir)
    except Terminated:
        os._exit(143)


@dataclass
class SweepReport:
    total: int
    skipped: list[str] = field(default_factory=list)
    done: list[CellOutcome] = field(default_factory=list)
    failed: list[CellOutcome] = field(default_factory=list)


def run_sweep(spec: SweepSpec, out_dir: str | Path, jobs: int = 2,
              execute: Callable[[RunConfig, str], CellOutcome] = run_cell,
              show_progress: bool | None = None, scheduler: str | None = None
              ) -> SweepReport:
    """Run the missing cells (``jobs`` worker processes; 1 runs in this process; or on the
    Dask cluster at ``scheduler``, ``"local"`` for a LocalCluster of ``jobs`` workers), then
    write sweep.csv. ``execute`` must be a module-level function when ``jobs > 1``; Dask runs
    :func:`dask_cell` and writes here. The folder is locked for the sweep's duration (a
    second driver is refused). On SIGTERM or Ctrl-C the workers are stopped, sweep.csv
    lists the cells done, and the signal's exception goes on up."""
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    out = Path(out_dir)
    with OutFolder.claim(out, resumable=True):  # one driver per sweep folder
        return _run_claimed(spec, out, jobs, execute, show_progress, scheduler)


def _run_claimed(spec: SweepSpec, out: Path, jobs: int,
                 execute: Callable[[RunConfig, str], CellOutcome],
                 show_progress: bool | None, scheduler: str | None) -> SweepReport:
    cells_dir = out / CELLS
    cells_dir.mkdir(parents=True, exist_ok=True)
    for stale in cells_dir.glob(".*.tmp-*"):  # left by a writer killed mid-write
        stale.unlink(missing_ok=True)
    configs = spec.configs()
    keys = [cell_key(c) for c in configs]
    # A later sweep into the same directory adds its cells (e.g. more protocols or T):
    # table and plot read the union; "runs" keeps every invocation's axes.
    previous = read_config(out)
    listed = list(dict.fromkeys([*previous.get("cells", []), *keys]))
    runs = [*previous.get("runs", []), {**spec.to_dict(), "jobs": jobs}]
    write_json(out / "sweep-config.json",
               {**spec.to_dict(), "jobs": jobs, "cells": listed, "runs": runs}, indent=1)
    for config, k in zip(configs, keys):  # a cut, wrong-shape or stale cell runs again
        path = cells_dir / f"{k}.json"
        if path.is_file():
            try:
                cell = read_cell(path)
            except CellError as exc:
                where = set_aside(path)
                print(f"sweep: {exc}; moved to {where.relative_to(out)}, running it again",
                      file=sys.stderr)
                continue
            if stale := stale_options(cell, config):
                where = set_aside(path, "stale")
                print(f"sweep: {path.name} ran with other values of {', '.join(stale)} (a "
                      f"default changed since); moved to {where.relative_to(out)}, running "
                      "it again", file=sys.stderr)
    todo = [c for c, k in zip(configs, keys) if not (cells_dir / f"{k}.json").is_file()]
    report = SweepReport(total=len(configs),
                         skipped=[k for k in keys if (cells_dir / f"{k}.json").is_file()])
    show = sys.stderr.isatty() if show_progress is None else show_progress
    bar = None
    if show and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="sweep", unit="cell")

    def finished(outcome: CellOutcome) -> None:
        (report.done if outcome.ok else report.failed).append(outcome)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"failed={len(report.failed)}")
        else:
            status = "ok" if outcome.ok else "FAILED"
            print(f"[{len(report.done) + len(report.failed)}/{len(todo)}] {outcome.key} "
                  f"{status} ({outcome.seconds:.0f} s)", file=sys.stderr, flush=True)

    try:
        if scheduler and todo:
            run_on_dask(todo, scheduler, jobs, dask_cell,
                        lambda c, why: CellOutcome(cell_key(c), False, 0.0, why),
                        lambda o: finished(write_cell(o, cells_dir)))
        elif jobs == 1 or len(todo) <= 1:
            for c in todo:
                finished(execute(c, str(cells_dir)))
        else:
            _run_pool(todo, jobs, execute, str(cells_dir), finished)
    except (KeyboardInterrupt, Terminated):
        # Stopped: finished cells are on disk (each written atomically), the cells in
        # progress were discarded with their workers; sweep.csv covers what is done.
        with shielded():
            if bar is not None:
                bar.close()
                bar = None
            _write_summary(out, report, listed)
        raise
    finally:
        if bar is not None:
            bar.close()
    _write_summary(out, report, listed)
    return report


def _run_pool(todo: Sequence[RunConfig], jobs: int,
              execute: Callable[[RunConfig, str], CellOutcome], cells_dir: str,
              finished: Callable[[CellOutcome], None]) -> None:
    """The cells on a spawn pool of ``jobs`` workers. On SIGTERM or Ctrl-C the queued cells
    are cancelled and the workers stopped (SIGTERM, then SIGKILL after a grace period)
    before the signal goes on up: no worker outlives the driver."""
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx,
                               initializer=_pool_worker_init)
    try:
        futures: list[tuple[RunConfig, Future]] = [
            (c, pool.submit(_guarded, execute, c, cells_dir)) for c in todo]
        index = {id(f): c for c, f in futures}
        for fut in as_completed([f for _, f in futures]):
            try:
                finished(fut.result())
            except Exception as exc:  # the worker process itself died
                c = index[id(fut)]
                finished(CellOutcome(cell_key(c), False, 0.0, f"{type(exc).__name__}: {exc}"))
    except BaseException:
        with shielded():
            workers = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            stop_processes(workers)
        raise
    pool.shutdown(wait=True)


def _write_summary(out: Path, report: SweepReport, listed: Sequence[str]) -> None:
    failures = [{"key": f.key, "error": f.error} for f in report.failed]
    write_json(out / "failures.json", failures, indent=1)
    write_sweep_csv(out, listed)


# ---- command line --------------------------------------------------------------------------

def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _float_list(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_parser(sub: argparse._SubParsersAction) -> None:
    from flaimsim.bench.options import add_run_options

    p = sub.add_parser("sweep", help="run protocols over T, ε, partitions and seeds",
                       conflict_handler="resolve")
    add_run_options(p, sweep=True)
    p.add_argument("--protocols", type=_str_list, default=None,
                   help=f"comma list (default: {','.join(DEFAULT_PROTOCOLS)})")
    p.add_argument("--rounds", type=_int_list, default=DEFAULT_ROUNDS,
                   help="comma list of T (default: 2,4,8,10,16,32)")
    p.add_argument("--epsilon", type=_float_list, default=(1.0,), help="comma list of ε")
    p.add_argument("--partition", type=_str_list, default=None,
                   help="comma list of iid, dirichlet, cluster, natural")
    p.add_argument("--repeats", type=int, default=1, help="R: seeds seed..seed+R-1")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                   help="run the cells on this Dask distributed scheduler (`local`: a "
                        "LocalCluster of --jobs workers); default: a local process pool")
    p.add_argument("--out", required=True, help="sweep directory (resumable)")
    p.set_defaults(func=command)
    p.epilog = "Without --preset the sweep uses the paper's setting (preset 'paper')."


def paper_defaults(args: argparse.Namespace) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Without ``--preset``, a sweep runs in the paper's setting (``PRESETS["paper"]``); on
    SynthFS with the paper's SynthFS sizes (``synthfs-paper``)."""
    from flaimsim.protocols.config import PRESETS

    if getattr(args, "preset", None) is not None:
        return args, {}
    defaults = (dict(PRESETS["synthfs-paper"])
                if getattr(args, "dataset", None) in (None, "synthfs") else {})
    return argparse.Namespace(**{**vars(args), "preset": "paper"}), defaults


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    from flaimsim.bench.options import config_from_args

    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    axis_free = argparse.Namespace(**{**vars(args), "rounds": None, "epsilon": None,
                                      "partition": None, "protocol": None})
    base = config_from_args(*paper_defaults(axis_free))
    protocols = args.protocols or tuple(args.protocol or ()) or DEFAULT_PROTOCOLS
    partitions = args.partition or (base.partition,)
    return SweepSpec(base, tuple(protocols), tuple(args.rounds), tuple(args.epsilon),
                     tuple(partitions), tuple(range(base.seed, base.seed + args.repeats)))


SWEEP_AXES = ("rounds", "epsilon", "partition")


def spec_from_options(protocols: Sequence[str] | str | None = None,
                      dataset: str | None = None, *, rounds: Sequence[int] | None = None,
                      epsilons: Sequence[float] | None = None,
                      partitions: Sequence[str] | None = None, repeats: int = 1,
                      preset: str | None = None, **options: Any) -> SweepSpec:
    """The sweep of :func:`flaimsim.sweep` and ``flaimsim sweep``: axes as lists, every
    other option checked by name and type (:func:`~flaimsim.bench.options.check_options`),
    resolved by :func:`spec_from_args`."""
    from flaimsim.bench.options import options_namespace, protocol_list

    axes = [a for a in ("epsilon", "partition") if a in options]
    if axes:
        raise ConfigError(f"{axes[0]!r} is a sweep axis: give rounds=, epsilons= or "
                          "partitions= as lists")
    chosen = protocol_list(protocols)
    args = options_namespace(dataset, preset, options)
    for name, value in (("rounds", rounds), ("epsilons", epsilons),
                        ("partitions", partitions)):
        if value is not None and (not isinstance(value, (list, tuple, range)) or not value):
            raise ConfigError(f"{name} must be a non-empty list, got {value!r}")
    if not isinstance(repeats, int) or isinstance(repeats, bool):
        raise ConfigError(f"repeats must be an int, got {repeats!r}")
    args.protocols = tuple(chosen) if chosen else None
    args.rounds = tuple(rounds) if rounds is not None else DEFAULT_ROUNDS
    args.epsilon = tuple(epsilons) if epsilons is not None else (1.0,)
    args.partition = tuple(partitions) if partitions is not None else None
    args.repeats = repeats
    return spec_from_args(args)


def command(args: argparse.Namespace) -> int:
    from flaimsim.bench.options import given_options

    spec = spec_from_options(args.protocols or args.protocol, args.dataset,
                             rounds=args.rounds, epsilons=args.epsilon,
                             partitions=args.partition, repeats=args.repeats,
                             preset=args.preset, **{k: v for k, v in given_options(args).items()
                                                    if k not in SWEEP_AXES})
    n = len(spec.configs())
    print(f"sweep: {n} cells ({len(spec.protocols)} protocols × {len(spec.rounds)} T × "
          f"{len(spec.epsilons)} ε × {len(spec.partitions)} partitions × "
          f"{len(spec.seeds)} seeds) into {args.out}, "
          f"{'Dask at ' + args.scheduler if args.scheduler else f'{args.jobs} jobs'}",
          file=sys.stderr)
    start = time.perf_counter()
    try:
        report = run_sweep(spec, args.out, jobs=args.jobs, scheduler=args.scheduler)
    except (KeyboardInterrupt, Terminated) as exc:
        done = len(load_cells(args.out, [cell_key(c) for c in spec.configs()],
                              on_corrupt=lambda e: None))
        name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT (Ctrl-C)"
        print(f"sweep: stopped by {name}: {done} of {n} cells done and kept in {args.out}, "
              "cells in progress discarded; rerun the same command to resume",
              file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    print(f"sweep: {len(report.done)} run, {len(report.skipped)} already done, "
          f"{len(report.failed)} failed, {time.perf_counter() - start:.0f} s; "
          f"wrote {args.out}/sweep.csv")
    for f in report.failed:
        first = (f.error or "").splitlines()[0] if f.error else ""
        print(f"FAILED {f.key}: {first}", file=sys.stderr)
    if report.failed:
        print(f"details in {args.out}/failures.json; rerun the same command to retry",
              file=sys.stderr)
    return 1 if report.failed else 0


__all__ = ["SweepSpec", "SweepReport", "CellOutcome", "Cell", "CellError", "cell_key",
           "read_cell", "run_cell",
           "compute_cell", "write_cell", "dask_cell",
           "run_sweep", "load_cells", "write_sweep_csv", "spec_from_options", "DEFAULT_ROUNDS",
           "DEFAULT_PROTOCOLS"]
