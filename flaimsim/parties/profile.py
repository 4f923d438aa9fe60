"""The per-operation profile: each phase broken into its secure operations, each with bytes,
messages, communication rounds and seconds (``flaimsim run --profile``, ``result.json``).

Two sources feed it:

- **MPC servers.** Code marks an operation with ``with section("argmax"): ...``. The name is a
  context variable: MPyC runs every secure operation as an asyncio task, and a task copies the
  context when it is created, so every message a task (or a task it creates) sends or takes is
  tagged with the section that was open when the work was *set up*, however late the event
  loop actually runs it. Nothing is awaited at a boundary: the schedule, the bytes and the
  rounds are those of a run without profiling. The servers' round logs carry the tag
  (:mod:`flaimsim.parties.mpc.wire`); the driver splits every measured step by section
  (:func:`mpc_step_ops`): bytes and messages sent, the depth of the section's own messages
  (its rounds, counted as if it ran alone) and its span (first to last of its messages at any
  server, so overlapping operations overlap in seconds too).
- **Driver-side steps** (client uploads, SecAgg+'s four steps): :func:`record` with figures
  measured where the frames were written.

:func:`profile_table` adds, per (round, phase), an ``other`` row with the traffic no operation
claimed, so an operation table always adds up to the ledger's bytes and messages.
"""

from __future__ import annotations

import contextvars
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping, Sequence

from flaimsim.parties.rounds import message_stamps
from flaimsim.text_table import text_table

SECTION: contextvars.ContextVar[str] = contextvars.ContextVar("flaimsim_section", default="")


@contextmanager
def section(name: str) -> Iterator[None]:
    """Tag the secure work set up inside the block (and everything it spawns) as ``name``."""
    token = SECTION.set(name)
    try:
        yield
    finally:
        SECTION.reset(token)


@dataclass(frozen=True)
class OpCost:
    """One operation's share of one (round, phase)."""

    round: int
    phase: str
    op: str
    bytes: int
    messages: int
    rounds: int
    seconds: float | None


class Profiler:
    """The operations recorded during one run."""

    def __init__(self) -> None:
        self.ops: list[OpCost] = []

    def add(self, op: OpCost) -> None:
        self.ops.append(op)


_CURRENT: list[Profiler] = []


@contextmanager
def collecting() -> Iterator[Profiler]:
    """Collect the operations recorded while the block runs (one run)."""
    prof = Profiler()
    _CURRENT.append(prof)
    try:
        yield prof
    finally:
        _CURRENT.remove(prof)


def record(round: int, phase: str, op: str, nbytes: int, messages: int, rounds: int,
           seconds: float | None) -> None:
    """Add one operation's figures to the run being collected (none: nothing happens)."""
    if _CURRENT:
        _CURRENT[-1].add(OpCost(int(round), phase, op, int(nbytes), int(messages), int(rounds),
                                seconds))


@contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t:`` ... ``t[0]`` holds the block's wall seconds afterwards."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)


@contextmanager
def star_step(log: Any, round: int, phase: str, op: str) -> Iterator[None]:
    """Record the block as one operation on the FL star network: the frames written to
    ``log`` (a :class:`~flaimsim.parties.transport.WireLog` with stamps) during it, the rounds
    it deepened the session by, its wall time."""
    n0, deep0 = len(log.records), log.deepest
    with timed() as seconds:
        yield
    new = log.records[n0:]
    record(round, phase, op, sum(r.nbytes for r in new), len(new),
           max(0, log.deepest - deep0), seconds[0])


def mpc_step_ops(events: Sequence[Sequence[Sequence[Any]]], round: int, phase: str,
                 default: str) -> list[OpCost]:
    """One measured MPC step split by section, from every server's tagged round log
    (events ``(peer, pc, section, nbytes, t)``); untagged work is ``default``."""
    names = sorted({str(e[2]) for log in events for e in log if len(e) > 2})
    out = []
    for name in names:
        logs = [[e for e in log if len(e) > 2 and e[2] == name] for log in events]
        sends = [e for log in logs for e in log if int(e[0]) >= 0]
        if not sends:
            continue
        stamps = message_stamps(logs)
        spans = [max(float(e[4]) for e in log) - min(float(e[4]) for e in log)
                 for log in logs if log]
        out.append(OpCost(int(round), phase, name or default,
                          sum(int(e[3]) for e in sends), len(sends),
                          max(stamps.values(), default=0), max(spans, default=0.0)))
    return out


def profile_table(ops: Sequence[OpCost], ledger: Any) -> list[dict[str, Any]]:
    """Per (phase, op), summed over rounds: bytes, messages, rounds, seconds and how many
    steps; each phase's unclaimed ledger traffic as op ``other``. Phases in ledger order."""
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    claimed: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for o in ops:
        a = acc.setdefault((o.phase, o.op), {"phase": o.phase, "op": o.op, "bytes": 0,
                                             "messages": 0, "rounds": 0, "seconds": None,
                                             "steps": 0})
        a["bytes"] += o.bytes
        a["messages"] += o.messages
        a["rounds"] += o.rounds
        a["steps"] += 1
        if o.seconds is not None:
            a["seconds"] = (a["seconds"] or 0.0) + o.seconds
        claimed[o.phase][0] += o.bytes
        claimed[o.phase][1] += o.messages
    order: list[str] = []
    total: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in ledger.rows:
        if r.phase not in order:
            order.append(r.phase)
        total[r.phase][0] += r.bytes
        total[r.phase][1] += r.messages
        total[r.phase][2] += r.comm_rounds
    for phase, (nbytes, msgs, _) in total.items():
        rest = (nbytes - claimed[phase][0], msgs - claimed[phase][1])
        if rest[0] > 0 or rest[1] > 0:
            acc[(phase, "other")] = {"phase": phase, "op": "other", "bytes": rest[0],
                                     "messages": rest[1], "rounds": None, "seconds": None,
                                     "steps": None}
    rank = {p: i for i, p in enumerate(order)}
    rows = sorted(acc.values(), key=lambda a: (rank.get(a["phase"], len(rank)),
                                              a["op"] == "other", -a["bytes"]))
    for a in rows:
        a["phase_rounds"] = total[a["phase"]][2] if a["phase"] in total else None
    return rows


def format_profile(rows: Sequence[Mapping[str, Any]]) -> str:
    """The profile as a table (bytes in MB = 10^6 B)."""
    head = ("phase", "operation", "steps", "MB", "messages", "rounds", "seconds")
    body = [(r["phase"], r["op"], "-" if r["steps"] is None else str(r["steps"]),
             f"{r['bytes'] / 1e6:.4f}", str(r["messages"]),
             "-" if r["rounds"] is None else str(r["rounds"]),
             "-" if r["seconds"] is None else f"{r['seconds']:.3f}") for r in rows]
    lines = text_table(head, body)
    lines.append("rounds: the operation's own critical path, summed over its steps (operations "
                 "of a phase may overlap: see the ledger for the phase's rounds); seconds: "
                 "from its first to its last message (MPC) or wall time of the step (SecAgg+, "
                 "uploads); other: traffic of the phase no operation claimed")
    return "\n".join(lines)


def as_dicts(ops: Sequence[OpCost]) -> list[dict[str, Any]]:
    return [asdict(o) for o in ops]
