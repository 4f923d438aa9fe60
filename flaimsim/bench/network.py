"""The network model: a protocol's communication wall time from its ledger, for a given
per-link latency and bandwidth (compute time is not included).

The ledger is cut into *steps*, one per ``(round, phase)`` in the order they happen (rounds
ascending; within a round, phases in :data:`PHASE_ORDER`). Steps run one after another;
inside a step, everything that can overlap does:

* **Sequential message rounds.** Within a step, the messages on one directed link
  ``sender → receiver`` are taken to be sequential: each waits for the previous one (an MPyC
  phase is mostly a chain of communication rounds — every multiplication or opening is a
  round trip on every server pair — and a SecAgg+ phase sends one message per client per
  session). Different links run in parallel (clients upload at the same time; the servers'
  pairwise links are independent). So a step has

      R_step = max over links ℓ of messages(ℓ)

  sequential message rounds, each paying one latency L. This is an upper bound for links
  that pipeline messages and a lower bound where a message waits for a reply on another
  link; for MPyC's passive protocols (every round is all-to-all) it is close.
* **Bandwidth.** ``per="link"`` (default): every directed link has its own bandwidth B, so
  the step's transfer time is max_ℓ bytes(ℓ) / B. ``per="party"``: every party has one
  full-duplex access link of bandwidth B, so the step's transfer time is
  max_p max(sent(p), received(p)) / B; this exposes the aggregator's ingress bottleneck.

    time(step) = L · R_step + transfer(step),   wall = Σ_steps time(step).

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
    """One (round, phase) step: its sequential message rounds, bottleneck bytes and time."""

    round: int
    phase: str
    message_rounds: int
    bottleneck_bytes: int
    latency_s: float
    transfer_s: float

    @property
    def seconds(self) -> float:
        return self.latency_s + self.transfer_s


def step_costs(rows: Iterable[LedgerRow], network: Network) -> list[StepCost]:
    """The ledger's steps in execution order with their modelled cost."""
    link_msgs: dict[tuple[int, str], dict[tuple[str, str], int]] = defaultdict(
        lambda: defaultdict(int))
    link_bytes: dict[tuple[int, str], dict[tuple[str, str], int]] = defaultdict(
        lambda: defaultdict(int))
    for r in rows:
        step = (r.round, r.phase)
        link_msgs[step][(r.sender, r.receiver)] += r.messages
        link_bytes[step][(r.sender, r.receiver)] += r.bytes
    out = []
    for step in sorted(link_msgs, key=lambda s: (s[0], PHASE_ORDER.index(s[1]))):
        seq = max(link_msgs[step].values())
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
                            8 * bottleneck / network.bandwidth_bps))
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
