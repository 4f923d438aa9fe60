"""Charts for ``report.html``, drawn with matplotlib as inline SVG (no file, no network).

* :func:`phase_chart`: one protocol's bytes by ledger phase per party role (client, compute
  server, aggregator), sent and received, stacked by phase; a role's bar is the mean over
  its parties (clients: over all K, as in the run table).
* :func:`overview_chart`: every protocol's bytes per client and per server (or aggregator)
  on one log axis, the run's headline picture;
* :func:`sweep_charts`: a sweep group's error-vs-T and traffic-vs-T (:mod:`plots`).
"""

from __future__ import annotations

import io
import math
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from flaimsim.bench.network import PHASE_ORDER
from flaimsim.bench.runs import human_bytes
from flaimsim.parties.ledger import LedgerRow, party_kind

ROLES = ("client", "server", "aggregator")
ROLE_NAMES = {"client": "client", "server": "compute server", "aggregator": "aggregator"}
# One colour per phase, the same in every chart (matplotlib's tab20, colour-blind-tolerable).
PHASE_COLOURS = dict(zip(PHASE_ORDER, ("#7f7f7f", "#17becf", "#1f77b4", "#d62728",
                                       "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                                       "#bcbd22", "#2ca02c", "#aec7e8")))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_svg(fig) -> str:
    """The figure as an inline ``<svg>`` element (glyphs as paths: no fonts fetched)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    _plt().close(fig)
    return _inline(buf.getvalue())


def _inline(text: str) -> str:
    """An SVG document's ``<svg>`` element alone (no XML prolog or doctype)."""
    return text[text.index("<svg"):]


def tick_bytes(v: float, _: object = None) -> str:
    """A short axis label: 500 kB, 1.5 MB (MB = 10^6 B)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.3g} B"


def role_phase_bytes(rows: Iterable[LedgerRow], parties: dict[str, int]
                     ) -> dict[tuple[str, str], dict[str, float]]:
    """(role, "sent" | "received") → phase → bytes per party of that role (the role's total
    over ``parties[role]``, its number of parties)."""
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        for party, way in ((r.sender, "sent"), (r.receiver, "received")):
            role = party_kind(party)
            out[(role, way)][r.phase] += r.bytes / max(parties.get(role, 1), 1)
    return {k: dict(v) for k, v in out.items()}


def phase_chart(rows: Sequence[LedgerRow], parties: dict[str, int], title: str) -> str:
    """Horizontal stacked bars: per (role, sent/received), bytes per party by phase."""
    data = role_phase_bytes(rows, parties)
    bars = [(role, way) for role in ROLES for way in ("sent", "received")
            if (role, way) in data or any(k[0] == role for k in data)]
    phases = [p for p in PHASE_ORDER if any(p in data.get(b, {}) for b in bars)]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 0.5 * len(bars) + 1.4))
    labels = [f"{ROLE_NAMES[role]} {way}" for role, way in bars]
    y = list(range(len(bars)))[::-1]
    left = [0.0] * len(bars)
    for phase in phases:
        widths = [data.get(b, {}).get(phase, 0.0) for b in bars]
        ax.barh(y, widths, left=left, color=PHASE_COLOURS[phase], label=phase, height=0.62,
                edgecolor="white", linewidth=0.4)
        left = [a + w for a, w in zip(left, widths)]
    top = max(left) if left else 1.0
    for yi, total in zip(y, left):
        ax.text(total + top * 0.01, yi, human_bytes(total), va="center", fontsize=10)
    ax.set_yticks(y, labels, fontsize=10)
    ax.set_xlim(0, top * 1.2 or 1)
    ax.xaxis.set_major_formatter(tick_bytes)
    ax.set_xlabel("bytes per party: mean over the role's parties (clients: over all K)",
                  fontsize=9)
    ax.tick_params(axis="x", labelsize=9)
    ax.set_title(title, fontsize=11, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=9, ncol=min(len(phases), 4), loc="upper left",
              bbox_to_anchor=(0.0, -0.5 / (0.5 * len(bars) + 1.4) - 0.12), frameon=False,
              title="phase", title_fontsize=9, alignment="left")
    return figure_svg(fig)


def overview_chart(rows: Sequence[tuple[str, float | None, float | None]]) -> str:
    """Per protocol (name, a client's bytes, the server side's bytes; sent + received): two
    bars on one log axis, so that a 1000x gap shows as a gap."""
    rows = [r for r in rows if r[1] or r[2]]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 0.75 * len(rows) + 1.2))
    y = list(range(len(rows)))[::-1]
    for offset, index, colour, label in ((0.18, 1, "#1f77b4", "one client (mean over all K)"),
                                         (-0.18, 2, "#d62728", "one compute server, or the "
                                                              "aggregator")):
        values = [r[index] or 0.0 for r in rows]
        ax.barh([v + offset for v in y], values, height=0.34, color=colour, label=label)
        for yi, v in zip(y, values):
            if v:
                ax.text(v * 1.1, yi + offset, human_bytes(v), va="center", fontsize=9)
    ax.set_xscale("log")
    values = [v for r in rows for v in r[1:] if v]
    ax.set_xlim(10 ** math.floor(math.log10(min(values))), max(values) * 8)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=10)
    ax.xaxis.set_major_formatter(tick_bytes)
    ax.set_xlabel("bytes sent + received over the whole run (log scale)", fontsize=9)
    ax.set_title("Who talks how much", fontsize=11, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(0.0, -0.5 / (0.75 * len(rows) + 1.2)
                                                            - 0.12), frameon=False, ncol=2)
    return figure_svg(fig)


def sweep_charts(summaries: Sequence[Any], group: tuple[str, float, str]
                 ) -> list[tuple[str, str]]:
    """(name, inline SVG) of one sweep group's error-vs-T and, where any cell has traffic,
    traffic-vs-T (drawn by :mod:`flaimsim.bench.plots`, which writes files: a temporary
    folder holds them)."""
    from flaimsim.bench.plots import plot_error, plot_traffic

    kinds = [("error-vs-T", plot_error)]
    if any(s.client_bytes or s.server_bytes for s in summaries):
        kinds.append(("traffic-vs-T", plot_traffic))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, draw in kinds:
            path = draw(summaries, group, Path(tmp) / f"{name}.svg")
            out.append((name, _inline(Path(path).read_text())))
    return out


__all__ = ["phase_chart", "overview_chart", "role_phase_bytes", "sweep_charts", "figure_svg",
           "tick_bytes", "PHASE_COLOURS"]
