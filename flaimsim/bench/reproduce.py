"""``flaimsim reproduce``: the poster's communication trade-off, in the paper's setting, for
every data set available here, with the poster's row beside ours.

Per data set it runs a sweep (``bench.sweep``: parallel or on Dask with ``--scheduler``,
resumable, progress bar) of central
AIM, DistAIM, NaiveFLAIM and AugFLAIM (Private) in modelled mode (``--mpc model``) over the
paper's T grid, in ``PRESETS["paper"]``. Then it writes into ``OUT``:

    OUT/<dataset>/...                  the sweep directory (cells, table.md via bench.table)
    OUT/<dataset>/error-vs-T.png       workload error against T per protocol (Fig. 3b)
    OUT/<dataset>/traffic-vs-T.png     client and server-side traffic against T
    OUT/reproduce.md, reproduce.csv    poster row beside ours, per data set, with timings
    OUT/reproduce.json                 the same rows, the poster's and the timings

The rows, the gaps to the poster and the report's text are
:mod:`flaimsim.bench.paper_table`'s.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from flaimsim.bench.paper_table import (DATASET_ORDER, POSTER, format_report, formula_bytes,
                                        our_row, throughput_gap)
from flaimsim.bench.provenance import provenance
from flaimsim.bench.sweep import SweepReport, SweepSpec, run_sweep
from flaimsim.bench.sweep_dir import cell_key, load_cells
from flaimsim.safe_output import open_atomic, write_json, write_text
from flaimsim.protocols.config import PRESETS, RunConfig

# The paper's T grid (sweep_configs/paper/communication_tracking.json: global_rounds).
PAPER_ROUNDS = (2, 4, 8, 10, 16, 32, 64, 96, 128, 160, 192)
PROTOCOLS = ("central", "distaim", "naive-flaim", "aug-flaim-private")
QUICK_DATASETS = ("adult", "magic")
QUICK_ROUNDS = (2, 4, 8)
# --quick: the table's pair only (central and NaiveFLAIM cells cost as much as the others).
QUICK_PROTOCOLS = ("distaim", "aug-flaim-private")
DEFAULT_REPEATS = 5  # the authors ran 10 (--repeats 10)


def available_datasets() -> list[str]:
    """The poster's data sets that can be loaded here (Adult prepared, others from raw)."""
    from flaimsim.mechanisms.data import DataError, default_data_dir
    from flaimsim.mechanisms.raw_data import RAW_SPECS, RawDataError, raw_dir_for

    out = []
    for name in DATASET_ORDER:
        try:
            raw_dir_for(name) if name in RAW_SPECS else default_data_dir(name)
            out.append(name)
        except (DataError, RawDataError):
            continue
    return out


def how_to_get(missing: Sequence[str]) -> str:
    """What to run for each missing data set (the fetch command, or why there is none)."""
    from flaimsim.datasets.catalog import REMOTE

    fetchable = [d for d in missing if d in REMOTE]
    other = [d for d in missing if d not in REMOTE]
    parts = [f"`flaimsim data fetch {d}`" for d in fetchable]
    if other:
        parts.append(f"{other}: no public copy is fetched by flaimsim (docs/data.md); pass "
                     f"--datasets without them")
    return "; ".join(parts)


def base_config(dataset: str, **overrides: Any) -> RunConfig:
    """The paper's setting on ``dataset``, modelled MPC, ε = 1."""
    return RunConfig(**{**PRESETS["paper"], "dataset": dataset, "mpc": "model",
                        "epsilon": 1.0, **overrides})


def planned_cells(spec: SweepSpec) -> dict[int, list[str]]:
    """Each repeat's (seed's) planned cell keys, in the order the sweep runs them."""
    by_seed: dict[int, list[str]] = {}
    for config in spec.configs():
        by_seed.setdefault(config.seed, []).append(cell_key(config))
    return by_seed


def finished_cells(sweep_dir: Path, keys: Iterable[str]) -> set[str]:
    """Those of ``keys`` whose cell file is written (a cell's JSON is written last)."""
    return {k for k in keys if (sweep_dir / "cells" / f"{k}.json").is_file()}


def whole_repeats(sweep_dir: Path, spec: SweepSpec) -> tuple[list[str] | None, int]:
    """The finished cells to report while a sweep is unfinished, and how many repeats they
    make: the repeats (seeds) whose every planned cell is finished, so each T is averaged
    over the same repeats. (None, 0) when no repeat is whole yet (every finished cell is
    reported, as a partial table) or every planned cell is finished (all of them)."""
    by_seed = planned_cells(spec)
    whole = [s for s, keys in by_seed.items()
             if len(finished_cells(sweep_dir, keys)) == len(keys)]
    if not whole or len(whole) == len(by_seed):
        return None, len(whole)
    return [k for s in whole for k in by_seed[s]], len(whole)


def stamp_png(path: Path, text: str) -> None:
    """Write ``text`` under the plot and into its PNG metadata (``Comment``)."""
    from PIL import Image, ImageDraw, PngImagePlugin

    with Image.open(path) as img:
        img.load()
        out = Image.new("RGB", (img.width, img.height + 22), "white")
        out.paste(img.convert("RGB"), (0, 0))
    ImageDraw.Draw(out).text((6, img.height + 5), text, fill=(90, 90, 90))
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", text)
    out.save(path, pnginfo=info)


def plot_dataset(sweep_dir: Path, keys: Sequence[str] | None = None) -> list[Path]:
    from flaimsim.bench.plots import plot_error, plot_traffic
    from flaimsim.bench.trade_off import summarise

    summaries = summarise(load_cells(sweep_dir, keys), networks=())
    groups = sorted({(s.dataset, s.epsilon, s.partition) for s in summaries})
    out = []
    for g in groups:
        mine = [s for s in summaries if (s.dataset, s.epsilon, s.partition) == g]
        out.append(plot_error(mine, g, sweep_dir / "error-vs-T.png"))
        out.append(plot_traffic(mine, g, sweep_dir / "traffic-vs-T.png"))
    p = provenance()
    for path in out:
        stamp_png(path, f"flaimsim {p['commit']}, {p['date']}, {p['machine']}")
    return out


def warm_caches(spec: SweepSpec, sweep_dir: Path | None = None) -> None:
    """Prepare each seed's data once here, so that the workers find the raw data set's coded
    copy and the UMAP embedding in the cache instead of computing them side by side; a seed
    whose cells are all in ``sweep_dir`` already is skipped (a resumed sitting of a finished
    data set spent minutes on Magic's UMAP for nothing)."""
    from flaimsim.protocols.prepare import prepare

    for seed, keys in planned_cells(spec).items():
        if sweep_dir is None or len(finished_cells(sweep_dir, keys)) < len(keys):
            prepare(spec.base.replace(seed=seed))


SITTINGS = "sittings.json"


def open_sitting(sweep_dir: Path, prov: dict[str, str], where: str) -> int:
    """Append this invocation to ``sweep_dir/sittings.json`` as it starts (a resumed sweep
    runs in several sittings, and one may be interrupted); returns its index."""
    path = sweep_dir / SITTINGS
    sittings = json.loads(path.read_text()) if path.is_file() else []
    sittings.append({"date": prov["date"], "started": time.time(),
                     "host": os.uname().nodename, "commit": prov["commit"], "where": where,
                     "seconds": None, "cells": None, "failed": None, "load": None})
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, sittings, indent=1)
    return len(sittings) - 1


def close_sitting(sweep_dir: Path, index: int | None, timing: dict[str, Any]
                  ) -> dict[str, Any]:
    """Record a finished sitting's wall time and cells; return the totals over all sittings.
    An interrupted sitting (no wall time) counts until its last finished cell; a sitting
    that finished no cell (a resume of a data set already done, stopped before its first
    cell) is not counted."""
    path = sweep_dir / SITTINGS
    sittings = json.loads(path.read_text()) if path.is_file() else []
    if index is not None and index < len(sittings):
        sittings[index].update({k: timing[k] for k in ("seconds", "cells", "failed", "load")})
        write_json(path, sittings, indent=1)
    cells = sorted((p.stat().st_mtime for p in (sweep_dir / "cells").glob("*.json")),
                   reverse=True) if (sweep_dir / "cells").is_dir() else []
    seconds, interrupted, run, counted = 0.0, 0, 0, 0
    for k, s in enumerate(sittings):
        if s.get("seconds") is not None:
            if s.get("cells"):
                seconds, run, counted = seconds + s["seconds"], run + s["cells"], counted + 1
            continue
        end = sittings[k + 1]["started"] if k + 1 < len(sittings) else float("inf")
        mine = [m for m in cells if s["started"] <= m < end]
        if mine:
            interrupted, counted = interrupted + 1, counted + 1
            seconds, run = seconds + mine[0] - s["started"], run + len(mine)
    return {"sittings": counted, "interrupted": interrupted, "seconds_total": seconds,
            "cells_total": run}


def reproduce(out: str | Path, datasets: Sequence[str], rounds: Sequence[int],
              protocols: Sequence[str] = PROTOCOLS, repeats: int = DEFAULT_REPEATS,
              jobs: int = 2, overrides: dict[str, Any] | None = None,
              scheduler: str | None = None, report_only: bool = False) -> str:
    """Run (or resume) every data set's sweep (on the Dask cluster at ``scheduler`` if
    given, as ``sweep --scheduler``), then write the report; returns its text.
    ``report_only``: run nothing, report the cells finished so far (a partial table)."""
    from flaimsim.bench.table import cell_configs, setting_header, write_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance()  # the code as it starts (cells from earlier sittings: sittings.json)
    rows: dict[str, dict[str, Any]] = {}
    timings: dict[str, dict[str, Any]] = {}
    configs: list[dict[str, Any]] = []
    for name in datasets:
        base = base_config(name, **(overrides or {}))
        spec = SweepSpec(base, tuple(protocols), tuple(rounds), (base.epsilon,),
                         (base.partition,), tuple(range(base.seed, base.seed + repeats)))
        sweep_dir = out / name
        planned = [k for keys in planned_cells(spec).values() for k in keys]
        print(f"reproduce: {name}: {len(planned)} cells into {sweep_dir}",
              file=sys.stderr, flush=True)
        start = time.perf_counter()
        where = f"Dask {scheduler}" if scheduler else f"{jobs} local jobs"
        pending = len(finished_cells(sweep_dir, planned)) < len(planned)
        # a data set with every cell finished records no sitting (its resume ran nothing)
        sitting = open_sitting(sweep_dir, prov, where) if pending and not report_only else None
        if report_only:
            if not (sweep_dir / "cells").is_dir():
                print(f"reproduce: {name}: no cells yet in {sweep_dir}", file=sys.stderr)
                continue
            report = SweepReport(total=len(planned))
        else:
            warm_caches(spec, sweep_dir)
            report = run_sweep(spec, sweep_dir, jobs=jobs, scheduler=scheduler)
        seconds = time.perf_counter() - start
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
        finished = len(finished_cells(sweep_dir, planned))
        timings[name] = {"seconds": seconds, "cells": len(report.done),
                         "finished": finished, "planned": len(planned),
                         "skipped": len(report.skipped), "failed": len(report.failed),
                         "load": load, "formula_mb": formula_bytes(base) / 1e6,
                         "where": where}
        timings[name].update(close_sitting(sweep_dir, sitting, timings[name]))
        for f in report.failed:
            print(f"reproduce: FAILED {f.key}: {(f.error or '').splitlines()[0]}",
                  file=sys.stderr)
        keys, whole = whole_repeats(sweep_dir, spec)
        if keys is not None:  # unfinished: report the whole repeats, each T over the same
            timings[name].update(whole_repeats=whole, cells_reported=len(keys),
                                 cells_waiting=finished - len(keys))
            print(f"reproduce: {name}: {whole} of {len(spec.seeds)} repeats whole; the "
                  f"table uses their {len(keys)} cells ({finished - len(keys)} finished "
                  "cells of later repeats wait for them)", file=sys.stderr)
        elif finished < len(planned):  # no repeat whole yet: a row from part of the grid
            timings[name]["partial"] = True
        try:
            write_table(sweep_dir, keys=keys)
            rows[name] = our_row(sweep_dir, keys)
            plot_dataset(sweep_dir, keys)
        except (ValueError, FileNotFoundError) as exc:  # e.g. a protocol's cells all failed
            print(f"reproduce: {name}: no trade-off row ({exc})", file=sys.stderr)
        configs += list(cell_configs(sweep_dir, load_cells(sweep_dir, keys)).values())
    header = setting_header(configs) + (
        f" Modelled MPC; T grid {', '.join(map(str, rounds))}; {repeats} repeat(s).") + (
        f" Approximate fits: stopped once they move < {overrides['fit_tol']:g} noise sd "
        "(--fit-tol)." if (overrides or {}).get("fit_tol") is not None else "")
    header += (f"\n\nMade by flaimsim commit {prov['commit']} on {prov['date']}, machine: "
               f"{prov['machine']}.")
    for name, r in rows.items():   # the gap to the poster's accounting, into CSV and JSON
        if "formula_mb" in timings.get(name, {}):
            r.update({f"throughput_ratio_{k}": v for k, v in
                      throughput_gap(r, timings[name]["formula_mb"]).items() if k != "ours"})
    text = format_report(rows, timings, header, waiting=datasets)
    write_text(out / "reproduce.md", text)
    write_json(out / "reproduce.json",
               {"header": header, **prov, "t_ratio": "DistAIM's T* / AugFLAIM (Private)'s T*",
                "rows": rows, "timings": timings,
                "poster": {k: asdict(v) for k, v in POSTER.items()}}, indent=1)
    with open_atomic(out / "reproduce.csv", "w", newline="") as fh:
        fields = ["dataset", *(f"poster_{k}" for k in asdict(next(iter(POSTER.values())))),
                  *dict.fromkeys(k for r in rows.values() for k in r),
                  "seconds", "seconds_total", "sittings", "where", "load", "commit", "date",
                  "machine"]
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for name, r in rows.items():
            p = asdict(POSTER[name]) if name in POSTER else {}
            w.writerow({"dataset": name, **{f"poster_{k}": v for k, v in p.items()}, **r,
                        **{k: timings[name].get(k) for k in ("seconds", "seconds_total",
                                                             "sittings", "where", "load")},
                        **prov})
    return text


def _list(kind):
    return lambda text: tuple(kind(x) for x in text.split(",") if x.strip())


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="the poster's trade-off table, in the paper's "
                       "setting, for every available data set")
    p.add_argument("--out", default="reproduce-out", help="output directory (resumable)")
    p.add_argument("--quick", action="store_true",
                   help=f"{', '.join(QUICK_DATASETS)}, {' and '.join(QUICK_PROTOCOLS)}, "
                        f"at T in {', '.join(map(str, QUICK_ROUNDS))} only")
    p.add_argument("--protocols", type=_list(str), default=None,
                   help=f"comma list (default: {','.join(PROTOCOLS)})")
    p.add_argument("--datasets", type=_list(str), default=None,
                   help="comma list (default: every available one)")
    p.add_argument("--rounds", type=_list(int), default=None,
                   help="comma list of T (default: the paper's grid)")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                   help=f"seeds per cell (default {DEFAULT_REPEATS}; the authors ran 10)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                   help="run the cells on this Dask distributed scheduler (`local`: a "
                        "LocalCluster of --jobs workers); default: a local process pool")
    p.add_argument("--embedding", choices=("umap", "pca"), default="umap",
                   help="cluster split's embedding (default: the paper's UMAP)")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: write the report from the cells finished so far")
    p.add_argument("--fit-tol", type=float, default=None, metavar="TOL",
                   help="faster, approximate: stop each model fit once it moves less than "
                        "TOL noise standard deviations (default: none, every iteration runs; "
                        "changes the results, and the cells' keys)")
    p.add_argument("--iters-round", type=int, default=None, metavar="N",
                   help="faster, approximate: N model-fitting iterations per round (default "
                        "200; the authors' code ran 50); changes the results and the cells' "
                        "keys (docs/fitting.md has the measured effect)")
    p.add_argument("--iters-budget", type=int, default=None, metavar="B",
                   help="faster, approximate: at most B fitting steps over a cell's T rounds "
                        "(min(iters-round, B // T) a round; cells with T <= B / 200 keep "
                        "their results and keys; docs/fitting.md has the measured effect)")
    p.add_argument("--iters-final", type=int, default=None, metavar="N",
                   help="iterations of the final fit (default 1000; the authors' 500)")
    p.add_argument("--distaim-participation", choices=("poisson", "all"), default="poisson",
                   help="poisson (the authors' code) or all clients in round 0")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    available = available_datasets()
    wanted = args.datasets or (QUICK_DATASETS if args.quick else tuple(available))
    missing = [d for d in wanted if d not in available]
    if missing:
        raise ValueError(f"data set(s) {missing} are not here yet (here: "
                         f"{', '.join(available) or 'none'}); get them with {how_to_get(missing)}")
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else PAPER_ROUNDS)
    overrides = {"cluster_embedding": args.embedding,
                 "distaim_participation": args.distaim_participation,
                 **({"fit_tol": args.fit_tol} if args.fit_tol is not None else {}),
                 **{name: getattr(args, name) for name in ("iters_round", "iters_final",
                                                           "iters_budget")
                    if getattr(args, name) is not None}}
    protocols = args.protocols or (QUICK_PROTOCOLS if args.quick else PROTOCOLS)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    print(reproduce(args.out, wanted, rounds, protocols, repeats=args.repeats, jobs=args.jobs,
                    overrides=overrides, scheduler=args.scheduler,
                    report_only=args.report_only))
    print(f"wrote {args.out}/reproduce.md, {args.out}/reproduce.csv and per data set "
          f"{args.out}/<dataset>/ (table.md, error-vs-T.png, traffic-vs-T.png)")
    return 0


__all__ = ["PAPER_ROUNDS", "PROTOCOLS", "reproduce", "available_datasets", "base_config",
           "planned_cells", "finished_cells", "whole_repeats"]
