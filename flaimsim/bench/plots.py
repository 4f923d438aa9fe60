"""PNG plots of a sweep directory (matplotlib, Agg backend). MB means 10^6 bytes.

One file per (data set, ε, partition) group and kind:

* ``traffic-vs-T``: per-client MB (mean over all K clients, sent + received) and per-server MB
  (per compute server for DistAIM, the aggregator for FLAIM) against T, log scale;
* ``error-vs-T``: mean L1 workload error over W+ against T, error bars = 1 sd over repeats;
* ``phases``: share of bytes by ledger phase (stacked to 100 %, total written on each bar),
  client side and server side, every protocol at one common T;
* ``crossover``: each FLAIM variant's cumulative per-client MB by round against DistAIM's
  one-off per-client MB, with the crossover round marked (dashed: extrapolated);
* ``network``: the network model's communication wall time against T, one panel per network.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from flaimsim.parties.ledger import PHASES, party_kind
from flaimsim.bench.network import PRESETS, Network
from flaimsim.bench.runs import human_bytes
from flaimsim.bench.sweep_dir import Cell, load_cells
from flaimsim.safe_output import atomic_path
from flaimsim.bench.trade_off import (DISTAIM, FLAIM_VARIANTS, GroupKey, Summary, best_t,
                    client_traffic_by_round, crossover_round, group_key, mean_curve,
                    summarise)

PROTOCOL_ORDER = ("central", "distaim", "naive-flaim", "aug-flaim-oracle",
                  "aug-flaim-private")
MARKERS = dict(zip(PROTOCOL_ORDER, "osD^v"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _tag(g: GroupKey) -> str:
    return f"{g[0]}-e{g[1]:g}-{g[2]}"


def _title(g: GroupKey) -> str:
    return f"{g[0]}, ε = {g[1]:g}, partition = {g[2]}"


def _protocols(summaries: Sequence[Summary]) -> list[str]:
    present = {s.protocol for s in summaries}
    return [p for p in PROTOCOL_ORDER if p in present] + sorted(present - set(PROTOCOL_ORDER))


def _series(summaries: Sequence[Summary], protocol: str, attr: str
            ) -> tuple[list[int], list[float]]:
    pts = sorted((s.rounds, getattr(s, attr)) for s in summaries
                 if s.protocol == protocol and getattr(s, attr) is not None)
    pts = [(t, v) for t, v in pts if v > 0] if attr.endswith("bytes") else pts
    return [t for t, _ in pts], [v for _, v in pts]


def _save_figure(fig: Any, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically (no half-written PNG is left) and free it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    _plt().close(fig)
    return path


def plot_traffic(summaries: Sequence[Summary], g: GroupKey, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, attr, label in ((axes[0], "client_bytes", "per-client MB (sent + received,\n"
                             "mean over all K clients)"),
                            (axes[1], "server_bytes", "MB per server (sent + received):\n"
                             "DistAIM compute server / FLAIM aggregator")):
        for p in _protocols(summaries):
            ts, vs = _series(summaries, p, attr)
            if ts:
                ax.plot(ts, [v / 1e6 for v in vs], marker=MARKERS.get(p, "o"), label=p)
        ax.set_yscale("log")
        ax.set_xlabel("T (AIM rounds)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("client traffic")
    axes[1].set_title("server-side traffic")
    fig.suptitle(f"Communication against T — {_title(g)}  (MB = 10^6 bytes)")
    fig.tight_layout()
    return _save_figure(fig, path)


def plot_error(summaries: Sequence[Summary], g: GroupKey, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p in _protocols(summaries):
        rows = sorted((s.rounds, s.error, s.error_std, s.repeats) for s in summaries
                      if s.protocol == p and s.error is not None)
        if rows:
            ax.errorbar([r[0] for r in rows], [r[1] for r in rows], yerr=[r[2] for r in rows],
                        marker=MARKERS.get(p, "o"), capsize=3, label=p)
    ax.set_xscale("log", base=2)
    ts = sorted({s.rounds for s in summaries})
    # log-2 spacing crowds the large T (128, 160, 192): slanted labels stay legible
    ax.set_xticks(ts, [str(t) for t in ts], rotation=45, fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("T (AIM rounds, log scale)")
    ax.set_ylabel("L1 workload error over W+ (mean; bars: ±1 sd)")
    reps = sorted({s.repeats for s in summaries})
    n = str(reps[0]) if len(reps) == 1 else f"{reps[0]}–{reps[-1]}"
    ax.set_title(f"Utility against T — {_title(g)} ({n} repeat{'' if n == '1' else 's'})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, path)


def phase_bytes(cell: Cell) -> tuple[dict[str, float], dict[str, float]]:
    """(per-client bytes by phase (Σ over clients / K), per-server bytes by phase).

    Server side: Σ over compute servers / m (DistAIM) or the aggregator's bytes (FLAIM);
    a row counts for every end of it that is on that side (sent + received)."""
    rec = cell.record
    K = int(rec.get("clients") or 1)
    m = int(rec.get("servers") or 1) if rec["protocol"] == DISTAIM else 1
    client: dict[str, float] = defaultdict(float)
    server: dict[str, float] = defaultdict(float)
    for r in cell.ledger().rows:
        for party in (r.sender, r.receiver):
            kind = party_kind(party)
            if kind == "client":
                client[r.phase] += r.bytes / K
            elif kind == "server":
                server[r.phase] += r.bytes / m
            else:
                server[r.phase] += r.bytes
    return dict(client), dict(server)


def _common_t(cells: Sequence[Cell], prefer: int = 8) -> int | None:
    by_proto: dict[str, set[int]] = defaultdict(set)
    for c in cells:
        if c.ledger_path is not None and c.ledger_path.is_file() and c.record["protocol"] != \
                "central":
            by_proto[c.record["protocol"]].add(int(c.record["rounds"]))
    if not by_proto:
        return None
    shared = set.intersection(*by_proto.values()) or set().union(*by_proto.values())
    return min(shared, key=lambda t: (abs(t - prefer), t))


def plot_phases(cells: Sequence[Cell], g: GroupKey, path: Path) -> Path | None:
    plt = _plt()
    t = _common_t(cells)
    if t is None:
        return None
    chosen: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        if int(c.record["rounds"]) == t and c.record["protocol"] != "central":
            chosen[c.record["protocol"]].append(c)
    protos = [p for p in PROTOCOL_ORDER if p in chosen] + sorted(set(chosen) -
                                                                 set(PROTOCOL_ORDER))
    sides: list[dict[str, dict[str, float]]] = [{}, {}]
    for p in protos:
        parts = [phase_bytes(c) for c in chosen[p]]
        for side in (0, 1):
            acc: dict[str, float] = defaultdict(float)
            for part in parts:
                for ph, b in part[side].items():
                    acc[ph] += b / len(parts)
            sides[side][p] = dict(acc)
    colours = plt.get_cmap("tab20").colors
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    titles = ("per client (mean over all K clients)",
              "per compute server (DistAIM) / aggregator (FLAIM)")
    for ax, side, title in zip(axes, sides, titles):
        x = range(len(protos))
        bottom = [0.0] * len(protos)
        for i, ph in enumerate(PHASES):
            vals = [side[p].get(ph, 0.0) for p in protos]
            totals = [sum(side[p].values()) for p in protos]
            shares = [100 * v / tot if tot else 0.0 for v, tot in zip(vals, totals)]
            if any(shares):
                ax.bar(x, shares, bottom=bottom, color=colours[i % len(colours)], label=ph)
                bottom = [b + s for b, s in zip(bottom, shares)]
        for xi, p in zip(x, protos):
            ax.text(xi, 101, human_bytes(sum(side[p].values())), ha="center",
                    va="bottom", fontsize=8)
        ax.set_xticks(list(x), protos, rotation=15, fontsize=8)
        ax.set_ylim(0, 112)
        ax.set_ylabel("share of bytes sent + received (%)")
        ax.set_title(title, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    h2, l2 = axes[1].get_legend_handles_labels()
    for h, lab in zip(h2, l2):
        if lab not in labels:
            handles.append(h)
            labels.append(lab)
    fig.legend(handles, labels, loc="center right", fontsize=8, title="ledger phase")
    fig.suptitle(f"Bytes by phase at T = {t} (totals above bars, MB = 10^6 bytes) — "
                 f"{_title(g)}")
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    return _save_figure(fig, path)


def plot_crossover(cells: Sequence[Cell], summaries: Sequence[Summary], g: GroupKey,
                   path: Path) -> Path | None:
    plt = _plt()
    d = best_t(summaries, DISTAIM)
    variants = [p for p in FLAIM_VARIANTS if any(c.record["protocol"] == p for c in cells)]
    if d is None or d.client_bytes is None or not variants:
        return None
    target = d.client_bytes
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    right = 1
    for p in variants:
        mine = [c for c in cells if c.record["protocol"] == p]
        t_max = max(int(c.record["rounds"]) for c in mine)
        curves = [client_traffic_by_round(c.ledger(), int(c.record["clients"])) for c in mine
                  if int(c.record["rounds"]) == t_max]
        curve = mean_curve(curves)
        rounds = sorted(curve)
        cum, total = [], 0.0
        for t in rounds:
            total += curve[t]
            cum.append(total)
        line = ax.plot(rounds, [v / 1e6 for v in cum], marker=MARKERS.get(p, "o"),
                       label=f"{p} (T={t_max} runs)")[0]
        tc, extrapolated = crossover_round(curve, target)
        right = max(right, t_max)
        if tc is not None:
            if extrapolated:  # a straight line in (t, MB): many points, as the y axis is log
                ts = [rounds[-1] + (tc - rounds[-1]) * i / 50 for i in range(51)]
                ax.plot(ts, [(cum[-1] + (target - cum[-1]) * i / 50) / 1e6
                             for i in range(51)], ls="--", color=line.get_color())
            ax.axvline(tc, color=line.get_color(), ls=":", alpha=0.7)
            ax.annotate(f"{'~' if extrapolated else ''}t = {tc:.0f}", (tc, target / 1e6),
                        textcoords="offset points", xytext=(4, -14 - 10 * variants.index(p)),
                        fontsize=8, color=line.get_color())
            right = max(right, tc)
    ax.axhline(target / 1e6, color="black", lw=1.5,
               label=f"DistAIM per-client total (T={d.rounds})")
    ax.set_yscale("log")
    if right > 8 * max(int(c.record["rounds"]) for c in cells):
        ax.set_xscale("log")
    ax.set_xlabel("round t (dashed: extrapolated at the mean per-round cost)")
    ax.set_ylabel("cumulative per-client MB (sent + received,\nmean over all K clients)")
    ax.set_title(f"When FLAIM's client traffic reaches DistAIM's — {_title(g)}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, path)


def plot_network(summaries: Sequence[Summary], g: GroupKey, path: Path,
                 networks: Sequence[Network]) -> Path | None:
    plt = _plt()
    protos = [p for p in _protocols(summaries) if p != "central"]
    if not protos or not networks:
        return None
    fig, axes = plt.subplots(1, len(networks), figsize=(5.5 * len(networks), 4.3),
                             squeeze=False)
    for ax, n in zip(axes[0], networks):
        for p in protos:
            pts = sorted((s.rounds, s.network_seconds[n.name]) for s in summaries
                         if s.protocol == p and n.name in s.network_seconds
                         and s.network_seconds[n.name] > 0)
            if pts:
                ax.plot([t for t, _ in pts], [v for _, v in pts], marker=MARKERS.get(p, "o"),
                        label=p)
        ax.set_yscale("log")
        ax.set_xlabel("T (AIM rounds)")
        ax.set_ylabel("estimated communication time (s)")
        ax.set_title(n.describe(), fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Network model: message rounds × latency + bytes / bandwidth — {_title(g)}",
                 fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path)


def make_plots(out_dir: str | Path, networks: Sequence[Network] = tuple(PRESETS.values())
               ) -> list[Path]:
    """Every plot for every group of a sweep directory; returns the files written."""
    out = Path(out_dir)
    cells = load_cells(out)
    if not cells:
        raise FileNotFoundError(f"{out}: no finished cells to plot")
    plot_dir = out / "plots"
    plot_dir.mkdir(exist_ok=True)
    groups: dict[GroupKey, list[Cell]] = defaultdict(list)
    for c in cells:
        groups[group_key(c.record)].append(c)
    written: list[Path] = []
    for g, gcells in sorted(groups.items()):
        summaries = summarise(gcells, networks)
        tag = _tag(g)
        outputs: list[Any] = [
            plot_traffic(summaries, g, plot_dir / f"traffic-vs-T-{tag}.png"),
            plot_error(summaries, g, plot_dir / f"error-vs-T-{tag}.png"),
            plot_phases(gcells, g, plot_dir / f"phases-{tag}.png"),
            plot_crossover(gcells, summaries, g, plot_dir / f"crossover-{tag}.png"),
            plot_network(summaries, g, plot_dir / f"network-{tag}.png", networks)]
        written += [p for p in outputs if p is not None]
    return written


def add_parser(sub: argparse._SubParsersAction) -> None:
    from flaimsim.bench.table import add_network_option

    p = sub.add_parser("plot", help="PNG plots of a sweep directory (into DIR/plots)")
    p.add_argument("dir", help="sweep directory")
    add_network_option(p)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from flaimsim.bench.table import networks_from_args

    for path in make_plots(args.dir, networks_from_args(args)):
        print(f"wrote {path}")
    return 0


__all__ = ["make_plots", "plot_traffic", "plot_error", "plot_phases", "plot_crossover",
           "plot_network", "phase_bytes"]
