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

Our row: T ratio = T*_DistAIM / T*_FLAIM (the poster's direction; best T by mean workload
error over the repeats), with its range over the T whose mean lies within one standard
error of each protocol's best (``bench.table.near_best_t``); throughput ratio
= DistAIM / AugFLAIM (Private) client bytes (mean over all K clients), also for bytes sent
and bytes received separately; error difference (err_F − err_D)/err_D in %; NLL difference
in % of DistAIM's NLL and in nats. The poster's DistAIM figure is a formula (8 B per W+ cell,
sent once per contributing client), so that formula is printed too.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

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
DATASET_ORDER = ("adult", "magic", "census", "marketing", "covtype")
BYTES_PER_CELL = 8  # the authors' formula: one 8-byte value per W+ cell
DEFAULT_REPEATS = 5  # the authors ran 10 (--repeats 10)


@dataclass(frozen=True)
class PosterRow:
    """A row of the poster's table: ratios (×), DistAIM / FLAIM per-client MB, differences
    in % (FLAIM vs DistAIM)."""

    t_ratio: float
    throughput_ratio: float
    distaim_mb: float
    flaim_mb: float
    error_pct: float
    nll_pct: float


POSTER: dict[str, PosterRow] = {
    "adult": PosterRow(2.0, 1300, 80, 0.06, 58, 11),
    "magic": PosterRow(3.2, 1643, 80, 0.04, 20, 14),
    "census": PosterRow(1.5, 64, 29.6, 0.46, 79, 33),
    "intrusion": PosterRow(2.5, 366, 101, 0.28, 82, 52),
    "marketing": PosterRow(2.0, 97, 18, 0.19, 77, 35),
    "credit": PosterRow(1.0, 167, 93, 0.55, 45, 6),
    "covtype": PosterRow(1.25, 10, 7.6, 0.76, 64, 3),
}


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


def formula_bytes(config: RunConfig) -> int:
    """The authors' DistAIM client upload: Σ_{q ∈ W+} n_q × 8 bytes."""
    from flaimsim.mechanisms.data import load_dataset
    from flaimsim.mechanisms.workload import make_workload

    domain = load_dataset(config.dataset, config.data_dir).domain
    workload = make_workload(domain, degree=config.workload_degree,
                             num_marginals=config.workload_marginals,
                             seed=config.workload_seed)
    return BYTES_PER_CELL * sum(workload.n_cells(c) for c in workload.answered)


def _mean_field(records: Sequence[dict[str, Any]], name: str) -> float | None:
    vals = [float(r[name]) for r in records if r.get(name) is not None]
    return sum(vals) / len(vals) if vals else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


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


def our_row(sweep_dir: Path, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """Our figures for one data set's sweep (see the module docstring); ``keys``: only
    these cells."""
    from flaimsim.bench.trade_off import trade_offs

    cells = load_cells(sweep_dir, keys)
    t = trade_offs(cells)[0]   # with the network model's LAN and WAN times
    by_key = {c.key: c.record for c in cells}
    d_recs = [by_key[k] for k in t.distaim.cells]
    f_recs = [by_key[k] for k in t.flaim.cells]
    sent = [_mean_field(r, "client_bytes_sent_mean") for r in (d_recs, f_recs)]
    recv = [_mean_field(r, "client_bytes_received_mean") for r in (d_recs, f_recs)]
    d_nll, f_nll = t.distaim.nll, t.flaim.nll
    download = [float(r["bytes_phase_model-broadcast"]) / float(r["clients"]) for r in f_recs
                if r.get("bytes_phase_model-broadcast") is not None and r.get("clients")]
    return {
        "distaim_T": t.distaim.rounds, "flaim_T": t.flaim.rounds, "t_ratio": t.t_ratio,
        "t_ratio_min": t.t_ratio_range[0], "t_ratio_max": t.t_ratio_range[1],
        "distaim_T_within_se": ";".join(map(str, t.distaim_near)),
        "flaim_T_within_se": ";".join(map(str, t.flaim_near)),
        "repeats": min(t.distaim.repeats, t.flaim.repeats),
        "distaim_error_se": t.distaim.error_se, "flaim_error_se": t.flaim.error_se,
        "throughput_ratio": t.client_ratio,
        "distaim_client_mb": (t.distaim.client_bytes or 0) / 1e6,
        "flaim_client_mb": (t.flaim.client_bytes or 0) / 1e6,
        "sent_ratio": _ratio(*sent), "received_ratio": _ratio(*recv),
        "distaim_sent_mb": (sent[0] or 0) / 1e6, "flaim_sent_mb": (sent[1] or 0) / 1e6,
        "distaim_received_mb": (recv[0] or 0) / 1e6,
        "flaim_received_mb": (recv[1] or 0) / 1e6,
        # the model each sampled client downloads every round, mean over all K (wire)
        "flaim_download_mb": sum(download) / len(download) / 1e6 if download else None,
        "distaim_sent_mb_participating": (_mean_field(
            d_recs, "client_bytes_sent_mean_participating") or 0) / 1e6,
        "error_pct": t.error_diff_pct,
        "nll_pct": 100 * (f_nll - d_nll) / d_nll if d_nll and f_nll is not None else None,
        "nll_nats": t.nll_diff,
        "distaim_error": t.distaim.error, "flaim_error": t.flaim.error,
        "distaim_server_mb": (t.distaim.server_bytes or 0) / 1e6,
        "flaim_aggregator_mb": (t.flaim.server_bytes or 0) / 1e6,
        "server_ratio": t.server_ratio,
        "contributing_clients": _mean_field(d_recs, "contributing_clients"),
        "bytes_source": t.distaim.bytes_source,
        "network_s": {name: (t.distaim.network_seconds.get(name),
                             t.flaim.network_seconds.get(name))
                      for name in sorted({*t.distaim.network_seconds,
                                          *t.flaim.network_seconds})},
    }


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


def _partial_note(timing: dict[str, Any]) -> str:
    """The row label's warning while no repeat of the grid is whole (its T* is over the T
    finished so far only)."""
    if not timing.get("partial"):
        return ""
    return (f"; PARTIAL: {timing.get('finished', '?')} of {timing.get('planned', '?')} "
            "cells, no whole repeat")


def _whole_note(timing: dict[str, Any]) -> str:
    """What an unfinished data set's row stands on: its whole repeats only."""
    if "whole_repeats" not in timing:
        return ""
    return (f" (the row: {timing['whole_repeats']} whole repeat(s), "
            f"{timing['cells_reported']} cells)")


def _poster_line(name: str, p: PosterRow) -> str:
    """The poster's row of the report table."""
    return (f"| {name} | poster | {p.t_ratio:g}x | {p.throughput_ratio:g}x "
            f"({p.distaim_mb:g} / {p.flaim_mb:g}) | - | - | {p.error_pct:g}% | "
            f"{p.nll_pct:g}% | not reported |")


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_report(rows: dict[str, dict[str, Any]], timings: dict[str, dict[str, Any]],
                  header: str, waiting: Sequence[str] = ()) -> str:
    """The markdown report: poster row beside ours per data set; ``waiting``: data sets
    asked for that have no row yet (no finished cells), listed beside the poster's row."""
    lines = ["# FLAIM poster's communication trade-off, reproduced", "", header, "",
             "| data set | source | T ratio (DistAIM T* / FLAIM T*; range within 1 SE) | "
             "throughput ratio (DistAIM / FLAIM MB per "
             "client) | sent ratio | received ratio | Err | NLL | server side (DistAIM "
             "per server / aggregator MB) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, ours in rows.items():
        p = POSTER.get(name)
        if p is not None:
            lines.append(_poster_line(name, p))
        lines.append(
            f"| {name} | ours (T* {ours['distaim_T']} / {ours['flaim_T']}"
            f"{_partial_note(timings.get(name, {}))}) | "
            f"{_f(ours['t_ratio'], '.2g')}x ({_f(ours['t_ratio_min'], '.2g')}–"
            f"{_f(ours['t_ratio_max'], '.2g')}x) | {_f(ours['throughput_ratio'], '.0f')}x "
            f"({ours['distaim_client_mb']:.3g} / {ours['flaim_client_mb']:.3g}) | "
            f"{_f(ours['sent_ratio'], '.0f')}x ({ours['distaim_sent_mb']:.3g} / "
            f"{ours['flaim_sent_mb']:.3g}) | {_f(ours['received_ratio'], '.3g')}x "
            f"({ours['distaim_received_mb']:.3g} / {ours['flaim_received_mb']:.3g}) | "
            f"{_f(ours['error_pct'], '+.0f')}% | {_f(ours['nll_pct'], '+.0f')}% "
            f"({_f(ours['nll_nats'], '+.3f')} nats) | {ours['distaim_server_mb']:.4g} / "
            f"{ours['flaim_aggregator_mb']:.4g} ({_f(ours['server_ratio'], '.0f')}x) |")
    for name in (n for n in waiting if n not in rows):
        p = POSTER.get(name)
        if p is not None:
            lines.append(_poster_line(name, p))
        lines.append(f"| {name} | ours | not run yet: no finished cells (resume the sweep) "
                     "| - | - | - | - | - | - |")
    for name in (n for n in POSTER if n not in DATASET_ORDER):
        p = POSTER[name]
        lines += [_poster_line(name, p),
                  f"| {name} | ours | data not available offline | - | - | - | - | - | - |"]
    near = "; ".join(f"{n}: DistAIM {{{r['distaim_T_within_se']}}}, FLAIM "
                     f"{{{r['flaim_T_within_se']}}}" for n, r in rows.items())
    lines += ["", "T ratio = DistAIM's best T / AugFLAIM (Private)'s best T, as the poster "
              "reads it (>= 1 when DistAIM's best T is the larger); best T = lowest mean L1 "
              "workload error over the repeats; the range runs over the T whose mean lies "
              f"within one standard error (sd / sqrt(repeats)) of each one's best ({near}).",
              "", "Throughput = a client's bytes sent + received, mean over all K clients "
              "(MB = 10^6 B); ours are modelled from the calibrated MPC cost table (DistAIM) "
              "and counted SecAgg+ messages (FLAIM). Err and NLL: FLAIM's difference from "
              "DistAIM at each one's best T.", "",
              "| data set | authors' DistAIM formula (8 B x W+ cells) | our DistAIM sent "
              "per contributing client | contributing clients (mean) | cells finished / "
              "planned | cells run (sittings) | wall time, all sittings | where | load "
              "average at end |", "|---|---|---|---|---|---|---|---|---|"]
    for name, tm in timings.items():
        ours = rows.get(name, {})
        lines.append(f"| {name} | {tm['formula_mb']:.4g} MB | "
                     f"{ours.get('distaim_sent_mb_participating', 0):.4g} MB | "
                     f"{_f(ours.get('contributing_clients'), '.1f')} | "
                     f"{tm.get('finished', '-')} / {tm.get('planned', '-')}"
                     f"{_whole_note(tm)} | "
                     f"{tm.get('cells_total', tm['cells'])} ({tm.get('sittings', 1)}"
                     f"{', %d interrupted' % tm['interrupted'] if tm.get('interrupted') else ''}"
                     f") | "
                     f"{tm.get('seconds_total', tm['seconds']) / 60:.1f} min | "
                     f"{tm.get('where', '-')} | {tm['load']} |")
    lines += _gap_lines(rows, timings)
    lines += _network_lines(rows)
    return "\n".join(lines) + "\n"


def throughput_gap(ours: dict[str, Any], formula_mb: float) -> dict[str, float | None]:
    """The throughput ratio under each accounting the poster might have used: DistAIM ours
    (wire-exact compact shares) or the authors' formula (8 B per W+ cell, × 6 under their
    "secagg" option); FLAIM with or without the model download."""
    flaim = ours.get("flaim_client_mb") or 0.0
    download = ours.get("flaim_download_mb")
    no_download = flaim - download if download is not None else None
    return {"ours": _ratio(ours.get("distaim_client_mb"), flaim),
            "ours_no_download": _ratio(ours.get("distaim_client_mb"), no_download),
            "formula": _ratio(formula_mb, flaim),
            "formula_no_download": _ratio(formula_mb, no_download),
            "formula_x6": _ratio(6 * formula_mb, flaim),
            "formula_x6_no_download": _ratio(6 * formula_mb, no_download)}


def _gap_lines(rows: dict[str, dict[str, Any]], timings: dict[str, dict[str, Any]]
               ) -> list[str]:
    out = ["", "The throughput ratio under each accounting (DistAIM MB per client / FLAIM MB "
           "per client, both means over all K): ours counts DistAIM's compact shares (modelled, "
           "equal to the wire per phase); the authors' code charges 8 B per W+ cell (x 6 with its 'secagg' "
           "option) and no server-to-server traffic; FLAIM with or without the model each "
           "sampled client downloads every round.", "",
           "| data set | ours | ours, FLAIM without the download | formula x 1 | formula x 1, "
           "no download | formula x 6 | formula x 6, no download | poster | FLAIM download "
           "MB per client |", "|---|---|---|---|---|---|---|---|---|"]
    for name, ours in rows.items():
        tm = timings.get(name, {})
        if "formula_mb" not in tm:
            continue
        g = throughput_gap(ours, tm["formula_mb"])
        p = POSTER.get(name)
        out.append(f"| {name} | " + " | ".join(
            f"{_f(g[k], '.0f')}x" for k in ("ours", "ours_no_download", "formula",
                                           "formula_no_download", "formula_x6",
                                           "formula_x6_no_download"))
            + f" | {f'{p.throughput_ratio:g}x' if p else '-'} | "
            f"{_f(ours.get('flaim_download_mb'), '.3g')} |")
    return out


def _network_lines(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Communication time per protocol at each best T, from the network model."""
    if not any(r.get("network_s") for r in rows.values()):
        return []
    out = ["", "| data set | network | DistAIM comm. s | AugFLAIM (Private) comm. s |",
           "|---|---|---|---|"]
    for name, ours in rows.items():
        for net, (d, f) in ours.get("network_s", {}).items():
            out.append(f"| {name} | {net} | {_f(d, '.3g')} | {_f(f, '.3g')} |")
    from flaimsim.parties.links import PRESETS

    nets = "; ".join(n.describe() for n in PRESETS.values())
    return out + ["", "Comm. s: the network model's communication time (communication rounds "
                  f"x latency + the busiest link's bytes / bandwidth; {nets}), validated "
                  "against links emulated in user space by `flaimsim bench network` "
                  "(docs/network.md); compute not included."]


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


__all__ = ["POSTER", "PosterRow", "PAPER_ROUNDS", "PROTOCOLS", "reproduce",
           "available_datasets", "formula_bytes", "our_row"]
