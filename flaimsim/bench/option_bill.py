"""DistAIM's bill by option: what the choice of encoding, score and mechanism costs.

One DistAIM run with the defaults, then one run per alternative with everything else fixed
(same data, seed and budget): client shares ``--sharing`` shamir / additive, ``--score l2``,
``--em rnm`` and ``--score-frac-bits 0``. Each row gives the upload per contributing client,
the bytes each server sends per phase (wire under ``--mpc real``, modelled under ``model``)
and the utility, so that a teacher can show what each choice does to the bill.
Used by ``flaimsim explain`` (a tiny real run) and ``flaimsim bench options`` (any data set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from flaimsim.bench.runs import human_bytes
from flaimsim.parties.ledger import party_kind
from flaimsim.protocols.config import RunConfig

# (changes, what they do): the alternatives priced against the defaults. The last pairs two
# options: with the L2 score, compact shares cost an unwrap (one bit decomposition per
# contributor set) that additive shares mod p do not need.
ALTERNATIVES: tuple[tuple[dict[str, Any], str], ...] = (
    ({"sharing": "shamir"}, "clients send a Shamir share of every count to each server"),
    ({"sharing": "additive"}, "additive shares mod p: one vector to server 0, seeds to the rest"),
    ({"score": "l2"}, "L2 distance: Σx² once per contributor set, no per-cell comparison "
     "(compact shares are unwrapped by one bit decomposition per contributor set)"),
    ({"em": "rnm"}, "report-noisy-max: Exp noise, no logarithm (zCDP ε²/2, run at ε_t/2)"),
    ({"score_frac_bits": 0}, "the model marginal compared on the integers"),
    ({"score": "l2", "sharing": "additive"}, "L2 without the unwrap: no bit decomposition"),
)
PHASES = ("share-inputs", "score", "select", "measure")


@dataclass(frozen=True)
class BillRow:
    """One DistAIM run's cost: bytes per contributing client and per server per phase."""

    option: str
    value: str
    note: str
    upload_per_client: float
    server_sent_by_phase: dict[str, float]
    server_sent: float
    l1_error: float
    source: str


def _row(option: str, value: Any, note: str, result: Any, servers: int) -> BillRow:
    ledger, rec = result.ledger, result.record
    clients = [v for p, v in ledger.totals().items() if party_kind(p) == "client" and v["sent"]]
    by_phase: dict[str, float] = {p: 0.0 for p in PHASES}
    for r in ledger.rows:
        if party_kind(r.sender) == "server" and r.phase in by_phase:
            by_phase[r.phase] += r.bytes / servers
    return BillRow(option, str(value), note,
                   sum(c["sent"] for c in clients) / max(len(clients), 1), by_phase,
                   sum(by_phase.values()), float(rec["l1_workload_error"]),
                   str(rec["bytes_source"]))


def option_bill(config: RunConfig, data: Any | None = None,
                alternatives: Sequence[tuple[dict[str, Any], str]] = ALTERNATIVES
                ) -> list[BillRow]:
    """The defaults' row, then one row per alternative (``config`` with that option changed)."""
    from flaimsim.protocols.distaim import run_distaim
    from flaimsim.protocols.prepare import prepare

    config = config.replace(protocol="distaim")
    data = data or prepare(config)
    rows = [_row("(defaults)", f"{config.sharing}, {config.score}, {config.em}, "
                 f"f={config.score_frac_bits}", "", run_distaim(config, data), config.servers)]
    for changes, note in alternatives:
        if all(getattr(config, k) == v for k, v in changes.items()):
            continue
        rows.append(_row(" + ".join(changes), ", ".join(str(v) for v in changes.values()), note,
                         run_distaim(config.replace(**changes), data), config.servers))
    return rows


def format_bill(rows: Sequence[BillRow]) -> str:
    head = ["option", "value", "upload/client", *[f"{p}/server" for p in PHASES],
            "server sent", "L1 W+", "source"]
    body = [[r.option, r.value, human_bytes(r.upload_per_client),
             *[human_bytes(r.server_sent_by_phase[p]) for p in PHASES],
             human_bytes(r.server_sent), f"{r.l1_error:.3f}", r.source] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.option} = {r.value}: {r.note}" for r in rows if r.note]
    notes.append("  L1 differs between rows also by MPC randomness, which cannot be seeded; "
                 "the bytes do not depend on it.")
    return "\n".join(lines + notes)


def bill_records(rows: Sequence[BillRow]) -> list[dict[str, Any]]:
    return [{"option": r.option, "value": r.value, "upload_per_client": r.upload_per_client,
             "server_sent_by_phase": r.server_sent_by_phase, "server_sent": r.server_sent,
             "l1_workload_error": r.l1_error, "bytes_source": r.source} for r in rows]


__all__ = ["ALTERNATIVES", "BillRow", "option_bill", "format_bill", "bill_records"]
