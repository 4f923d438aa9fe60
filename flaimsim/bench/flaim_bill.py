"""FLAIM's bill by option: what each choice costs in bytes and utility (``flaimsim bench
flaim-options``), like DistAIM's :mod:`flaimsim.bench.option_bill`.

One FLAIM run with the defaults (``--flaim-noise central``: the aggregator noises exact sums
of >= 2 choosers, a lone chooser's group adds noise shares), then one run per alternative with
everything else fixed (same data, seed, budget): ``--flaim-noise distributed`` (every client
adds an N_Z(0, σ²/n) share, KLS21), and ``--aggregation servers`` (clients secret-share to
the MPC servers instead of SecAgg+). Each row: bytes sent and received per participating
client, per round phase (model broadcast, choices, secure aggregation), the sessions with
noise shares, and L1. All bytes are counted on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from flaimsim.bench.runs import human_bytes
from flaimsim.protocols.config import RunConfig

ALTERNATIVES: tuple[tuple[dict[str, Any], str], ...] = (
    ({"flaim_noise": "distributed"}, "every client adds an N_Z(0, sigma^2/n) share: the "
     "aggregator sees noisy sums only (KLS21 slack charged; SecAgg+ words hold signed "
     "sums mod 2^b)"),
    ({"aggregation": "servers"}, "clients Shamir-share to 3 MPC servers; server 0 opens each "
     "sum to the aggregator (no key agreement)"),
)
SECURE_PHASES = ("secagg-keys", "secagg-masked-input", "secagg-unmask", "share-inputs",
                 "reveal", "proxy")


@dataclass(frozen=True)
class FlaimBillRow:
    option: str
    value: str
    note: str
    client_sent: float          # per participating client, over the run
    client_received: float
    secure_bytes: float         # all parties' secure-aggregation bytes (sent), over the run
    broadcast_bytes: float      # model broadcast, all clients
    noise_share_sessions: int
    sessions: int
    l1_error: float
    source: str


def _row(option: str, value: str, note: str, result: Any) -> FlaimBillRow:
    rec, phases = result.record, result.ledger.by_phase()
    return FlaimBillRow(option, value, note,
                        float(rec["client_bytes_sent_mean_participating"]),
                        float(rec["client_bytes_received_mean_participating"]),
                        float(sum(phases.get(p, 0) for p in SECURE_PHASES)),
                        float(phases.get("model-broadcast", 0)),
                        int(rec.get("noise_share_sessions", 0)),
                        int(rec.get("secagg_sessions", 0)),
                        float(rec["l1_workload_error"]), str(rec["bytes_source"]))


def flaim_bill(config: RunConfig, data: Any | None = None,
               alternatives: Sequence[tuple[dict[str, Any], str]] = ALTERNATIVES
               ) -> list[FlaimBillRow]:
    """The defaults' row, then one row per alternative (``config`` with that option changed)."""
    from flaimsim.protocols.flaim import run_flaim
    from flaimsim.protocols.prepare import prepare

    if config.protocol in ("central", "distaim"):
        config = config.replace(protocol="aug-flaim-private")
    data = data or prepare(config)
    rows = [_row("(defaults)", f"{config.flaim_noise}, {config.aggregation}", "",
                 run_flaim(config, data))]
    for changes, note in alternatives:
        if all(getattr(config, k) == v for k, v in changes.items()):
            continue
        rows.append(_row(" + ".join(changes), ", ".join(str(v) for v in changes.values()),
                         note, run_flaim(config.replace(**changes), data)))
    return rows


def format_flaim_bill(rows: Sequence[FlaimBillRow]) -> str:
    head = ["option", "value", "client sent", "client recv", "secure agg", "broadcast",
            "noisy sessions", "L1 W+", "source"]
    body = [[r.option, r.value, human_bytes(r.client_sent), human_bytes(r.client_received),
             human_bytes(r.secure_bytes), human_bytes(r.broadcast_bytes),
             f"{r.noise_share_sessions}/{r.sessions}", f"{r.l1_error:.4f}", r.source]
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("  client sent/recv: per participating client over the run; secure agg: "
                 "bytes sent by all parties in secure aggregation; noisy sessions: sessions "
                 "whose clients added noise shares / all sessions")
    lines += [f"  {r.option} = {r.value}: {r.note}" for r in rows if r.note]
    return "\n".join(lines)


def flaim_bill_records(rows: Sequence[FlaimBillRow]) -> list[dict[str, Any]]:
    return [dict(r.__dict__) for r in rows]


__all__ = ["ALTERNATIVES", "FlaimBillRow", "flaim_bill", "flaim_bill_records",
           "format_flaim_bill"]
