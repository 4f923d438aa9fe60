"""The communication ledger: one row per (aggregated) flow of bytes between two parties.

Every protocol reports its traffic here (DESIGN.md, "the ledger"). Rows are
``run, protocol, round, phase, sender, receiver, bytes, messages, source, comm_rounds``;
tables and plots are views of ledgers. ``comm_rounds`` is the critical-path depth in
communication rounds that the row adds to its (round, phase) (:mod:`flaimsim.parties.rounds`:
one row per measured step carries the step's depth, the others 0), so it sums like bytes. ``source`` says how a figure was obtained and has no default: ``wire``
(counted where the bytes were written to a socket) or ``modelled`` (charged from the
calibrated cost table); summaries refuse to mix them silently.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Literal

PHASES = (
    "setup", "share-inputs", "score", "select", "measure", "reveal", "model-broadcast",
    "secagg-keys", "secagg-masked-input", "secagg-unmask", "proxy",
)
Source = Literal["wire", "modelled"]
SOURCES: tuple[str, ...] = ("wire", "modelled")


def client(k: int) -> str:
    return f"client:{k}"


def server(i: int) -> str:
    return f"server:{i}"


AGGREGATOR = "aggregator"


def party_kind(name: str) -> str:
    """``client``, ``server`` or ``aggregator`` for a party name."""
    kind = name.split(":", 1)[0]
    if kind not in ("client", "server", "aggregator"):
        raise ValueError(f"unknown party name {name!r}")
    return kind


@dataclass(frozen=True)
class LedgerRow:
    run: str
    protocol: str
    round: int
    phase: str
    sender: str
    receiver: str
    bytes: int
    messages: int
    source: Source
    comm_rounds: int = 0

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}; expected one of {PHASES}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.bytes < 0 or self.messages < 0 or self.comm_rounds < 0:
            raise ValueError("bytes, messages and comm_rounds must be non-negative")
        party_kind(self.sender), party_kind(self.receiver)


@dataclass
class Ledger:
    """An append-only list of :class:`LedgerRow` for one run."""

    run: str = "run"
    protocol: str = ""
    rows: list[LedgerRow] = field(default_factory=list)

    def add(self, round: int, phase: str, sender: str, receiver: str, nbytes: int,
            messages: int, source: Source, comm_rounds: int = 0) -> None:
        """One row; ``source`` is required (``wire`` or ``modelled``, never guessed)."""
        if nbytes == 0 and messages == 0:
            return
        self.rows.append(LedgerRow(self.run, self.protocol, int(round), phase, sender,
                                   receiver, int(nbytes), int(messages), source,
                                   int(comm_rounds)))

    def extend(self, rows: Iterable[LedgerRow]) -> None:
        self.rows.extend(rows)

    @property
    def sources(self) -> set[str]:
        return {r.source for r in self.rows}

    def bytes_source(self) -> str | None:
        """``wire``, ``modelled`` or ``mixed`` (never silently one of the first two)."""
        s = self.sources
        if not s:
            return None
        return s.pop() if len(s) == 1 else "mixed"

    def write_csv(self, path: str | Path) -> None:
        names = list(LedgerRow.__dataclass_fields__)
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=names)
            w.writeheader()
            for r in self.rows:
                w.writerow(asdict(r))

    @staticmethod
    def read_csv(path: str | Path) -> "Ledger":
        rows = []
        with open(path, newline="") as fh:
            for d in csv.DictReader(fh):
                rows.append(LedgerRow(d["run"], d["protocol"], int(d["round"]), d["phase"],
                                      d["sender"], d["receiver"], int(d["bytes"]),
                                      int(d["messages"]), d["source"],  # type: ignore[arg-type]
                                      int(d.get("comm_rounds") or 0)))
        run = rows[0].run if rows else "run"
        proto = rows[0].protocol if rows else ""
        return Ledger(run, proto, rows)

    # ---- summaries -------------------------------------------------------------------
    def totals(self) -> dict[str, dict[str, int]]:
        """Per party: bytes sent and received, messages sent and received."""
        out: dict[str, dict[str, int]] = defaultdict(
            lambda: {"sent": 0, "received": 0, "messages_sent": 0, "messages_received": 0})
        for r in self.rows:
            out[r.sender]["sent"] += r.bytes
            out[r.sender]["messages_sent"] += r.messages
            out[r.receiver]["received"] += r.bytes
            out[r.receiver]["messages_received"] += r.messages
        return dict(out)

    def by_phase(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.rows:
            out[r.phase] += r.bytes
        return dict(out)

    def rounds_by_step(self) -> dict[tuple[int, str], int]:
        """Communication rounds (critical-path depth) per (round, phase)."""
        out: dict[tuple[int, str], int] = defaultdict(int)
        for r in self.rows:
            out[(r.round, r.phase)] += r.comm_rounds
        return dict(out)

    def rounds_by_phase(self) -> dict[str, int]:
        """Communication rounds per phase, summed over the rounds."""
        out: dict[str, int] = defaultdict(int)
        for r in self.rows:
            out[r.phase] += r.comm_rounds
        return dict(out)

    @property
    def comm_rounds(self) -> int:
        """The run's communication rounds: its steps' depths added up (steps run in turn)."""
        return sum(r.comm_rounds for r in self.rows)

    def summary(self, n_clients: int, n_servers: int) -> dict[str, float | int | str | None]:
        """Means per client (over all K clients and over participating ones) and per server.

        A client participates if it sent or received anything. With no clients or servers in
        the protocol the corresponding fields are ``None``.
        """
        tot = self.totals()
        zero = {"sent": 0, "received": 0}
        clients = [tot.get(client(k), zero) for k in range(n_clients)]
        active = [c for c in clients if c["sent"] or c["received"]]
        servers = [tot.get(server(i), zero) for i in range(n_servers)]
        agg = tot.get(AGGREGATOR)

        def mean(xs: list[dict[str, int]], key: str) -> float | None:
            return sum(x[key] for x in xs) / len(xs) if xs else None

        return {
            "client_bytes_sent_mean": mean(clients, "sent"),
            "client_bytes_received_mean": mean(clients, "received"),
            "client_bytes_sent_mean_participating": mean(active, "sent"),
            "client_bytes_received_mean_participating": mean(active, "received"),
            "participating_clients": len(active),
            "server_bytes_sent_mean": mean(servers, "sent"),
            "server_bytes_received_mean": mean(servers, "received"),
            "aggregator_bytes_sent": agg["sent"] if agg else None,
            "aggregator_bytes_received": agg["received"] if agg else None,
            "bytes_source": self.bytes_source(),
            "comm_rounds": self.comm_rounds,
            "comm_rounds_by_phase": self.rounds_by_phase(),
        }
