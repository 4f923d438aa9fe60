"""Communication rounds: logical round stamps of messages and the critical-path depth per step.

A message's stamp (its logical round) is 1 + the highest stamp among the messages its sender
had received before sending it (a Lamport clock): a message sent before anything was received
has stamp 1, a reply to it stamp 2.

``comm_rounds`` is the critical-path depth, additive over ledger rows (it sums like bytes):

- MPyC servers: each measured step (a driver command, whose end the driver awaits over its
  control channel, which is not part of the protocol's wire) starts at clock 0; its depth is
  its highest stamp, charged to the row of the link that carried that message (ties: the
  smallest (sender, receiver)); steps follow one another, so their depths add up. Client
  uploads are one step of depth 1 (a client has received nothing when it uploads).
- The FL star network: clocks run over the whole session (the aggregator, the hub, carries
  the chain from step to step on the wire); a message that goes deeper than every earlier one
  charges the difference to its row, so a run's charges add up to its depth.

Stamps are never written to the wire (the bytes stay those of the model). They are computed
out of band, two ways (docs/rounds.md says why):

- MPyC servers log, in program order, every message they send ``(peer, pc)`` and every message
  the runtime takes ``(-1 - peer, pc)``; MPyC labels each message of a link with a distinct
  program counter ``pc``, so a receive names its send exactly. :func:`message_stamps` replays
  the logs of all servers (driver side) and returns every message's stamp.
- The FL star network lives in one process and keeps the clocks online
  (:class:`LamportClocks`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Hashable, Iterable, Mapping, Sequence

Event = tuple[int, int]     # (peer, pc): sent to peer; (-1 - peer, pc): taken from peer
# (the servers' logs add section, bytes and time after these two: flaimsim.parties.profile)
MessageKey = tuple[int, int, int]   # (sender, receiver, pc)


class RoundLogError(ValueError):
    """Event logs that no execution could have produced (a receive before its send)."""


def sent_event(peer: int, pc: int) -> Event:
    return (int(peer), int(pc))


def received_event(peer: int, pc: int) -> Event:
    return (-1 - int(peer), int(pc))


def message_stamps(logs: Sequence[Sequence[Sequence[Any]]]) -> dict[MessageKey, int]:
    """Stamp of every message sent in the logs (``logs[p]``: party p's events in program order;
    an event's first two fields are ``(peer, pc)`` or ``(-1 - peer, pc)``, the rest ignored).

    A receive whose send is in no log came from before the step: it counts as stamp 0. The
    replay advances each party until it waits for a message not stamped yet; a real run never
    deadlocks, so a replay that stops early means the logs are inconsistent.
    """
    sends = {(p, int(e[0]), int(e[1])) for p, log in enumerate(logs) for e in log if e[0] >= 0}
    stamps: dict[MessageKey, int] = {}
    clock = [0] * len(logs)
    at = [0] * len(logs)
    while True:
        moved = False
        for p, log in enumerate(logs):
            i = at[p]
            while i < len(log):
                peer, pc = int(log[i][0]), int(log[i][1])
                if peer >= 0:
                    stamps[(p, peer, pc)] = clock[p] + 1
                else:
                    key = (-1 - peer, p, pc)
                    if key in stamps:
                        clock[p] = max(clock[p], stamps[key])
                    elif key in sends:
                        break   # its sender has not reached it yet
                i += 1
            moved |= i > at[p]
            at[p] = i
        if all(at[p] == len(log) for p, log in enumerate(logs)):
            return stamps
        if not moved:
            stuck = [p for p, log in enumerate(logs) if at[p] < len(log)]
            raise RoundLogError(f"round logs of parties {stuck} wait for messages that are "
                                "sent only after they are taken")


def step_rounds(stamps: Mapping[tuple[Hashable, Hashable, Hashable], int]
                ) -> tuple[int, dict[tuple[Hashable, Hashable], int]]:
    """(depth, rounds per link): a step's depth charged to the link of its deepest message."""
    if not stamps:
        return 0, {}
    depth = max(stamps.values())
    link = min((k[0], k[1]) for k, s in stamps.items() if s == depth)
    return depth, {link: depth}


def deepest_links(stamped: Iterable[tuple[Hashable, str, str, int]]
                  ) -> dict[Hashable, tuple[int, tuple[str, str]]]:
    """Per step key: (highest stamp, the link (sender, receiver) that carried it first in
    sorted order), from ``(step, sender, receiver, stamp)`` items."""
    out: dict[Hashable, tuple[int, tuple[str, str]]] = {}
    for step, snd, rcv, stamp in stamped:
        best = out.get(step)
        if best is None or stamp > best[0] or (stamp == best[0] and (snd, rcv) < best[1]):
            out[step] = (int(stamp), (snd, rcv))
    return out


class LamportClocks:
    """Online Lamport clocks of parties that live in one process (the FL star network).

    ``send`` returns a new message's stamp; ``take`` records that a party took a message.
    Here the hub (the aggregator) carries the chain from step to step on the wire itself, so
    clocks run over the whole session. :meth:`charge` makes the stamps additive: a message
    that deepens the run beyond every earlier message (the frontier) charges the difference
    to its row, so the charges add up to the run's depth and each (round, phase) gets the
    rounds it added.
    """

    def __init__(self) -> None:
        self._clock: dict[str, int] = defaultdict(int)
        self._frontier = 0
        self._floor = 0   # raised by barrier(): every party is at least this far

    def send(self, sender: str) -> int:
        return max(self._clock[sender], self._floor) + 1

    def barrier(self) -> None:
        """A step that starts because the in-process driver moved on, not because a message
        told its parties (a SecAgg+ session's first sends): it follows everything before, so
        its first messages add a round. Links emulated in user space (docs/network.md) show
        that latency; without the barrier the count missed one round per session."""
        self._floor = max([self._floor, *self._clock.values()])

    def take(self, party: str, stamp: int) -> None:
        self._clock[party] = max(self._clock[party], int(stamp))

    def charge(self, stamped: Iterable[tuple[int, str, str, str, int]]
               ) -> dict[tuple[int, str, str, str], int]:
        """``(round, phase, sender, receiver, stamp)`` of newly flushed messages, in the order
        they were sent -> rounds per row key (round, phase, sender, receiver)."""
        out: dict[tuple[int, str, str, str], int] = defaultdict(int)
        for rnd, ph, snd, rcv, stamp in stamped:
            if stamp > self._frontier:
                out[(rnd, ph, snd, rcv)] += stamp - self._frontier
                self._frontier = int(stamp)
        return dict(out)


def block_charge(stamped: Iterable[tuple[int, str, str, str, int]]
                 ) -> dict[tuple[int, str, str, str], int]:
    """Rounds per row key for frames flushed as one barrier-separated step (stamps counted
    from the step's start): per (round, phase), the step's depth, on its deepest link."""
    deep = deepest_links(((rnd, ph), s, r, st) for rnd, ph, s, r, st in stamped)
    return {(rnd, ph, snd, rcv): depth for (rnd, ph), (depth, (snd, rcv)) in deep.items()
            if depth > 0}
