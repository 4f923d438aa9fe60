"""The network model: a protocol's communication wall time from its ledger, for a given
per-link latency and bandwidth (compute time is not included).

The ledger is cut into *steps*, one per ``(round, phase)`` in the order they happen (rounds
ascending; within a round, phases in :data:`PHASE_ORDER`). Steps run one after another;
inside a step, everything that can overlap does:

* **Communication rounds.** A step pays one latency L per communication round on its
  critical path: the ledger's ``comm_rounds`` of the step (its depth counted on the wire,
  :mod:`flaimsim.parties.rounds`; MPyC overlaps independent operations, so a message is not a
  round). A ledger without round counts (older runs) falls back to messages: the messages on
  one directed link are taken to be sequential and different links parallel, so

      R_step = comm_rounds(step)                  (counted on the wire), else
      R_step = max over links ℓ of messages(ℓ)    (an upper bound where messages pipeline).

* **Bandwidth.** ``per="link"`` (default): every directed link has its own bandwidth B, so
  the step's transfer time is max_ℓ bytes(ℓ) / B. ``per="party"``: every party has one
  full-duplex access link of bandwidth B, so the step's transfer time is
  max_p max(sent(p), received(p)) / B; this exposes the aggregator's ingress bottleneck.

    time(step) = L · R_step + transfer(step),   wall = Σ_steps time(step).

Validated against links emulated in user space (:mod:`flaimsim.parties.netem`): ``flaimsim
bench network`` prints, per run, the measured wall time over the emulated links beside
compute time + this estimate (docs/network.md).

Bandwidth is in bits per second (Gbit = 10^9 bit); bytes are multiplied by 8.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from flaimsim.parties.ledger import PHASES, LedgerRow
# The presets and the --network syntax live with the link emulator (one source of truth).
from flaimsim.parties.links import PRESETS, Network, NetworkError, parse_network

# The order phases happen in within one round (protocol-independent: a protocol uses a subset).
PHASE_ORDER: tuple[str, ...] = (
    "setup", "model-broadcast", "share-inputs", "score", "select", "secagg-keys",
    "secagg-masked-input", "secagg-unmask", "proxy", "measure", "reveal")
assert set(PHASE_ORDER) == set(PHASES)


@dataclass(frozen=True)
class StepCost:
    """One (round, phase) step: its sequential rounds, bottleneck bytes and time;
    ``counted`` says whether the rounds are the wire's ``comm_rounds`` or messages."""

    round: int
    phase: str
    message_rounds: int
    bottleneck_bytes: int
    latency_s: float
    transfer_s: float
    counted: str = "messages"

    @property
    def seconds(self) -> float:
        return self.latency_s + self.transfer_s


def step_costs(rows: Iterable[LedgerRow], network: Network) -> list[StepCost]:
    """The ledger's steps in execution order with their modelled cost."""
    link_msgs: dict[tuple[int, str], dict[tuple[str, str], int]] = defaultdict(
        lambda: defaultdict(int))
    link_bytes: dict[tuple[int, str], dict[tuple[str, str], int]] = defaultdict(
        lambda: defaultdict(int))
    depth: dict[tuple[int, str], int] = defaultdict(int)
    for r in rows:
        step = (r.round, r.phase)
        link_msgs[step][(r.sender, r.receiver)] += r.messages
        link_bytes[step][(r.sender, r.receiver)] += r.bytes
        depth[step] += int(getattr(r, "comm_rounds", 0) or 0)
    out = []
    for step in sorted(link_msgs, key=lambda s: (s[0], PHASE_ORDER.index(s[1]))):
        counted = "rounds" if depth[step] > 0 else "messages"
        seq = depth[step] if depth[step] > 0 else max(link_msgs[step].values())
        if network.per == "link":
            bottleneck = max(link_bytes[step].values())
        else:
            sent: dict[str, int] = defaultdict(int)
            received: dict[str, int] = defaultdict(int)
            for (s, t), b in link_bytes[step].items():
                sent[s] += b
                received[t] += b
            bottleneck = max(max(sent.values()), max(received.values()))
        out.append(StepCost(step[0], step[1], seq, bottleneck, seq * network.latency_s,
                            network.transfer_s(bottleneck), counted))
    return out


def wall_time(rows: Iterable[LedgerRow], network: Network) -> float:
    """Σ over steps of L · R_step + bottleneck bytes · 8 / B (seconds)."""
    return sum(s.seconds for s in step_costs(rows, network))


def wall_time_split(rows: Iterable[LedgerRow], network: Network) -> tuple[float, float]:
    """(latency part, transfer part) of :func:`wall_time`."""
    steps = step_costs(rows, network)
    return sum(s.latency_s for s in steps), sum(s.transfer_s for s in steps)


__all__ = ["Network", "NetworkError", "PRESETS", "PHASE_ORDER", "StepCost", "parse_network",
           "step_costs", "wall_time", "wall_time_split"]
