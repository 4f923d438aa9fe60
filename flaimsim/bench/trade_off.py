"""The numbers of the paper's communication trade-off table, from a sweep's cells: the
per-(protocol, T) summary the plots draw, each protocol's best T, throughputs and the
crossover round. Their text and files (and ``flaimsim table``) are :mod:`flaimsim.bench.table`'s.

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

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from flaimsim.parties.ledger import Ledger, party_kind
from flaimsim.bench.network import PRESETS, Network, wall_time
from flaimsim.bench.sweep_dir import Cell

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


__all__ = ["DISTAIM", "FLAIM", "FLAIM_VARIANTS", "GroupKey", "Summary", "TradeOff",
           "TableError", "summarise", "best_t", "near_best_t", "trade_offs", "group_key",
           "client_throughput", "client_throughput_participating", "server_throughput",
           "client_traffic_by_round", "crossover_round", "mean_curve", "crossover_for"]
