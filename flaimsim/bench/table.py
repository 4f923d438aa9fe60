"""The paper's communication trade-off table from a sweep directory, and the per-(protocol, T)
summary that the plots draw.

For each (data set, ε, partition): DistAIM against AugFLAIM (Private), each at its best T,
the T with the lowest workload error averaged over repeats (ties: the smaller T).

* T ratio = T*_DistAIM / T*_FLAIM (the poster's direction: ≥ 1 when DistAIM's best T is the
  larger). With repeats, each T's error is a mean ± standard error (SE = sd/√n); the T whose
  mean lies within one SE of the best mean (the best's SE) are "as good as best", and the
  T ratio over those two sets is reported as a range [min T_D / max T_F, max T_D / min T_F].
* Client throughput (the paper's): a client's bytes sent + received, **averaged over all K
  clients** (non-participating clients count as 0); ratio = DistAIM / FLAIM.
* Server side (left out by the paper): DistAIM's bytes sent + received per compute server
  (mean over the m servers) against FLAIM's aggregator; ratio = DistAIM / FLAIM.
* Error difference = (err_FLAIM − err_DistAIM) / err_DistAIM in %, err = mean L1 workload
  error over W+; NLL difference = NLL_FLAIM − NLL_DistAIM (nats per test record).
* Network-model wall time (communication only, :mod:`network`) per preset.
* Crossover: the round t at which a FLAIM variant's cumulative per-client traffic (from the
  per-round ledger of its largest-T run, mean over repeats) reaches DistAIM's total per-client
  traffic; past its last round it is extrapolated at the mean per-round cost (marked ``~``).
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from flaimsim.parties.ledger import Ledger, party_kind
from flaimsim.bench.network import PRESETS, Network, parse_network, wall_time
from flaimsim.bench.runs import human_bytes
from flaimsim.bench.sweep_dir import Cell, load_cells
from flaimsim.safe_output import open_atomic, write_text

DISTAIM = "distaim"
FLAIM = "aug-flaim-private"
FLAIM_VARIANTS = ("naive-flaim", "aug-flaim-oracle", "aug-flaim-private")
GroupKey = tuple[str, float, str]  # dataset, epsilon, partition


class TableError(ValueError):
    """The sweep directory lacks what the table needs."""


def _mean(xs: Sequence[float | None]) -> float | None:
    vals = [float(x) for x in xs if x is not None and not (isinstance(x, float) and
                                                             math.isnan(x))]
    return sum(vals) / len(vals) if vals else None


def _std(xs: Sequence[float | None]) -> float:
    vals = [float(x) for x in xs if x is not None]
    return statistics.stdev(vals) if len(vals) > 1 else 0.0


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None and b is None else (a or 0.0) + (b or 0.0)


def client_throughput(record: dict[str, Any]) -> float | None:
    """Mean over all K clients of bytes sent + received."""
    return _add(record.get("client_bytes_sent_mean"), record.get("client_bytes_received_mean"))


def client_throughput_participating(record: dict[str, Any]) -> float | None:
    """Mean over clients that sent or received anything of bytes sent + received."""
    return _add(record.get("client_bytes_sent_mean_participating"),
                record.get("client_bytes_received_mean_participating"))


def server_throughput(record: dict[str, Any]) -> float | None:
    """DistAIM: mean per compute server of sent + received; FLAIM: the aggregator's."""
    if record.get("protocol") == DISTAIM or record.get("aggregator_bytes_sent") is None:
        return _add(record.get("server_bytes_sent_mean"),
                    record.get("server_bytes_received_mean"))
    return _add(record.get("aggregator_bytes_sent"), record.get("aggregator_bytes_received"))


def group_key(record: dict[str, Any]) -> GroupKey:
    return (str(record["dataset"]), float(record["epsilon"]), str(record["partition"]))


@dataclass(frozen=True)
class Summary:
    """One (group, protocol, T): means over the repeats (and the standard deviation)."""

    dataset: str
    epsilon: float
    partition: str
    protocol: str
    rounds: int
    repeats: int
    error: float | None
    error_std: float
    error_3way: float | None
    nll: float | None
    auc: float | None
    client_bytes: float | None
    client_bytes_participating: float | None
    server_bytes: float | None
    bytes_source: str
    wall_seconds: float | None
    network_seconds: dict[str, float] = field(default_factory=dict)
    cells: tuple[str, ...] = ()
    comm_rounds: float | None = None   # mean over seeds of the records' comm_rounds

    @property
    def error_se(self) -> float:
        """Standard error of the mean error over repeats, sd/√n (0 for one repeat)."""
        return self.error_std / math.sqrt(self.repeats) if self.repeats > 1 else 0.0


def summarise(cells: Sequence[Cell], networks: Sequence[Network] = tuple(PRESETS.values())
              ) -> list[Summary]:
    """Group cells by (data set, ε, partition, protocol, T) and average over seeds."""
    groups: dict[tuple, list[Cell]] = defaultdict(list)
    for c in cells:
        r = c.record
        groups[(*group_key(r), r["protocol"], int(r["rounds"]))].append(c)
    out = []
    for (ds, eps, part, proto, t), cs in sorted(groups.items()):
        recs = [c.record for c in cs]
        net: dict[str, float] = {}
        if cs and all(c.ledger_path is not None and c.ledger_path.is_file() for c in cs):
            ledgers = [c.ledger() for c in cs]
            # No traffic at all (central AIM): no network estimate rather than 0 s.
            for n in (networks if any(l.rows for l in ledgers) else ()):
                net[n.name] = _mean([wall_time(l.rows, n) for l in ledgers]) or 0.0
        sources = sorted({str(r.get("bytes_source")) for r in recs
                          if r.get("bytes_source") is not None})
        out.append(Summary(
            ds, eps, part, proto, t, len(recs),
            _mean([r.get("l1_workload_error") for r in recs]),
            _std([r.get("l1_workload_error") for r in recs]),
            _mean([r.get("l1_workload_error_3way") for r in recs]),
            _mean([r.get("nll") for r in recs]), _mean([r.get("auc") for r in recs]),
            _mean([client_throughput(r) for r in recs]),
            _mean([client_throughput_participating(r) for r in recs]),
            _mean([server_throughput(r) for r in recs]),
            "+".join(sources) if sources else "-",
            _mean([r.get("wall_seconds") for r in recs]), net,
            tuple(c.key for c in cs), _mean([r.get("comm_rounds") for r in recs])))
    return out


def best_t(summaries: Iterable[Summary], protocol: str) -> Summary | None:
    """The protocol's summary with the lowest mean workload error (ties: smaller T)."""
    rows = [s for s in summaries if s.protocol == protocol and s.error is not None]
    return min(rows, key=lambda s: (s.error, s.rounds)) if rows else None


def near_best_t(summaries: Iterable[Summary], protocol: str) -> tuple[int, ...]:
    """The T whose mean error lies within one standard error of the best T's mean:
    {T : err_T ≤ err_T* + SE_T*}, ascending (only T* itself with one repeat)."""
    summaries = list(summaries)
    best = best_t(summaries, protocol)
    if best is None:
        return ()
    return tuple(sorted(s.rounds for s in summaries if s.protocol == protocol
                        and s.error is not None and s.error <= best.error + best.error_se))


def client_traffic_by_round(ledger: Ledger, n_clients: int) -> dict[int, float]:
    """Per round: Σ over clients of bytes sent + received, divided by K (all clients)."""
    out: dict[int, float] = defaultdict(float)
    for r in ledger.rows:
        for party in (r.sender, r.receiver):
            if party_kind(party) == "client":
                out[r.round] += r.bytes / n_clients
    return dict(out)


def crossover_round(per_round: dict[int, float], target: float
                    ) -> tuple[float | None, bool]:
    """First round t with Σ_{s ≤ t} per_round[s] ≥ target, and whether it was extrapolated.

    Past the last round: t_last + ⌈(target − cumulative) / mean cost of rounds ≥ 1⌉.
    ``(None, False)`` when nothing is known (no rounds, or zero per-round cost)."""
    if not per_round:
        return None, False
    cumulative = 0.0
    last = max(per_round)
    for t in range(min(per_round), last + 1):
        cumulative += per_round.get(t, 0.0)
        if cumulative >= target:
            return float(t), False
    later = [per_round.get(t, 0.0) for t in range(1, last + 1)]
    rate = sum(later) / len(later) if later else 0.0
    if rate <= 0:
        return None, False
    return float(last + math.ceil((target - cumulative) / rate)), True


def mean_curve(curves: Sequence[dict[int, float]]) -> dict[int, float]:
    rounds = sorted(set().union(*curves)) if curves else []
    return {t: sum(c.get(t, 0.0) for c in curves) / len(curves) for t in rounds}


def crossover_for(cells: Sequence[Cell], protocol: str, target: float | None
                  ) -> tuple[float | None, bool, int | None]:
    """(crossover round, extrapolated, T of the runs used) for one group's protocol."""
    mine = [c for c in cells if c.record["protocol"] == protocol]
    if not mine or target is None:
        return None, False, None
    t_max = max(int(c.record["rounds"]) for c in mine)
    curves = [client_traffic_by_round(c.ledger(), int(c.record["clients"]))
              for c in mine if int(c.record["rounds"]) == t_max and c.ledger_path is not None
              and c.ledger_path.is_file()]
    if not curves:
        return None, False, t_max
    t, extrapolated = crossover_round(mean_curve(curves), target)
    return t, extrapolated, t_max


@dataclass(frozen=True)
class TradeOff:
    """One line of the paper's table (with the server side and network estimates)."""

    dataset: str
    epsilon: float
    partition: str
    distaim: Summary
    flaim: Summary
    crossovers: dict[str, tuple[float | None, bool, int | None]]
    distaim_near: tuple[int, ...] = ()  # T within one SE of DistAIM's best (near_best_t)
    flaim_near: tuple[int, ...] = ()

    @property
    def t_ratio(self) -> float:
        """T*_DistAIM / T*_FLAIM (the poster's direction)."""
        return self.distaim.rounds / self.flaim.rounds

    @property
    def t_ratio_range(self) -> tuple[float, float]:
        """The T ratio's range over the near-best sets: (min T_D / max T_F, max T_D / min T_F)."""
        d = self.distaim_near or (self.distaim.rounds,)
        f = self.flaim_near or (self.flaim.rounds,)
        return min(d) / max(f), max(d) / min(f)

    @property
    def client_ratio(self) -> float | None:
        d, f = self.distaim.client_bytes, self.flaim.client_bytes
        return d / f if d is not None and f else None

    @property
    def server_ratio(self) -> float | None:
        d, f = self.distaim.server_bytes, self.flaim.server_bytes
        return d / f if d is not None and f else None

    @property
    def error_diff_pct(self) -> float | None:
        d, f = self.distaim.error, self.flaim.error
        return 100 * (f - d) / d if d and f is not None else None

    @property
    def nll_diff(self) -> float | None:
        d, f = self.distaim.nll, self.flaim.nll
        return f - d if d is not None and f is not None else None


def trade_offs(cells: Sequence[Cell], networks: Sequence[Network] = tuple(PRESETS.values()),
               flaim: str = FLAIM) -> list[TradeOff]:
    """One :class:`TradeOff` per (data set, ε, partition) that has both protocols."""
    summaries = summarise(cells, networks)
    by_group: dict[GroupKey, list[Summary]] = defaultdict(list)
    for s in summaries:
        by_group[(s.dataset, s.epsilon, s.partition)].append(s)
    out = []
    for g, ss in sorted(by_group.items()):
        d, f = best_t(ss, DISTAIM), best_t(ss, flaim)
        if d is None or f is None:
            continue
        gcells = [c for c in cells if group_key(c.record) == g]
        cross = {p: crossover_for(gcells, p, d.client_bytes) for p in FLAIM_VARIANTS
                 if any(c.record["protocol"] == p for c in gcells)}
        out.append(TradeOff(*g, d, f, cross, near_best_t(ss, DISTAIM), near_best_t(ss, flaim)))
    if not out:
        raise TableError(f"no (data set, ε, partition) has both {DISTAIM} and {flaim} results")
    return out


# ---- formatting ----------------------------------------------------------------------------

def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _ts(ts: Sequence[int]) -> str:
    return ",".join(map(str, ts)) or "-"


def _cross(v: tuple[float | None, bool, int | None]) -> str:
    t, extrapolated, t_max = v
    if t is None:
        return "never (no per-round cost)" if t_max is not None else "-"
    return f"{'~' if extrapolated else ''}{t:.0f} (from T={t_max} runs)"


def trade_off_rows(t: TradeOff, networks: Sequence[Network]) -> list[tuple[str, str, str, str]]:
    """(metric, DistAIM, AugFLAIM (Private), comparison) rows for one group."""
    d, f = t.distaim, t.flaim
    lo, hi = t.t_ratio_range
    rows = [
        ("best T (by mean L1 W+ error)", str(d.rounds), str(f.rounds),
         f"T ratio DistAIM/FLAIM {t.t_ratio:.2f}x"),
        ("T within 1 SE of the best", _ts(t.distaim_near), _ts(t.flaim_near),
         f"T ratio range {lo:.2g}x–{hi:.2g}x"),
        ("repeats", str(d.repeats), str(f.repeats), ""),
        ("L1 workload error W+ (mean ± SE)", f"{_f(d.error, '.4f')} ± {d.error_se:.4f}",
         f"{_f(f.error, '.4f')} ± {f.error_se:.4f}",
         f"{_f(t.error_diff_pct, '+.1f')}% (FLAIM vs DistAIM)"),
        ("L1 error, 3-way marginals only", _f(d.error_3way, ".4f"), _f(f.error_3way, ".4f"),
         ""),
        ("NLL (nats/test record)", _f(d.nll, ".3f"), _f(f.nll, ".3f"),
         f"{_f(t.nll_diff, '+.3f')} nats"),
        ("client throughput (sent+recv, mean over all K)", human_bytes(d.client_bytes),
         human_bytes(f.client_bytes), f"DistAIM/FLAIM {_f(t.client_ratio, '.1f')}x"),
        ("  same, mean over participating clients only",
         human_bytes(d.client_bytes_participating), human_bytes(f.client_bytes_participating),
         ""),
        ("server side (per compute server | aggregator)", human_bytes(d.server_bytes),
         human_bytes(f.server_bytes), f"DistAIM/FLAIM {_f(t.server_ratio, '.1f')}x"),
        ("bytes source", d.bytes_source, f.bytes_source, ""),
    ]
    for n in networks:
        ds, fs = d.network_seconds.get(n.name), f.network_seconds.get(n.name)
        ratio = f"DistAIM/FLAIM {ds / fs:.1f}x" if ds is not None and fs else ""
        rows.append((f"comm. wall time, {n.describe()}", _f(ds, ".2f") + " s",
                     _f(fs, ".2f") + " s", ratio))
    rows.append(("measured wall time of the run", _f(d.wall_seconds, ".0f") + " s",
                 _f(f.wall_seconds, ".0f") + " s", ""))
    for proto, v in t.crossovers.items():
        rows.append((f"{proto}: round its client traffic reaches DistAIM's",
                     "", _cross(v), ""))
    return rows


def _render(rows: Sequence[Sequence[str]], markdown: bool) -> str:
    head = ("metric", "DistAIM", "AugFLAIM (Private)", "comparison")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


NOTE = ("Client throughput is a client's bytes sent + received averaged over all K clients "
        "(/K; clients that never take part count as 0) or over the clients that took part at "
        "least once (/part.). Source: wire = counted on a socket, modelled = from the MPC cost "
        "table. MB = 10^6 bytes. Best T (T*) = lowest mean "
        "L1 workload error over repeats; T ratio = T*_DistAIM / T*_FLAIM (the poster's "
        "direction, >= 1 when DistAIM's best T is the larger); SE = sd / sqrt(repeats); its "
        "range runs over the T whose mean lies within one SE of each protocol's best. "
        "Comm. wall time is the network model's estimate "
        "(communication rounds counted on the wire x latency + the busiest link's bytes / "
        "bandwidth; messages where a ledger has no round counts), no compute; `flaimsim "
        "bench network` validates it against links emulated in user space. "
        "'~' marks an extrapolated crossover round.")


PARTICIPATION_LABELS = {"all": "DistAIM: all clients in round 0 (the poster's distributed "
                               "setting)",
                        "poisson": "DistAIM: cumulative Poisson participation"}


def cell_configs(out_dir: str | Path, cells: Sequence[Cell]) -> dict[str, dict[str, Any]]:
    """Each finished cell's full configuration (from ``cells/<key>.json``)."""
    import json

    out = {}
    for c in cells:
        path = Path(out_dir) / "cells" / f"{c.key}.json"
        if path.is_file():
            out[c.key] = json.loads(path.read_text()).get("config", {})
    return out


def setting_header(configs: Iterable[dict[str, Any]]) -> str:
    """Whether the cells ran in the paper's setting (``PRESETS["paper"]``), and if not, how
    they differ."""
    from flaimsim.protocols.config import PRESETS

    paper = dict(PRESETS["paper"], cluster_embedding="umap")
    configs = list(configs)
    differs = {k: sorted({str(c.get(k)) for c in configs if c.get(k) != v})
               for k, v in paper.items()}
    differs = {k: v for k, v in differs.items() if v}
    described = ("K = 100 clients, Poisson p = 0.1, δ = 1e-5, 64 random 3-way marginals "
                 "(seed 123), 80 MB model cap, cluster split (UMAP + k-means), DistAIM in "
                 "cumulative Poisson participation, α = 0.9; fits of 200/1000 mirror-descent "
                 "iterations (the authors used 50/500)")
    if not differs:
        return f"Setting: the paper's (preset 'paper': {described})."
    diff = "; ".join(f"{k} = {', '.join(v)} (paper: {paper[k]})" for k, v in differs.items())
    return f"Setting: the paper's ({described}) except {diff}."


def group_labels(items: Sequence[TradeOff], configs: dict[str, dict[str, Any]]
                 ) -> dict[GroupKey, str]:
    """Per group, how DistAIM's clients took part (from its cells' configurations)."""
    out = {}
    for t in items:
        modes = sorted({str(configs.get(k, {}).get("distaim_participation"))
                        for k in t.distaim.cells})
        options = sorted({distaim_options(configs.get(k, {})) for k in t.distaim.cells} - {""})
        out[(t.dataset, t.epsilon, t.partition)] = "; ".join(
            [PARTICIPATION_LABELS.get(m, f"DistAIM participation {m}") for m in modes]
            + options)
    return out


def distaim_options(config: dict[str, Any]) -> str:
    """DistAIM's encoding, score and mechanism, as a table label (``flaimsim bench options``
    prices each choice)."""
    if not config:
        return ""
    return (f"DistAIM {config.get('sharing', '?')} shares, {config.get('score', '?')} score, "
            f"{config.get('em', '?')} selection, {config.get('score_frac_bits', '?')} fractional "
            f"bits (cost of each choice: flaimsim bench options)")


def format_trade_offs(items: Sequence[TradeOff], networks: Sequence[Network],
                      markdown: bool = False, labels: dict[GroupKey, str] | None = None
                      ) -> str:
    parts = []
    for t in items:
        title = f"{t.dataset}, ε = {t.epsilon:g}, partition = {t.partition}"
        label = (labels or {}).get((t.dataset, t.epsilon, t.partition))
        if label:
            title += f" — {label}"
        parts.append(("### " if markdown else "== ") + title)
        parts.append(_render(trade_off_rows(t, networks), markdown))
        parts.append("")
    parts.append(NOTE)
    return "\n".join(parts)


def format_summary(summaries: Sequence[Summary], markdown: bool = False) -> str:
    """Per (group, protocol, T): error, per-client and server bytes, network times."""
    names = sorted({k for s in summaries for k in s.network_seconds})
    head = ["dataset", "ε", "partition", "protocol", "T", "n", "L1 W+", "SE", "NLL",
            "client MB /K", "client MB /part.", "server MB", "source", "rounds",
            *[f"{n} s" for n in names]]
    rows = [[s.dataset, f"{s.epsilon:g}", s.partition, s.protocol, str(s.rounds),
             str(s.repeats), _f(s.error, ".4f"), f"{s.error_se:.4f}", _f(s.nll, ".3f"),
             _f(None if s.client_bytes is None else s.client_bytes / 1e6, ".4g"),
             _f(None if s.client_bytes_participating is None
                else s.client_bytes_participating / 1e6, ".4g"),
             _f(None if s.server_bytes is None else s.server_bytes / 1e6, ".4g"),
             s.bytes_source, _f(s.comm_rounds, ".0f"),
             *[_f(s.network_seconds.get(n), ".2f") for n in names]]
            for s in summaries]
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    return "\n".join(["  ".join(h.ljust(w) for h, w in zip(head, widths)),
                      "  ".join("-" * w for w in widths)]
                     + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows])


def trade_off_csv_row(t: TradeOff, networks: Sequence[Network]) -> dict[str, Any]:
    d, f = t.distaim, t.flaim
    row: dict[str, Any] = {
        "dataset": t.dataset, "epsilon": t.epsilon, "partition": t.partition,
        "distaim_best_T": d.rounds, "flaim_best_T": f.rounds, "T_ratio": t.t_ratio,
        "T_ratio_min": t.t_ratio_range[0], "T_ratio_max": t.t_ratio_range[1],
        "distaim_T_within_se": _ts(t.distaim_near), "flaim_T_within_se": _ts(t.flaim_near),
        "distaim_error_se": d.error_se, "flaim_error_se": f.error_se,
        "distaim_error": d.error, "flaim_error": f.error, "error_diff_pct": t.error_diff_pct,
        "distaim_nll": d.nll, "flaim_nll": f.nll, "nll_diff": t.nll_diff,
        "distaim_client_bytes": d.client_bytes, "flaim_client_bytes": f.client_bytes,
        "client_ratio": t.client_ratio,
        "distaim_client_bytes_participating": d.client_bytes_participating,
        "flaim_client_bytes_participating": f.client_bytes_participating,
        "distaim_server_bytes_per_server": d.server_bytes,
        "flaim_aggregator_bytes": f.server_bytes, "server_ratio": t.server_ratio,
        "distaim_bytes_source": d.bytes_source, "flaim_bytes_source": f.bytes_source,
        "repeats_distaim": d.repeats, "repeats_flaim": f.repeats,
    }
    for n in networks:
        row[f"distaim_{n.name}_s"] = d.network_seconds.get(n.name)
        row[f"flaim_{n.name}_s"] = f.network_seconds.get(n.name)
    for proto, (tc, extrapolated, t_max) in t.crossovers.items():
        row[f"crossover_round_{proto}"] = tc
        row[f"crossover_extrapolated_{proto}"] = extrapolated
    return row


def write_table(out_dir: str | Path, networks: Sequence[Network] = tuple(PRESETS.values())
                ) -> str:
    """Write DIR/table.csv, DIR/table.md and DIR/summary.csv; return the terminal text."""
    out = Path(out_dir)
    cells = load_cells(out)
    if not cells:
        raise TableError(f"{out}: no finished cells")
    summaries = summarise(cells, networks)
    items = trade_offs(cells, networks)
    rows = [trade_off_csv_row(t, networks) for t in items]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open_atomic(out / "table.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    with open_atomic(out / "summary.csv", "w", newline="") as fh:
        srows = [{**{k: v for k, v in asdict(s).items() if k not in ("network_seconds",
                                                                      "cells")},
                  "error_se": s.error_se,
                  **{f"{k}_s": v for k, v in s.network_seconds.items()}} for s in summaries]
        w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in srows for k in r)))
        w.writeheader()
        w.writerows(srows)
    configs = cell_configs(out, cells)
    header, labels = setting_header(configs.values()), group_labels(items, configs)
    md = ["# Communication trade-off: DistAIM vs AugFLAIM (Private)", "", header, "",
          format_trade_offs(items, networks, markdown=True, labels=labels), "",
          "## Every protocol and T (means over repeats)", "",
          format_summary(summaries, markdown=True), ""]
    write_text(out / "table.md", "\n".join(md))
    return (header + "\n\n" + format_trade_offs(items, networks, labels=labels)
            + "\n\nEvery protocol and T:\n" + format_summary(summaries))


def add_network_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", action="append", default=None, metavar="SPEC",
                   help="lan, wan or LATENCY_MS,BANDWIDTH_MBIT[,link|party] (repeatable; "
                        "default: lan and wan)")


def networks_from_args(args: argparse.Namespace) -> list[Network]:
    return [parse_network(s) for s in (args.network or ("lan", "wan"))]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table", help="the DistAIM vs FLAIM trade-off table of a sweep")
    p.add_argument("dir", help="sweep directory")
    add_network_option(p)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    print(write_table(args.dir, networks_from_args(args)))
    print(f"\nwrote {args.dir}/table.csv, {args.dir}/table.md and {args.dir}/summary.csv")
    return 0


__all__ = ["Summary", "TradeOff", "TableError", "summarise", "best_t", "near_best_t",
           "trade_offs",
           "client_throughput", "server_throughput", "client_traffic_by_round",
           "crossover_round", "crossover_for", "write_table", "format_trade_offs",
           "format_summary"]
