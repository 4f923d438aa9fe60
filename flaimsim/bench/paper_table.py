"""The poster's table and ours: the poster's rows, our row from a data set's sweep folder,
the gaps between them, and the markdown report ``flaimsim reproduce`` writes
(:mod:`flaimsim.bench.reproduce` runs the sweeps).

Our row: T ratio = T*_DistAIM / T*_FLAIM (the poster's direction; best T by mean workload
error over the repeats), with its range over the T whose mean lies within one standard
error of each protocol's best (``bench.table.near_best_t``); throughput ratio
= DistAIM / AugFLAIM (Private) client bytes (mean over all K clients), also for bytes sent
and bytes received separately; error difference (err_F − err_D)/err_D in %; NLL difference
in % of DistAIM's NLL and in nats. The poster's DistAIM figure is a formula (8 B per W+ cell,
sent once per contributing client): :func:`formula_bytes`, and :func:`throughput_gap` sets
each accounting beside the poster's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from flaimsim.bench.sweep_dir import load_cells
from flaimsim.protocols.config import RunConfig

DATASET_ORDER = ("adult", "magic", "census", "marketing", "covtype")
BYTES_PER_CELL = 8  # the authors' formula: one 8-byte value per W+ cell


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


def ratio_text(v: float | None) -> str:
    """A byte ratio as ``N`` (whole from 10 up) or two significant figures below: Covtype's
    0.76 must not read as 1."""
    return "-" if v is None else format(v, ".0f" if v >= 9.5 else ".2g")


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
            f"{_f(ours['t_ratio_max'], '.2g')}x) | {ratio_text(ours['throughput_ratio'])}x "
            f"({ours['distaim_client_mb']:.3g} / {ours['flaim_client_mb']:.3g}) | "
            f"{ratio_text(ours['sent_ratio'])}x ({ours['distaim_sent_mb']:.3g} / "
            f"{ours['flaim_sent_mb']:.3g}) | {_f(ours['received_ratio'], '.3g')}x "
            f"({ours['distaim_received_mb']:.3g} / {ours['flaim_received_mb']:.3g}) | "
            f"{_f(ours['error_pct'], '+.0f')}% | {_f(ours['nll_pct'], '+.0f')}% "
            f"({_f(ours['nll_nats'], '+.3f')} nats) | {ours['distaim_server_mb']:.4g} / "
            f"{ours['flaim_aggregator_mb']:.4g} ({ratio_text(ours['server_ratio'])}x) |")
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
            f"{ratio_text(g[k])}x" for k in ("ours", "ours_no_download", "formula",
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


__all__ = ["BYTES_PER_CELL", "DATASET_ORDER", "POSTER", "PosterRow", "format_report",
           "formula_bytes", "our_row", "throughput_gap"]
