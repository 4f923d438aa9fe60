"""The FL aggregation server of FLAIM: client sampling, model broadcast, choices, secure
aggregation orchestration and central Gaussian noise.

- Sampling: Poisson with rate p (each client independently); a draw with fewer than 2 clients
  is redrawn, because secure aggregation needs at least 2 inputs. Redrawing conditions the
  sample on |S| ≥ 2, which changes the sampling law slightly; the accountant does not use
  amplification by subsampling, so the privacy analysis is unaffected.
- Transport: every message crosses a loopback TCP connection of the
  :class:`~flaimsim.parties.star.StarNetwork` as one frame (14-byte header + payload),
  counted where it is written and again where it is read.
- Model broadcast: one MODEL frame per sampled client carrying the serialised model
  (:func:`serialise_model`: each clique's name and its float64 potential table as ``np.save``
  output); each client parses what it read.
- Choices: each client sends its candidate index as a 4-byte little-endian integer in a
  CHOICE frame; the aggregator uses the indices it read off its sockets.
- Secure aggregation: one SecAgg+ session per distinct chosen marginal over the clients that
  chose it (:mod:`flaimsim.parties.secagg`). A marginal chosen by a single client cannot be
  aggregated alone; other sampled clients join as *covers* with zero vectors (they pay the
  bytes; the protocol module decides how many), and the group's clients add distributed
  noise shares, so the aggregator never learns that client's exact vector
  (protocols/flaim_sessions.py).
  With >= 2 choosers the aggregator learns the exact sum before it adds the noise: secure
  aggregation hides individual vectors among the contributors, never the sum, and DP protects
  what leaves the aggregator (the model and the synthetic data).
- Noise: the discrete Gaussian N_Z(0, σ² I) (``mechanisms.dp.gaussian_mechanism``) added once
  per aggregate by the aggregator.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Collection, Mapping, Sequence

import numpy as np

from flaimsim.mechanisms.dp import gaussian_mechanism
from flaimsim.mechanisms.model import GraphicalModel
from flaimsim.parties import profile
from flaimsim.parties.ledger import AGGREGATOR, Ledger, client
from flaimsim.parties.secagg.aggregate import SecAggResult, secure_aggregate
from flaimsim.parties.secagg.protocol import SecAggError
from flaimsim.parties.star import StarNetwork
from flaimsim.parties.transport import FrameKind, TransportError, sender_name

Clique = tuple[str, ...]
CHOICE = struct.Struct("<I")
NAME_LEN = struct.Struct("<H")
MIN_SAMPLE = 2


class FlaimRoundError(RuntimeError):
    """A FLAIM round failed (secure aggregation could not finish); no noisy sum was released
    and no privacy was charged for the round."""

    def __init__(self, round: int, reason: str) -> None:
        super().__init__(f"FLAIM round {round} failed: {reason}; the round released nothing and "
                         "spent no privacy budget")
        self.round = round
        self.reason = reason


class SamplingError(ValueError):
    """Client sampling that cannot produce a valid sample."""


def poisson_sample(n_clients: int, rate: float, rng: np.random.Generator,
                   minimum: int = MIN_SAMPLE, max_tries: int = 10_000) -> np.ndarray:
    """Sorted client ids, each included independently with probability ``rate``; redrawn
    until at least ``minimum`` are sampled (secure aggregation needs 2)."""
    if n_clients < minimum:
        raise SamplingError(f"{n_clients} client(s) cannot give a sample of {minimum}")
    if not 0 < rate <= 1:
        raise SamplingError(f"sampling rate must be in (0, 1], got {rate}")
    for _ in range(max_tries):
        picked = np.flatnonzero(rng.random(n_clients) < rate)
        if picked.size >= minimum:
            return picked
    raise SamplingError(f"rate {rate} over {n_clients} clients gave fewer than {minimum} "
                        f"clients in {max_tries} draws")


# ---- model broadcast ------------------------------------------------------------------------
def serialise_model(model: GraphicalModel) -> bytes:
    """The model as sent: per clique, its attribute names (UTF-8, '|'-joined, length-prefixed)
    and ``np.save`` of its float64 potential table; prefixed by the clique count."""
    buf = io.BytesIO()
    potentials = model.potentials
    buf.write(NAME_LEN.pack(len(potentials)))
    for cl, table in potentials.items():
        name = "|".join(cl).encode()
        buf.write(NAME_LEN.pack(len(name)) + name)
        np.save(buf, np.ascontiguousarray(table, dtype=np.float64), allow_pickle=False)
    return buf.getvalue()


def deserialise_model(blob: bytes) -> dict[Clique, np.ndarray]:
    """Inverse of :func:`serialise_model`: clique -> potential table."""
    buf = io.BytesIO(blob)
    (count,) = NAME_LEN.unpack(buf.read(NAME_LEN.size))
    out: dict[Clique, np.ndarray] = {}
    for _ in range(count):
        (length,) = NAME_LEN.unpack(buf.read(NAME_LEN.size))
        clique = tuple(buf.read(length).decode().split("|"))
        out[clique] = np.load(buf, allow_pickle=False)
    return out


def broadcast_model(model: GraphicalModel, clients: Sequence[int], network: StarNetwork,
                    round: int) -> int:
    """Send the serialised model to each client (phase model-broadcast); each client parses
    the frame it read. Returns the bytes one client's frame took on the wire."""
    blob = serialise_model(model)
    with profile.star_step(network.sent, round, "model-broadcast", "model broadcast"):
        sizes = {network.send(AGGREGATOR, client(int(k)), FrameKind.MODEL, round,
                              "model-broadcast", blob) for k in clients}
    parsed: bytes | None = None   # a frame equal to one already parsed parses alike
    for k in clients:
        frames = network.receive(client(int(k)), FrameKind.MODEL)
        if len(frames) != 1 or frames[0].round != round:
            raise TransportError(f"client {k}: expected one round-{round} model, got "
                                 f"{len(frames)} frame(s)")
        if frames[0].payload != parsed:
            deserialise_model(frames[0].payload)
            parsed = frames[0].payload
    return sizes.pop() if sizes else 0


# ---- choices ----------------------------------------------------------------------------------
def encode_choice(index: int) -> bytes:
    return CHOICE.pack(int(index))


def decode_choice(blob: bytes) -> int:
    return CHOICE.unpack(blob)[0]


def send_choice(k: int, index: int, network: StarNetwork, round: int) -> int:
    """Client k sends its chosen candidate index in the clear (phase select); its wire bytes."""
    return network.send(client(k), AGGREGATOR, FrameKind.CHOICE, round, "select",
                        encode_choice(index))


def collect_choices(network: StarNetwork, round: int) -> dict[int, int]:
    """The aggregator reads every choice sent to it: client id -> candidate index."""
    out: dict[int, int] = {}
    for f in network.receive(AGGREGATOR, FrameKind.CHOICE):
        k = int(sender_name(f.sender).split(":", 1)[1])
        if f.round != round or k in out:
            raise TransportError(f"unexpected choice from client {k} (round {f.round})")
        out[k] = decode_choice(f.payload)
    return out


def choose_covers(group: Collection[int], sampled: Sequence[int], count: int,
                  rng: np.random.Generator) -> tuple[int, ...]:
    """``count`` sampled clients outside ``group`` (seeded) that join its session with zeros."""
    others = [int(k) for k in sampled if k not in set(group)]
    if len(others) < count:
        raise SamplingError(f"{count} cover client(s) needed but only {len(others)} available")
    return tuple(sorted(int(k) for k in rng.choice(others, count, replace=False)))


# ---- secure aggregation ---------------------------------------------------------------------
@dataclass(frozen=True)
class SecureSum:
    """The exact sum the aggregator obtains from one session, and who was in it."""

    sum: np.ndarray
    contributors: tuple[int, ...]     # clients whose real vector is in the sum
    covers: tuple[int, ...]           # clients that contributed zeros (small groups)
    late_dropped: tuple[int, ...]
    session: SecAggResult | None      # kept only when auditing (it holds the transcript)


def secure_sum(vectors: Mapping[int, np.ndarray], max_value: int, ledger: Ledger, round: int,
               rng: np.random.Generator, late_dropout: Collection[int] = (),
               phase: str | None = None, covers: Collection[int] = (),
               keep_session: bool = False, network: StarNetwork | None = None) -> SecureSum:
    """One SecAgg+ session over ``vectors`` across ``network``; its traffic goes to ``ledger``
    with the secagg phases, or all tagged ``phase`` (e.g. ``proxy``). Raises SecAggError on
    failure."""
    late = [k for k in late_dropout if k in vectors]
    res = secure_aggregate(vectors, max_value, ledger, round, rng, late_dropout=late,
                           keep_payloads=keep_session, network=network, phase=phase)
    contributors = tuple(k for k in res.survivors if k not in set(covers))
    return SecureSum(res.sum, contributors, tuple(covers), res.late_dropped,
                     res if keep_session else None)


def add_noise(total: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The aggregator's central noise, once per aggregate: y = Σ + N_Z(0, σ² I), the discrete
    Gaussian of every protocol (exact sampler, seeded ``rng``; int64 out)."""
    return gaussian_mechanism(total, sigma, rng)


__all__ = ["FlaimRoundError", "SamplingError", "SecAggError", "SecureSum", "add_noise",
           "broadcast_model", "choose_covers", "collect_choices", "decode_choice", "deserialise_model",
           "encode_choice", "poisson_sample", "secure_sum", "send_choice", "serialise_model"]
