"""Byte counting on the MPyC wire between compute servers, and per-phase ledger rows.

MPyC opens one :class:`mpyc.asyncoro.MessageExchanger` per peer connection and only counts the
bytes it *sends* (``nbytes_sent``: payload + 12-byte header ``<qI`` per message).
:class:`CountingMessageExchanger` adds messages sent, and bytes/messages received, counted the
same way (12 + payload per message, when the runtime takes the message), so that for every
pair ``received(j <- i) == sent(i -> j)`` once a phase is over. Raw socket bytes (including
the one-off pid/PRSS-key handshake) are kept apart in ``nbytes_raw_received``.

:func:`install` assigns the subclass to the module attribute ``mpyc.asyncoro.MessageExchanger``;
the runtime looks the attribute up when it connects, so this must run before ``mpc.start()``.
Snapshots (:class:`WireSnapshot`) are plain values; the driver takes one per server before and
after a phase and :func:`add_wire_rows` turns the differences into ledger rows
``server:i -> server:j`` with source ``wire``.

Rounds (:mod:`flaimsim.parties.rounds`): each party also logs, in program order, the messages
it sends ``(peer, pc, ...)`` and takes ``(-1 - peer, pc, ...)`` (nothing is added to the
wire), each with the profile section it belongs to, its bytes and the time
(:mod:`flaimsim.parties.profile`);
:func:`drain_events` hands the log since the last call to the driver with each snapshot, and
:func:`add_wire_rows` replays the servers' logs of a step into its ``comm_rounds``.
"""

from __future__ import annotations

import time
from asyncio import Future
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from mpyc import asyncoro

from flaimsim.parties.ledger import Ledger, server
from flaimsim.parties.profile import SECTION
from flaimsim.parties.rounds import message_stamps, step_rounds

MPYC_HEADER_BYTES = 12  # <qI: program counter (8) + payload size (4)


class CountingMessageExchanger(asyncoro.MessageExchanger):
    """MPyC peer connection that also counts messages and received bytes."""

    __slots__ = ("nmsgs_sent", "nbytes_received", "nmsgs_received", "nbytes_raw_received",
                 "nbytes_setup_sent", "_events")

    def __init__(self, rt: Any, peer_pid: int | None = None) -> None:
        super().__init__(rt, peer_pid)
        self._events = round_log(rt)
        self.nmsgs_sent = 0
        self.nbytes_received = 0
        self.nmsgs_received = 0
        self.nbytes_raw_received = 0
        self.nbytes_setup_sent = 0

    def connection_made(self, transport: Any) -> None:
        # MPyC's handshake (the connecting party's pid, 2 bytes, and its PRSS keys) is written
        # here with writelines, outside send(): count it where it is written.
        super().connection_made(_SetupCounting(transport, self))
        self.transport = transport

    def send(self, pc: int, payload: bytes) -> None:
        super().send(pc, payload)
        self.nmsgs_sent += 1
        self._events.append((self.peer_pid, pc, SECTION.get(), MPYC_HEADER_BYTES + len(payload),
                             time.perf_counter()))

    def data_received(self, data: bytes) -> None:
        self.nbytes_raw_received += len(data)
        super().data_received(data)

    def receive(self, pc: int) -> Any:
        # Each MPyC message is taken exactly once through receive(): count it there, either at
        # once (it already arrived) or when its future resolves.
        # Its round is taken when the runtime gets the payload: at once, or when the future
        # resolves (this callback is added first, so it runs before any consumer's).
        payload = super().receive(pc)
        if isinstance(payload, Future):
            payload.add_done_callback(lambda fut: self._count_future(fut, pc))
        else:
            self._count(payload, pc)
        return payload

    def _count(self, payload: bytes, pc: int) -> None:
        self.nbytes_received += MPYC_HEADER_BYTES + len(payload)
        self.nmsgs_received += 1
        self._events.append((-1 - self.peer_pid, pc, SECTION.get(), 0, time.perf_counter()))

    def _count_future(self, fut: Future, pc: int) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._count(fut.result(), pc)


class _RoundLog(list):
    """A party's send/take events in program order; ``start``: events drained before."""

    start = 0


_ROUND_LOGS: dict[int, _RoundLog] = {}


def round_log(runtime: Any) -> _RoundLog:
    """The event log shared by all of ``runtime``'s peer connections."""
    return _ROUND_LOGS.setdefault(id(runtime), _RoundLog())


def drain_events(runtime: Any) -> dict[str, Any]:
    """The events logged since the last drain: ``{"start": index, "events": [[a, pc], ...]}``
    (``start`` counts every event drained before, so steps can be checked to be contiguous)."""
    log = round_log(runtime)
    out = {"start": log.start, "events": [list(e) for e in log]}
    log.start += len(log)
    log.clear()
    return out


class _SetupCounting:
    """Stands in for the transport during MPyC's connection_made: counts what it writes."""

    def __init__(self, transport: Any, owner: CountingMessageExchanger) -> None:
        self._transport, self._owner = transport, owner

    def writelines(self, chunks: Any) -> None:
        chunks = [bytes(c) for c in chunks]
        self._owner.nbytes_setup_sent += sum(len(c) for c in chunks)
        self._transport.writelines(chunks)

    def write(self, data: bytes) -> None:
        self._owner.nbytes_setup_sent += len(data)
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def setup_counts(runtime: Any) -> dict[str, list[int]]:
    """Per peer j: the bytes this party wrote to j so far (MPyC's handshake and the messages
    sent, i.e. the ``--peers`` digest), and every byte it read from j. Taken after
    ``mpc.start()`` and the digest exchange, before any protocol message, they are the
    setup's."""
    sent, received = [], []
    for peer in runtime.parties:
        proto = peer.protocol if peer.pid != runtime.pid else None
        ok = isinstance(proto, CountingMessageExchanger)
        sent.append(proto.nbytes_setup_sent + proto.nbytes_sent if ok else 0)
        received.append(proto.nbytes_raw_received if ok else 0)
    return {"sent": sent, "received": received}


def add_setup_rows(ledger: Ledger, counts: Sequence[Mapping[str, Sequence[int]]]) -> int:
    """Ledger rows ``server:i -> server:j`` (phase ``setup``, round 0) of MPyC's connection
    handshakes and the ``--peers`` digests, from every server's :func:`setup_counts`; checks
    the receivers read exactly what the senders wrote. Returns the total. The handshakes go
    out at once, unprompted, then the digests at once: two communication rounds, on the
    first row."""
    total, rounds = 0, 2
    for i, c in enumerate(counts):
        for j, nbytes in enumerate(c["sent"]):
            if j == i or not nbytes:
                continue
            if counts[j]["received"][i] != nbytes:
                raise ValueError(f"setup bytes {i}->{j}: {nbytes} written, "
                                 f"{counts[j]['received'][i]} read")
            ledger.add(0, "setup", server(i), server(j), int(nbytes), 1, "wire", rounds)
            total, rounds = total + int(nbytes), 0
    return total


def install() -> None:
    """Make MPyC use :class:`CountingMessageExchanger` (call before ``mpc.start()``)."""
    asyncoro.MessageExchanger = CountingMessageExchanger


@dataclass(frozen=True)
class WireSnapshot:
    """Cumulative counters of one server; index j of each tuple is peer j (own index: 0)."""

    pid: int
    bytes_sent: tuple[int, ...]
    messages_sent: tuple[int, ...]
    bytes_received: tuple[int, ...]
    messages_received: tuple[int, ...]
    events: int = 0   # round-log events so far (cumulative; a difference: the step's)

    def __sub__(self, before: "WireSnapshot") -> "WireSnapshot":
        if before.pid != self.pid or len(before.bytes_sent) != len(self.bytes_sent):
            raise ValueError("snapshots of different servers cannot be subtracted")

        def d(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(x - y for x, y in zip(a, b))
        return WireSnapshot(self.pid, d(self.bytes_sent, before.bytes_sent),
                            d(self.messages_sent, before.messages_sent),
                            d(self.bytes_received, before.bytes_received),
                            d(self.messages_received, before.messages_received),
                            self.events - before.events)

    @property
    def total_sent(self) -> int:
        return sum(self.bytes_sent)

    @property
    def total_received(self) -> int:
        return sum(self.bytes_received)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "WireSnapshot":
        return WireSnapshot(int(d["pid"]), *(tuple(int(v) for v in d[k]) for k in (
            "bytes_sent", "messages_sent", "bytes_received", "messages_received")),
            int(d.get("events", 0)))


def snapshot(runtime: Any) -> WireSnapshot:
    """Counters of this party's peer connections (zeros where a connection is absent)."""
    cols: dict[str, list[int]] = {k: [] for k in ("bs", "ms", "br", "mr")}
    for peer in runtime.parties:
        proto = peer.protocol if peer.pid != runtime.pid else None
        ok = isinstance(proto, CountingMessageExchanger)
        cols["bs"].append(proto.nbytes_sent if ok else 0)
        cols["ms"].append(proto.nmsgs_sent if ok else 0)
        cols["br"].append(proto.nbytes_received if ok else 0)
        cols["mr"].append(proto.nmsgs_received if ok else 0)
    log = round_log(runtime)
    return WireSnapshot(runtime.pid, tuple(cols["bs"]), tuple(cols["ms"]),
                        tuple(cols["br"]), tuple(cols["mr"]), log.start + len(log))


def phase_differences(before: Sequence[WireSnapshot],
                      after: Sequence[WireSnapshot]) -> list[WireSnapshot]:
    """Per server: counters accumulated between two snapshots (lists indexed by server)."""
    if len(before) != len(after):
        raise ValueError("before/after snapshot lists differ in length")
    return [a - b for a, b in zip(after, before)]


def unmatched_pairs(diffs: Sequence[WireSnapshot]) -> list[tuple[int, int, int, int]]:
    """Pairs (i, j, sent i->j, received at j from i) whose counts disagree (empty = consistent)."""
    out = []
    for d in diffs:
        for j, sent in enumerate(d.bytes_sent):
            if j != d.pid and sent != diffs[j].bytes_received[d.pid]:
                out.append((d.pid, j, sent, diffs[j].bytes_received[d.pid]))
    return out


def step_events(before: Sequence[WireSnapshot], after: Sequence[WireSnapshot],
                drained: Sequence[Mapping[str, Any]]) -> list[list[tuple[Any, ...]]]:
    """Per server, the events ``(peer, pc, section, nbytes, t)`` between two consecutive
    snapshots, from what the second one drained (:func:`drain_events`); raises if they do
    not cover exactly that span."""
    out = []
    for b, a, d in zip(before, after, drained):
        events = [tuple(e) for e in d["events"]]
        end = int(d["start"]) + len(events)
        if int(d["start"]) != b.events or end < a.events:
            raise ValueError(f"server {b.pid}: round log covers events {d['start']}..{end}, "
                             f"the step spans {b.events}..{a.events}")
        out.append(events[:a.events - b.events])
    return out


def add_wire_rows(ledger: Ledger, before: Sequence[WireSnapshot], after: Sequence[WireSnapshot],
                  round: int, phase: str,
                  events: Sequence[Sequence[Sequence[Any]]] | None = None
                  ) -> list[WireSnapshot]:
    """Add rows ``server:i -> server:j`` (bytes i sent to j during the phase); return the diffs.

    Only the sent side is written: received(j) = sum_i sent(i -> j) follows in
    :meth:`Ledger.totals`. With ``events`` (each server's round log of the step, indexed by
    server), the step's depth goes to the ``comm_rounds`` of the row that carried its deepest
    message.
    """
    diffs = phase_differences(before, after)
    rounds: dict = {}
    if events is not None:
        _, rounds = step_rounds(message_stamps(events))
    for d in diffs:
        for j, (nbytes, nmsgs) in enumerate(zip(d.bytes_sent, d.messages_sent)):
            if j != d.pid:
                ledger.add(round, phase, server(d.pid), server(j), nbytes, nmsgs, "wire",
                           rounds.get((d.pid, j), 0))
    return diffs
