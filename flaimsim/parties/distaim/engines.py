"""DistAIM's compute servers as an engine the protocol drives: real MPC or its ideal
functionality with traffic from the cost model.

Both engines keep the same state (the secret aggregate x of the contributing clients' W+
answers, concatenated in candidate order) and expose the same steps; each step is one ledger
phase:

=============  ============================================  =========================
step           real (:class:`MpcEngine`)                     ideal (:class:`IdealEngine`)
=============  ============================================  =========================
share          clients → servers shares, servers sum         plain sum; client rows by
               (``share-inputs``; compact/additive: conv.)    the framing formula
decompose      L1: starts the set's lazy decomposition        nothing; cost-model rows
               (compact: bits of the smallest candidate,
               whose sum is N_set); L2: unwrap + Σx² per
               candidate (score)
score          bits of the newly priced cells (L1), then      plain scores, same rounding
               secret scores of kept candidates (score)
select         secure EM or RNM, opens the index (select)    plain EM/RNM, same ε_eff
measure        (compact L1: bits of its new cells, which      x_r + Σ_i Z_i, same law
               unwrap them) noise input by every server,
               opens x_r + noise (measure)
=============  ============================================  =========================

Lazy decomposition (L1): a cell needs its bits only where a round prices it (round_f(c) > 0,
:func:`secure_scoring.priced_cells`) or where a marginal is measured (a compact sum must be
unwrapped there). Both engines keep a :class:`DecomposedCells` per contributor set and
decompose each cell once, when it is first needed; the servers keep the same record. Which
cells those are depends on the public model and schedule only.

The ideal engine's outputs have the real engine's distribution: scores are taken against the
same rounded public marginal, the EM uses the same effective ε (``em_scale``), and the noise
is the same sum of m discrete Gaussian shares N_Z(0, σ²/(m − t)). Its traffic rows say ``modelled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from flaimsim.mechanisms.dp import exponential_mechanism, report_noisy_max
from flaimsim.mechanisms.scores import aim_score_from_l1, score_from_distance
from flaimsim.parties.ledger import Ledger, client, server
from flaimsim.parties import profile

AGGREGATE = "x"
COMPACT_PIECES = "x-pieces"   # each server's local sum of compact pieces mod 2^b
PHASE_OF_STEP = {"share": "share-inputs", "decompose": "score", "score": "score",
                 "unwrap": "score", "sum-squares": "score", "score-l2": "score",
                 "select": "select", "select-rnm": "select", "measure": "measure"}
SELECT_OP = {"gumbel": "select", "rnm": "select-rnm"}   # --em -> cost-model op
# Cells per bit decomposition call in the decompose step: the transients of one chunk stay in
# the hundreds of megabytes per server at full Adult size (2.87 M cells). Each chunk adds a
# fixed number of messages, which the cost model charges (feature "chunks").
DECOMPOSE_CHUNK_CELLS = 1 << 17
# A decomposition call costs about 2l sequential rounds whatever its size; once this few cells
# are left undecomposed, a call takes them all (at most ~11 MB per server on a 16-bit bound)
# rather than leave them to later calls (a small domain: one call, not one per round).
EAGER_DECOMPOSE_CELLS = 1 << 14


def chunk_count(cells: int, chunk: int = DECOMPOSE_CHUNK_CELLS) -> int:
    """Number of chunks of at most ``chunk`` cells that cover ``cells`` (0 for none)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return -(-int(cells) // int(chunk))


@dataclass(frozen=True)
class Step:
    """One secure step and its sizes: enough to charge it from the cost model."""

    round: int
    op: str
    cells: int = 0
    k: int = 0
    clients: tuple[int, ...] = ()
    mults: int = 0      # score: secret multiplications of the priced comparisons
    steps: int = 0      # score: bit positions with a vectorised multiplication
    dots: int = 0       # score: candidates with a priced cell (one inner product each)
    chunks: int = 0     # decompose: calls of DECOMPOSE_CHUNK_CELLS cells or fewer
    phase: str = ""     # the ledger phase when not PHASE_OF_STEP[op] (decompose for measure)


@dataclass
class DecomposedCells:
    """Which cells of one contributor set's aggregate are bit-decomposed (lazy decomposition);
    mutable: :meth:`claim` marks cells done.

    Kept alike by the servers and by both engines, so that a real run's recorded steps and the
    ideal engine's charges decompose the same cells."""

    done: np.ndarray    # bool (n,)

    @staticmethod
    def of(n: int) -> "DecomposedCells":
        return DecomposedCells(np.zeros(int(n), dtype=bool))

    def claim(self, cells: np.ndarray, eager_below: int = 0) -> np.ndarray:
        """The cells of ``cells`` not decomposed yet (sorted, unique), now marked done; if
        some are new and at most ``eager_below`` cells are left undecomposed, all of those."""
        cells = np.unique(np.asarray(cells, dtype=np.int64))
        if cells.size and (cells[0] < 0 or cells[-1] >= self.done.size):
            raise ValueError(f"cells {int(cells[0])}..{int(cells[-1])} outside the aggregate's "
                             f"{self.done.size} cells (no decompose step for this set yet?)")
        new = cells[~self.done[cells]]
        if new.size and self.done.size - self.count <= eager_below:
            new = np.flatnonzero(~self.done)
        self.done[new] = True
        return new

    @property
    def count(self) -> int:
        return int(self.done.sum())


def anchor_cells(lengths: Sequence[int], n: int) -> np.ndarray:
    """Cells whose unwrapped sum is the contributors' record count N_set (every marginal of
    their data sums to it): the smallest candidate's, or all n cells without a layout."""
    if not len(lengths):
        return np.arange(int(n), dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    i = int(np.argmin(lengths))
    offset = int(lengths[:i].sum())
    return np.arange(offset, offset + int(lengths[i]), dtype=np.int64)


def kept_cells(offsets: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
    """The cells of the candidates at ``offsets`` with ``lengths``, in order."""
    return np.concatenate([np.arange(int(o), int(o) + int(n), dtype=np.int64)
                           for o, n in zip(offsets, lengths)])


def scored_priced_cells(offsets: Sequence[int], lengths: Sequence[int], public_c: np.ndarray,
                        frac_bits: int) -> np.ndarray:
    """The aggregate's cells that a score step prices (round_f(c) > 0): those needing bits."""
    from flaimsim.parties.distaim.secure_scoring import priced_cells, round_public_marginal

    c_int = round_public_marginal(np.asarray(public_c, dtype=float), frac_bits)
    return kept_cells(offsets, lengths)[priced_cells(c_int)]


def decompose_step(round: int, cells: int, phase: str,
                   chunk: int = DECOMPOSE_CHUNK_CELLS) -> Step:
    """The step of one decomposition call of ``cells`` new cells, charged to ``phase``."""
    return Step(round, "decompose", cells=int(cells), chunks=chunk_count(cells, chunk),
                phase="" if phase == PHASE_OF_STEP["decompose"] else phase)


def measures_need_bits(score_kind: str, sharing: str) -> bool:
    """A measured cell must be decomposed first: with compact shares under the L1 score, x
    exists only where the wrap has been taken off (by the cell's decomposition)."""
    return score_kind == "l1" and sharing == "compact"


def charge_step(ledger: Ledger, cost: Any, step: Step, sharing: str) -> None:
    """Charge one step's traffic from the cost model (rows marked ``modelled``); the step is
    one operation of the run's profile (no seconds: nothing ran)."""
    start = len(ledger.rows)
    _charge_rows(ledger, cost, step, sharing)
    rows = ledger.rows[start:]
    profile.record(step.round, step.phase or PHASE_OF_STEP[step.op], f"{step.op} (modelled)",
                   sum(r.bytes for r in rows), sum(r.messages for r in rows),
                   sum(r.comm_rounds for r in rows), None)


def _charge_rows(ledger: Ledger, cost: Any, step: Step, sharing: str) -> None:
    phase = step.phase or PHASE_OF_STEP[step.op]
    if step.op == "share":   # the uploads go at once: one round (on the first row)
        rounds = 1
        for k in step.clients:
            for i, nbytes in enumerate(cost.upload_bytes_per_server(sharing, step.cells)):
                ledger.add(step.round, phase, client(k), server(i), nbytes, 1, "modelled",
                           rounds)
                rounds = 0
        if sharing in ("additive", "compact"):
            cost.charge(ledger, step.round, phase, "to_shamir", cells=step.cells)
        return
    cost.charge(ledger, step.round, phase, step.op, cells=step.cells, k=step.k,
                mults=step.mults, steps=step.steps, dots=step.dots, chunks=step.chunks)


def replay(steps: Sequence[Step], cost: Any, sharing: str) -> Ledger:
    """The modelled ledger of a sequence of steps (e.g. those of a measured run)."""
    ledger = Ledger()
    for step in steps:
        charge_step(ledger, cost, step, sharing)
    return ledger


class SecureEngine(Protocol):
    privacy_note: str

    def share(self, round: int, clients: Sequence[int], answers: Callable[[int], np.ndarray],
              union: Callable[[Sequence[int]], np.ndarray]) -> None: ...
    def decompose(self, round: int, lengths: Sequence[int] = ()) -> None: ...
    def prepare_measure(self, round: int, cells: np.ndarray) -> None: ...
    def score(self, round: int, offsets: Sequence[int], lengths: Sequence[int],
              public_c: np.ndarray, sigma: float, weights: Sequence[float],
              score_bound: float) -> None: ...
    def select(self, round: int, epsilon: float, sensitivity: float) -> tuple[int, float]: ...
    def measure(self, round: int, offset: int, length: int, sigma: float
                ) -> tuple[np.ndarray, float]: ...
    def reveal_log(self) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


def score_step(round: int, lengths: Sequence[int], public_c: np.ndarray, max_count: int,
               frac_bits: int) -> Step:
    """The score step's size, with the public plan of its comparisons (what it costs)."""
    from flaimsim.parties.distaim.secure_scoring import comparison_plan, round_public_marginal

    plan = comparison_plan(round_public_marginal(np.asarray(public_c, dtype=float), frac_bits),
                           int(max_count).bit_length(), frac_bits)
    segment_of = np.repeat(np.arange(len(lengths)), np.asarray(lengths, dtype=np.int64))
    dots = int(np.unique(segment_of[plan.inside]).size)
    return Step(round, "score", cells=int(np.sum(lengths)), k=len(lengths), mults=plan.mults,
                steps=plan.steps, dots=dots)


def count_bits_for(max_count: int, frac_bits: int = 0, score: str = "l1") -> int:
    """SecInt bit length holding counts up to N: ``secure_scoring.count_secint``'s rule (L1),
    ``secure_l2.l2_count_secint``'s (L2: squares must not wrap)."""
    if score == "l2":
        from flaimsim.parties.distaim.secure_l2 import l2_square_bits

        return l2_square_bits(max_count, frac_bits) + 2
    from flaimsim.parties.distaim.secure_scoring import _SUM_HEADROOM_BITS

    return int(max_count).bit_length() + frac_bits + _SUM_HEADROOM_BITS


def l2_distances(x: np.ndarray, public_c: np.ndarray, lengths: Sequence[int],
                 frac_bits: int) -> np.ndarray:
    """Plain ‖x_r·2^f − round(c_r·2^f)‖₂·2^−f per segment: what ``secure_l2`` computes."""
    from flaimsim.parties.distaim.secure_scoring import round_public_marginal

    d = (np.asarray(x, dtype=np.int64) * (1 << frac_bits)
         - round_public_marginal(public_c, frac_bits)).astype(float)
    ends = np.cumsum(lengths)
    return np.sqrt(np.add.reduceat(d * d, ends - np.asarray(lengths))) / float(1 << frac_bits)


def launcher_options(command_timeout: float, network: Any = None) -> dict[str, Any]:
    """How :class:`MpcEngine` starts its servers (also what ``warm_start`` must match);
    ``network``: the emulated links (:mod:`flaimsim.parties.netem`), if any."""
    return {"command_timeout": float(command_timeout),
            "load": ["flaimsim.parties.distaim.server_commands"],
            **({"network": network} if network is not None else {})}


class MpcEngine:
    """m MPyC server processes on loopback running DistAIM's commands; traffic measured."""

    def __init__(self, ledger: Ledger, m: int = 3, max_count: int = 1,
                 sharing: str = "compact", frac_bits: int = 0, em: str = "gumbel",
                 score: str = "l1", command_timeout: float = 600.0,
                 servers_at: Sequence[tuple[str, int]] | None = None,
                 network: Any = None) -> None:
        from flaimsim.parties.mpc.launcher import connect_servers
        from flaimsim.parties.transport import ClientTransport

        self.ledger, self.m, self.max_count = ledger, m, int(max_count)
        self.sharing, self.frac_bits, self.em, self.score_kind = sharing, frac_bits, em, score
        self.bits = count_bits_for(max_count, frac_bits, score)
        self.candidate_of: dict[int, int] = {}
        # servers_at: servers already running on their hosts (`flaimsim serve`)
        self.launcher = connect_servers(m, servers_at,
                                        **launcher_options(command_timeout, network))
        self.transport = ClientTransport(self.launcher.client_addresses, network=network)
        self.privacy_note = self.launcher.privacy_note
        self._parts = 0
        self.steps: list[Step] = []
        self.element_bytes = self.launcher.field_spec_for(self.bits).element_bytes
        self.compact_bits = int(max_count).bit_length()
        self.decompose_chunk = DECOMPOSE_CHUNK_CELLS   # the calibration varies it
        self.decomposed = DecomposedCells.of(0)
        self.decomposed_cells = 0     # cells decomposed in the run, over all sets and phases
        self.decompose_bytes = 0      # bytes sent by the servers' decompositions (phase score)

    def share(self, round: int, clients: Sequence[int], answers: Callable[[int], np.ndarray],
              union: Callable[[Sequence[int]], np.ndarray] | None = None) -> None:
        """Clients ``clients`` upload shares of ``answers(k)``; servers add them to x."""
        from flaimsim.parties.mpc.input_sharing import share_inputs

        vectors = {k: answers(k) for k in clients}
        name = f"part{self._parts}"
        self._parts += 1
        d = len(next(iter(vectors.values())))
        self.steps.append(Step(round, "share", cells=d, clients=tuple(sorted(vectors))))
        self.cells = d
        if self.sharing == "compact":
            # New pieces join the local accumulator mod 2^b; the whole sum is converted and
            # left wrapped for the bit decomposition that follows (decompose unwraps it).
            share_inputs(self.launcher, self.transport, vectors, AGGREGATE, "compact",
                         round=round, phase="share-inputs", ledger=self.ledger,
                         bit_length=self.bits, compact_bits=self.compact_bits,
                         accumulate=COMPACT_PIECES, reduce=False)
            return
        share_inputs(self.launcher, self.transport, vectors, name, self.sharing, round=round,
                     phase="share-inputs", ledger=self.ledger, bit_length=self.bits)
        names = [name] if self._parts == 1 else [AGGREGATE, name]
        self.launcher.call("aggregate", names=names, out=AGGREGATE)
        self.launcher.call("drop", names=[name])

    def decompose(self, round: int, lengths: Sequence[int] = ()) -> None:
        """Once per contributor set. L1: a fresh lazy decomposition (compact: the bits of the
        smallest candidate of ``lengths``, whose unwrapped sum is the secret N_set; without
        ``lengths``, every cell). L2: the unwrap (compact) and Σx² per candidate of ``lengths``
        (all answered candidates, in order)."""
        if self.score_kind == "l2":   # once-per-set bytes, reported as the decomposition's
            start = len(self.ledger.rows)
            if self.sharing == "compact":
                self.unwrap(round)
                self.decomposed_cells += self.cells
            self.sum_squares(round, lengths)
            self.decompose_bytes += sum(r.bytes for r in self.ledger.rows[start:])
            return
        self.decomposed = DecomposedCells.of(self.cells)
        anchor = (anchor_cells(lengths, self.cells) if self.sharing == "compact"
                  else np.zeros(0, dtype=np.int64))
        new = self.decomposed.claim(anchor, EAGER_DECOMPOSE_CELLS)
        self._record_decompose(round, new, "score")
        start = len(self.ledger.rows)
        with self.launcher.measure(self.ledger, round, "score", "bit decomposition"):
            out = self.launcher.call("distaim_prepare", name=AGGREGATE, max_count=self.max_count,
                                     frac_bits=self.frac_bits, chunk=self.decompose_chunk,
                                     anchor=[int(anchor[0]), int(anchor[-1]) + 1]
                                     if anchor.size else None, cells=new)
        self.decompose_bytes += sum(r.bytes for r in self.ledger.rows[start:])
        self._check_decomposed(out, new)

    def _record_decompose(self, round: int, new: np.ndarray, phase: str) -> None:
        if new.size:
            self.steps.append(decompose_step(round, new.size, phase, self.decompose_chunk))
            self.decomposed_cells += int(new.size)

    def _check_decomposed(self, out: list[dict[str, Any]], new: np.ndarray) -> None:
        got = {int(o["decomposed"]) for o in out}
        if got != {int(new.size)}:
            raise RuntimeError(f"servers decomposed {sorted(got)} cells, the engine expected "
                               f"{int(new.size)}")

    def _decompose_cells(self, round: int, cells: np.ndarray, phase: str) -> None:
        """Bits of those of ``cells`` not decomposed yet (its own command: its bytes apart)."""
        new = self.decomposed.claim(cells, EAGER_DECOMPOSE_CELLS)
        if not new.size:
            return
        self._record_decompose(round, new, phase)
        start = len(self.ledger.rows)
        with self.launcher.measure(self.ledger, round, phase, "bit decomposition"):
            out = self.launcher.call("distaim_decompose", name=AGGREGATE, cells=new)
        if phase == "score":
            self.decompose_bytes += sum(r.bytes for r in self.ledger.rows[start:])
        self._check_decomposed(out, new)

    def unwrap(self, round: int) -> None:
        """L2 with compact shares: reduce the wrapped sum to x (phase score)."""
        self.steps.append(Step(round, "unwrap", cells=self.cells))
        with self.launcher.measure(self.ledger, round, "score", "unwrap"):
            self.launcher.call("distaim_unwrap", name=AGGREGATE, max_count=self.max_count)

    def sum_squares(self, round: int, lengths: Sequence[int]) -> None:
        """L2: Σx² per candidate of ``lengths`` (the layout of x, in order; phase score)."""
        offsets = np.r_[0, np.cumsum(lengths)[:-1]]
        self.candidate_of = {int(o): i for i, o in enumerate(offsets)}
        self.steps.append(Step(round, "sum-squares", k=len(lengths)))
        with self.launcher.measure(self.ledger, round, "score", "sum of squares"):
            self.launcher.call("distaim_sum_squares", name=AGGREGATE,
                               lengths=[int(n) for n in lengths])

    def score(self, round, offsets, lengths, public_c, sigma, weights, score_bound) -> None:
        self._k = len(lengths)
        if self.score_kind == "l2":
            self.steps.append(Step(round, "score-l2", cells=int(np.sum(lengths)), k=len(lengths)))
            with self.launcher.measure(self.ledger, round, "score", "L2 scores"):
                self.launcher.call("distaim_score_l2", offsets=[int(o) for o in offsets],
                                   lengths=[int(n) for n in lengths],
                                   candidates=[self.candidate_of[int(o)] for o in offsets],
                                   public_c=np.asarray(public_c, dtype=float),
                                   sigma=float(sigma), weights=[float(w) for w in weights],
                                   score_bound=float(score_bound), max_count=self.max_count,
                                   frac_bits=self.frac_bits)
            return
        self._decompose_cells(round, scored_priced_cells(offsets, lengths, public_c,
                                                         self.frac_bits), "score")
        self.steps.append(score_step(round, lengths, public_c, self.max_count, self.frac_bits))
        with self.launcher.measure(self.ledger, round, "score"):
            self.launcher.call("distaim_score", offsets=[int(o) for o in offsets],
                               lengths=[int(n) for n in lengths],
                               public_c=np.asarray(public_c, dtype=float), sigma=float(sigma),
                               weights=[float(w) for w in weights],
                               score_bound=float(score_bound))

    def select(self, round: int, epsilon: float, sensitivity: float) -> tuple[int, float]:
        self.steps.append(Step(round, SELECT_OP[self.em], k=self._k))
        with self.launcher.measure(self.ledger, round, "select"):
            out = self.launcher.call("distaim_select", epsilon=float(epsilon),
                                     sensitivity=float(sensitivity), label=f"round {round}",
                                     mechanism=self.em)
        indices = {o["index"] for o in out}
        if len(indices) != 1:
            raise RuntimeError(f"servers opened different indices {indices}")
        return out[0]["index"], float(out[0]["epsilon_effective"])

    def prepare_measure(self, round: int, cells: np.ndarray) -> None:
        """Decompose, in one call, the cells of the marginals about to be measured (compact
        shares, L1: x exists only where decomposed); :meth:`measure` would do it per call."""
        if measures_need_bits(self.score_kind, self.sharing):
            self._decompose_cells(round, cells, "measure")

    def measure(self, round: int, offset: int, length: int, sigma: float
                ) -> tuple[np.ndarray, float]:
        if measures_need_bits(self.score_kind, self.sharing):
            self._decompose_cells(round, np.arange(offset, offset + length), "measure")
        self.steps.append(Step(round, "measure", cells=int(length)))
        with self.launcher.measure(self.ledger, round, "measure"):
            out = self.launcher.call("distaim_measure", name=AGGREGATE, offset=int(offset),
                                     length=int(length), sigma=float(sigma),
                                     label=f"round {round}")
        return np.asarray(out[0]["values"], dtype=np.int64), float(out[0]["variance"])

    def reveal_log(self) -> list[dict[str, Any]]:
        return self.launcher.reveal_log()

    def close(self) -> None:
        try:
            self.transport.close()
        finally:
            self.launcher.close()


@dataclass
class IdealEngine:
    """The ideal functionality of :class:`MpcEngine`, in the clear, with modelled traffic."""

    ledger: Ledger
    cost: Any  # CostTable
    rng: np.random.Generator
    m: int = 3
    sharing: str = "compact"
    max_count: int = 1
    frac_bits: int = 0
    em: str = "gumbel"
    score_kind: str = "l1"
    aggregate: np.ndarray | None = None
    _scores: np.ndarray | None = None
    steps: list[Step] = field(default_factory=list)
    decomposed: DecomposedCells = field(default_factory=lambda: DecomposedCells.of(0))
    decomposed_cells: int = 0
    decompose_bytes: int = 0
    _reveals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def threshold(self) -> int:
        return (self.m - 1) // 2

    @property
    def privacy_note(self) -> str:
        from flaimsim.parties.mpc.launcher import NOT_PRIVATE_NOTE

        return "" if self.threshold >= 1 else NOT_PRIVATE_NOTE

    def share(self, round: int, clients: Sequence[int], answers: Callable[[int], np.ndarray],
              union: Callable[[Sequence[int]], np.ndarray]) -> None:
        """x += Σ_k answers(k), computed as ``union(clients)`` (the same vector, without
        materialising every client's copy); uploads charged per client."""
        total = np.asarray(union(clients), dtype=np.int64)
        self.aggregate = total if self.aggregate is None else self.aggregate + total
        self._charge(Step(round, "share", cells=int(total.size), clients=tuple(sorted(clients))))

    def _charge(self, step: Step) -> None:
        self.steps.append(step)
        charge_step(self.ledger, self.cost, step, self.sharing)

    def decompose(self, round: int, lengths: Sequence[int] = ()) -> None:
        if self.score_kind == "l2":   # once-per-set bytes, reported as the decomposition's
            start = len(self.ledger.rows)
            if self.sharing == "compact":
                self._charge(Step(round, "unwrap", cells=len(self.aggregate)))
                self.decomposed_cells += len(self.aggregate)
            self._charge(Step(round, "sum-squares", k=len(lengths)))
            self.decompose_bytes += sum(r.bytes for r in self.ledger.rows[start:])
            return
        self.decomposed = DecomposedCells.of(len(self.aggregate))
        if self.sharing == "compact":
            self._decompose_cells(round, anchor_cells(lengths, len(self.aggregate)), "score")

    def _decompose_cells(self, round: int, cells: np.ndarray, phase: str) -> None:
        """Charge the bits of the cells not decomposed yet (as :class:`MpcEngine` runs them)."""
        new = self.decomposed.claim(cells, EAGER_DECOMPOSE_CELLS)
        if not new.size:
            return
        start = len(self.ledger.rows)
        self._charge(decompose_step(round, new.size, phase))
        self.decomposed_cells += int(new.size)
        if phase == "score":
            self.decompose_bytes += sum(r.bytes for r in self.ledger.rows[start:])

    def score(self, round, offsets, lengths, public_c, sigma, weights, score_bound) -> None:
        from flaimsim.parties.distaim.secure_scoring import round_public_marginal

        f = self.frac_bits
        c = round_public_marginal(np.asarray(public_c, dtype=float), f)
        cells = kept_cells(offsets, lengths)
        if self.score_kind == "l2":
            dist = l2_distances(self.aggregate[cells], public_c, lengths, f)
            self._scores = score_from_distance("l2", dist, sigma, np.asarray(lengths, float),
                                               np.asarray(weights, float))
            self._charge(Step(round, "score-l2", cells=int(cells.size), k=len(lengths)))
            return
        self._decompose_cells(round, scored_priced_cells(offsets, lengths, public_c, f), "score")
        diffs = np.abs(self.aggregate[cells] * (1 << f) - c)
        ends = np.cumsum(lengths)
        l1 = np.add.reduceat(diffs, ends - np.asarray(lengths)) / float(1 << f)
        self._scores = aim_score_from_l1(l1.astype(float), sigma, np.asarray(lengths, float),
                                         np.asarray(weights, float))
        self._charge(score_step(round, lengths, public_c, self.max_count, f))

    def select(self, round: int, epsilon: float, sensitivity: float) -> tuple[int, float]:
        from flaimsim.parties.distaim.secure_em import comparison_bits, em_fxp_type, em_scale

        bits = comparison_bits(em_fxp_type(self.cost.score_bound), epsilon, sensitivity)
        if bits != self.cost.select_bits:
            raise ValueError(
                f"the cost table prices the secure argmax on {self.cost.select_bits}-bit "
                f"integers; round {round} (ε_t = {epsilon:.3g}, Δ = {sensitivity:.3g}) needs {bits}")
        eps_eff = em_scale(epsilon, sensitivity)[2]
        mechanism = {"gumbel": exponential_mechanism, "rnm": report_noisy_max}[self.em]
        index = mechanism(self._scores, eps_eff, sensitivity, self.rng)
        self._charge(Step(round, SELECT_OP[self.em], k=len(self._scores)))
        self._reveals.append({"seq": len(self._reveals), "name": "selected-index",
                              "label": f"round {round}", "shape": []})
        self._scores = None
        return index, eps_eff

    def prepare_measure(self, round: int, cells: np.ndarray) -> None:
        if measures_need_bits(self.score_kind, self.sharing):
            self._decompose_cells(round, cells, "measure")

    def measure(self, round: int, offset: int, length: int, sigma: float
                ) -> tuple[np.ndarray, float]:
        from flaimsim.parties.distaim.secure_noise import added_variance, noise_shares

        if measures_need_bits(self.score_kind, self.sharing):
            self._decompose_cells(round, np.arange(offset, offset + length), "measure")
        noise = noise_shares(sigma, self.m, self.threshold, length, self.rng)
        values = self.aggregate[offset:offset + length] + noise.sum(axis=0)
        self._charge(Step(round, "measure", cells=length))
        self._reveals.append({"seq": len(self._reveals), "name": "noisy-marginal",
                              "label": f"round {round}", "shape": [int(length)]})
        return values, added_variance(sigma, self.m, self.threshold)

    def reveal_log(self) -> list[dict[str, Any]]:
        return list(self._reveals)

    def close(self) -> None:
        pass
