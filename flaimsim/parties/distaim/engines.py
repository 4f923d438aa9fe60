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

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from flaimsim.mechanisms.dp import exponential_mechanism, report_noisy_max
from flaimsim.mechanisms.scores import Score, aim_score_from_l1, score_from_distance
from flaimsim.parties.distaim.options import DistAimOptions, Selection
from flaimsim.parties.distaim.plan import (DECOMPOSE_CHUNK_CELLS, DecomposedCells, added_variance,
                                          anchor_cells, chunk_count, comparison_plan,
                                          em_scale, kept_cells, l2_distances,
                                          noise_shares, PricedMarginal,
                                          price_public_marginal, round_public_marginal,
                                          segment_bounds, select_bits)
from flaimsim.parties.ledger import Ledger, client, server
from flaimsim.parties.mpc.input_sharing import share_inputs
from flaimsim.parties.mpc.launcher import NOT_PRIVATE_NOTE, LauncherConfigError
from flaimsim.parties.mpc.openings import Rule
from flaimsim.parties.mpc.sharing_modes import Sharing
from flaimsim.parties.mpc.warm_start import connect_servers
from flaimsim.parties.transport import ClientTransport
from flaimsim.parties import profile

AGGREGATE = "x"
COMPACT_PIECES = "x-pieces"   # each server's local sum of compact pieces mod 2^b
PHASE_OF_STEP = {"share": "share-inputs", "decompose": "score", "score": "score",
                 "unwrap": "score", "sum-squares": "score", "score-l2": "score",
                 "select": "select", "select-rnm": "select", "measure": "measure"}
# A decomposition call costs about 2l sequential rounds whatever its size; once this few cells
# are left undecomposed, a call takes them all (at most ~11 MB per server on a 16-bit bound)
# rather than leave them to later calls (a small domain: one call, not one per round).
EAGER_DECOMPOSE_CELLS = 1 << 14


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


def decompose_step(round: int, cells: int, phase: str,
                   chunk: int = DECOMPOSE_CHUNK_CELLS) -> Step:
    """The step of one decomposition call of ``cells`` new cells, charged to ``phase``."""
    return Step(round, "decompose", cells=int(cells), chunks=chunk_count(cells, chunk),
                phase="" if phase == PHASE_OF_STEP["decompose"] else phase)


def charge_step(ledger: Ledger, cost: Any, step: Step, sharing: Sharing) -> None:
    """Charge one step's traffic from the cost model (rows marked ``modelled``); the step is
    one operation of the run's profile (no seconds: nothing ran)."""
    start = len(ledger.rows)
    _charge_rows(ledger, cost, step, sharing)
    rows = ledger.rows[start:]
    profile.record(step.round, step.phase or PHASE_OF_STEP[step.op], f"{step.op} (modelled)",
                   sum(r.bytes for r in rows), sum(r.messages for r in rows),
                   sum(r.comm_rounds for r in rows), None)


def _charge_rows(ledger: Ledger, cost: Any, step: Step, sharing: Sharing) -> None:
    phase = step.phase or PHASE_OF_STEP[step.op]
    if step.op == "share":   # the uploads go at once: one round (on the first row)
        rounds = 1
        for k in step.clients:
            for i, nbytes in enumerate(cost.upload_bytes_per_server(sharing, step.cells)):
                ledger.add(step.round, phase, client(k), server(i), nbytes, 1, "modelled",
                           rounds)
                rounds = 0
        if Sharing(sharing).converts_to_shamir:
            cost.charge(ledger, step.round, phase, "to_shamir", cells=step.cells)
        return
    cost.charge(ledger, step.round, phase, step.op, cells=step.cells, k=step.k,
                mults=step.mults, steps=step.steps, dots=step.dots, chunks=step.chunks)


def replay(steps: Sequence[Step], cost: Any, sharing: Sharing) -> Ledger:
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
               frac_bits: int, c_int: np.ndarray | None = None,
               priced: PricedMarginal | None = None) -> Step:
    """The score step's size, with the public plan of its comparisons (what it costs).
    ``c_int``: round_public_marginal(public_c, frac_bits), or ``priced``: its priced cells
    (:func:`~flaimsim.parties.distaim.plan.price_public_marginal`), if the caller has them."""
    if priced is None:
        if c_int is None:
            c_int = round_public_marginal(np.asarray(public_c, dtype=float), frac_bits)
        priced = PricedMarginal.of(c_int)
    plan = comparison_plan(None, int(max_count).bit_length(), frac_bits, priced)
    # dots: the candidates (segments) with at least one priced comparison
    bounds = segment_bounds(plan.inside, lengths)
    dots = int(np.count_nonzero(bounds[1:] > bounds[:-1]))
    return Step(round, "score", cells=int(np.sum(lengths)), k=len(lengths), mults=plan.mults,
                steps=plan.steps, dots=dots)


# What DistAIM's server commands (``server_commands``) may open, checked from outside after a
# real run (``openings.verify_servers``): the secure exponential mechanism one index per call,
# the noisy measurement one noisy marginal per call; ``open`` is the built-in explicit
# opening. Nothing else may open.
DISTAIM_RULES = {"distaim_select": Rule(count=1, max_elements=1),
                 "distaim_measure": Rule(count=1),
                 "open": Rule(count=1)}


def launcher_options(command_timeout: float, sec_param: int | None = None,
                     network: Any = None, ports: Any = None) -> dict[str, Any]:
    """How :class:`MpcEngine` starts its servers (also what ``warm_start`` must match);
    ``sec_param``: MPyC's statistical security parameter (None: MPyC's default);
    ``network``: the emulated links (:mod:`flaimsim.parties.netem`), if any; ``ports``:
    (MPyC ports, control ports) from ``--base-port``, or None."""
    opts: dict[str, Any] = {"command_timeout": float(command_timeout),
                            "load": ["flaimsim.parties.distaim.server_commands"]}
    if ports is not None:
        opts["ports"] = tuple(tuple(p) for p in ports)
    if sec_param is not None:
        opts["sec_param"] = int(sec_param)
    if network is not None:
        opts["network"] = network
    return opts


class EngineBase:
    """What both engines share: the options, the steps run so far, and the lazy
    decomposition's bookkeeping (each cell decomposed once per contributor set, charged to
    the phase that first needs it; ``decompose_bytes`` counts the score phase's)."""

    def __init__(self, ledger: Ledger, options: DistAimOptions) -> None:
        self.ledger, self.options = ledger, options
        self.steps: list[Step] = []
        self.decompose_chunk = DECOMPOSE_CHUNK_CELLS   # the calibration varies it
        self.decomposed = DecomposedCells.of(0)
        self.decomposed_cells = 0     # cells decomposed in the run, over all sets and phases
        self.decompose_bytes = 0      # bytes sent by the servers' decompositions (phase score)

    def _bytes_since(self, start: int) -> int:
        return sum(r.bytes for r in self.ledger.rows[start:])

    def _decompose_cells(self, round: int, cells: np.ndarray, phase: str) -> None:
        """Bits of those of ``cells`` not decomposed yet (a step of its own, so that its bytes
        stay apart)."""
        new = self.decomposed.claim(cells, EAGER_DECOMPOSE_CELLS)
        if not new.size:
            return
        start = len(self.ledger.rows)
        self._run_decompose(decompose_step(round, new.size, phase, self.decompose_chunk), new)
        self.decomposed_cells += int(new.size)
        if phase == "score":
            self.decompose_bytes += self._bytes_since(start)

    def _decompose_l2(self, round: int, lengths: Sequence[int], cells: int) -> None:
        """L2's once-per-set steps, reported as the decomposition's bytes: the unwrap of a
        compact sum (its ``cells`` bits), then Σx² per candidate of ``lengths``."""
        start = len(self.ledger.rows)
        if self.options.sharing is Sharing.COMPACT:
            self.unwrap(round)
            self.decomposed_cells += cells
        self.sum_squares(round, lengths)
        self.decompose_bytes += self._bytes_since(start)

    def _run_decompose(self, step: Step, new: np.ndarray) -> None:
        raise NotImplementedError

    def unwrap(self, round: int) -> None:
        raise NotImplementedError

    def sum_squares(self, round: int, lengths: Sequence[int]) -> None:
        raise NotImplementedError

    def prepare_measure(self, round: int, cells: np.ndarray) -> None:
        """Decompose, in one call, the cells of the marginals about to be measured (compact
        shares, L1: x exists only where decomposed); :meth:`measure` would do it per call."""
        if self.options.measures_need_bits:
            self._decompose_cells(round, cells, "measure")

    def _before_measure(self, round: int, offset: int, length: int) -> None:
        if self.options.measures_need_bits:
            self._decompose_cells(round, np.arange(offset, offset + length), "measure")

    def _score_l1_step(self, round: int, offsets: Sequence[int], lengths: Sequence[int],
                       public_c: np.ndarray, cells: np.ndarray | None = None,
                       priced: PricedMarginal | None = None) -> Step:
        """The bits of the newly priced cells, then the score step's size (``cells``: the kept
        cells, ``priced``: the public marginal's priced cells, if the caller has them)."""
        o = self.options
        if priced is None:
            priced = price_public_marginal(public_c, o.frac_bits)
        if cells is None:
            cells = kept_cells(offsets, lengths)
        self._decompose_cells(round, cells[priced.cells], "score")
        return score_step(round, lengths, public_c, o.max_count, o.frac_bits, priced=priced)


class MpcEngine(EngineBase):
    """m MPyC server processes on loopback running DistAIM's commands; traffic measured."""

    def __init__(self, ledger: Ledger, options: DistAimOptions = DistAimOptions(),
                 command_timeout: float = 600.0,
                 servers_at: Sequence[tuple[str, int]] | None = None,
                 network: Any = None, connect_timeout: float = 60.0,
                 ports: Any = None) -> None:
        super().__init__(ledger, options)
        self.bits = options.count_bits
        self.candidate_of: dict[int, int] = {}
        # servers_at: servers already running on their hosts (`flaimsim serve`), reached
        # within connect_timeout
        self.launcher = connect_servers(options.m, servers_at,
                                        **launcher_options(command_timeout, options.sec_param,
                                                          network, ports),
                                        **({"start_timeout": connect_timeout}
                                           if servers_at else {}))
        want = 30 if options.sec_param is None else options.sec_param   # MPyC's default: 30
        ran = {int(i.get("sec_param", 30)) for i in self.launcher.info}
        if ran != {want}:
            self.launcher.close()
            raise LauncherConfigError(f"the compute servers run with MPyC security parameter "
                                      f"{sorted(ran)}, this run needs kappa = {want}: start "
                                      f"them with `flaimsim serve --mpc-security {want}` or "
                                      f"pass --mpc-security {sorted(ran)[0]}")
        self.transport = ClientTransport(self.launcher.client_addresses, network=network)
        self.privacy_note = self.launcher.privacy_note
        self._parts = 0
        self.element_bytes = self.launcher.field_spec_for(self.bits).element_bytes

    def share(self, round: int, clients: Sequence[int], answers: Callable[[int], np.ndarray],
              union: Callable[[Sequence[int]], np.ndarray] | None = None) -> None:
        """Clients ``clients`` upload shares of ``answers(k)``; servers add them to x."""
        sharing = self.options.sharing
        vectors = {k: answers(k) for k in clients}
        name = f"part{self._parts}"
        self._parts += 1
        d = len(next(iter(vectors.values())))
        self.steps.append(Step(round, "share", cells=d, clients=tuple(sorted(vectors))))
        self.cells = d
        if sharing is Sharing.COMPACT:
            # New pieces join the local accumulator mod 2^b; the whole sum is converted and
            # left wrapped for the bit decomposition that follows (decompose unwraps it).
            share_inputs(self.launcher, self.transport, vectors, AGGREGATE, sharing,
                         round=round, phase="share-inputs", ledger=self.ledger,
                         bit_length=self.bits, compact_bits=self.options.compact_bits,
                         accumulate=COMPACT_PIECES, reduce=False)
            return
        share_inputs(self.launcher, self.transport, vectors, name, sharing, round=round,
                     phase="share-inputs", ledger=self.ledger, bit_length=self.bits)
        names = [name] if self._parts == 1 else [AGGREGATE, name]
        self.launcher.call("aggregate", names=names, out=AGGREGATE)
        self.launcher.call("drop", names=[name])

    def decompose(self, round: int, lengths: Sequence[int] = ()) -> None:
        """Once per contributor set. L1: a fresh lazy decomposition (compact: the bits of the
        smallest candidate of ``lengths``, whose unwrapped sum is the secret N_set; without
        ``lengths``, every cell). L2: the unwrap (compact) and Σx² per candidate of ``lengths``
        (all answered candidates, in order)."""
        compact = self.options.sharing is Sharing.COMPACT
        if self.options.score is Score.L2:
            self._decompose_l2(round, lengths, self.cells)
            return
        self.decomposed = DecomposedCells.of(self.cells)
        anchor = anchor_cells(lengths, self.cells) if compact else np.zeros(0, dtype=np.int64)
        new = self.decomposed.claim(anchor, EAGER_DECOMPOSE_CELLS)
        if new.size:
            self.steps.append(decompose_step(round, new.size, "score", self.decompose_chunk))
            self.decomposed_cells += int(new.size)
        start = len(self.ledger.rows)
        with self.launcher.measure(self.ledger, round, "score", "bit decomposition"):
            out = self.launcher.call("distaim_prepare", name=AGGREGATE,
                                     max_count=self.options.max_count,
                                     frac_bits=self.options.frac_bits, chunk=self.decompose_chunk,
                                     anchor=[int(anchor[0]), int(anchor[-1]) + 1]
                                     if anchor.size else None, cells=new)
        self.decompose_bytes += self._bytes_since(start)
        self._check_decomposed(out, new)

    def _check_decomposed(self, out: list[dict[str, Any]], new: np.ndarray) -> None:
        got = {int(o["decomposed"]) for o in out}
        if got != {int(new.size)}:
            raise RuntimeError(f"servers decomposed {sorted(got)} cells, the engine expected "
                               f"{int(new.size)}")

    def _run_decompose(self, step: Step, new: np.ndarray) -> None:
        self.steps.append(step)
        with self.launcher.measure(self.ledger, step.round, step.phase or "score",
                                   "bit decomposition"):
            out = self.launcher.call("distaim_decompose", name=AGGREGATE, cells=new)
        self._check_decomposed(out, new)

    def unwrap(self, round: int) -> None:
        """L2 with compact shares: reduce the wrapped sum to x (phase score)."""
        self.steps.append(Step(round, "unwrap", cells=self.cells))
        with self.launcher.measure(self.ledger, round, "score", "unwrap"):
            self.launcher.call("distaim_unwrap", name=AGGREGATE, max_count=self.options.max_count)

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
        o = self.options
        if o.score is Score.L2:
            self.steps.append(Step(round, "score-l2", cells=int(np.sum(lengths)), k=len(lengths)))
            with self.launcher.measure(self.ledger, round, "score", "L2 scores"):
                self.launcher.call("distaim_score_l2", offsets=[int(o) for o in offsets],
                                   lengths=[int(n) for n in lengths],
                                   candidates=[self.candidate_of[int(o)] for o in offsets],
                                   public_c=np.asarray(public_c, dtype=float),
                                   sigma=float(sigma), weights=[float(w) for w in weights],
                                   score_bound=float(score_bound), max_count=o.max_count,
                                   frac_bits=o.frac_bits)
            return
        self.steps.append(self._score_l1_step(round, offsets, lengths, public_c))
        with self.launcher.measure(self.ledger, round, "score"):
            self.launcher.call("distaim_score", offsets=[int(o) for o in offsets],
                               lengths=[int(n) for n in lengths],
                               public_c=np.asarray(public_c, dtype=float), sigma=float(sigma),
                               weights=[float(w) for w in weights],
                               score_bound=float(score_bound))

    def select(self, round: int, epsilon: float, sensitivity: float) -> tuple[int, float]:
        em = self.options.em
        self.steps.append(Step(round, em.cost_op, k=self._k))
        with self.launcher.measure(self.ledger, round, "select"):
            out = self.launcher.call("distaim_select", epsilon=float(epsilon),
                                     sensitivity=float(sensitivity), label=f"round {round}",
                                     mechanism=em.value)
        indices = {o["index"] for o in out}
        if len(indices) != 1:
            raise RuntimeError(f"servers opened different indices {indices}")
        return out[0]["index"], float(out[0]["epsilon_effective"])

    def measure(self, round: int, offset: int, length: int, sigma: float
                ) -> tuple[np.ndarray, float]:
        self._before_measure(round, offset, length)
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


PLAIN_SELECTION = {Selection.GUMBEL: exponential_mechanism, Selection.RNM: report_noisy_max}


class IdealEngine(EngineBase):
    """The ideal functionality of :class:`MpcEngine`, in the clear, with modelled traffic."""

    def __init__(self, ledger: Ledger, cost: Any, rng: np.random.Generator,
                 options: DistAimOptions = DistAimOptions()) -> None:
        super().__init__(ledger, options)
        self.cost = cost   # CostTable
        self.rng = rng
        self.aggregate: np.ndarray | None = None
        self._scores: np.ndarray | None = None
        self._reveals: list[dict[str, Any]] = []
        self._kept_last: tuple | None = None  # (aggregate, candidates, kept cells, Σ X·2^f)

    @property
    def privacy_note(self) -> str:
        return "" if self.options.threshold >= 1 else NOT_PRIVATE_NOTE

    def share(self, round: int, clients: Sequence[int], answers: Callable[[int], np.ndarray],
              union: Callable[[Sequence[int]], np.ndarray]) -> None:
        """x += Σ_k answers(k), computed as ``union(clients)`` (the same vector, without
        materialising every client's copy); uploads charged per client."""
        total = np.asarray(union(clients), dtype=np.int64)
        self.aggregate = total if self.aggregate is None else self.aggregate + total
        self._charge(Step(round, "share", cells=int(total.size), clients=tuple(sorted(clients))))

    def _charge(self, step: Step) -> None:
        self.steps.append(step)
        charge_step(self.ledger, self.cost, step, self.options.sharing)

    def _run_decompose(self, step: Step, new: np.ndarray) -> None:
        self._charge(step)

    def unwrap(self, round: int) -> None:
        self._charge(Step(round, "unwrap", cells=len(self.aggregate)))

    def sum_squares(self, round: int, lengths: Sequence[int]) -> None:
        self._charge(Step(round, "sum-squares", k=len(lengths)))

    def decompose(self, round: int, lengths: Sequence[int] = ()) -> None:
        if self.options.score is Score.L2:
            self._decompose_l2(round, lengths, len(self.aggregate))
            return
        self.decomposed = DecomposedCells.of(len(self.aggregate))
        if self.options.sharing is Sharing.COMPACT:
            self._decompose_cells(round, anchor_cells(lengths, len(self.aggregate)), "score")

    def score(self, round, offsets, lengths, public_c, sigma, weights, score_bound) -> None:
        f = self.options.frac_bits
        cells, scaled_sums = self._kept(offsets, lengths)
        if self.options.score is Score.L2:
            dist = l2_distances(self.aggregate[cells], public_c, lengths, f)
            self._scores = score_from_distance(Score.L2, dist, sigma, np.asarray(lengths, float),
                                               np.asarray(weights, float))
            self._charge(Step(round, "score-l2", cells=int(cells.size), k=len(lengths)))
            return
        priced = price_public_marginal(public_c, f)
        step = self._score_l1_step(round, offsets, lengths, public_c, cells, priced)
        # Σ_r |X·2^f − c| = Σ_r X·2^f + Σ_{priced} (|X·2^f − c| − X·2^f), as c = 0 elsewhere:
        # integers, so the same sums in any order, and only the priced cells (~6 % on Adult)
        # are visited each round
        scaled = self.aggregate[cells[priced.cells]] * (1 << f)
        change = np.abs(scaled - priced.values)
        change -= scaled
        running = np.concatenate([[0], np.cumsum(change)])
        bounds = segment_bounds(priced.cells, lengths)
        l1 = (scaled_sums + running[bounds[1:]] - running[bounds[:-1]]) / float(1 << f)
        self._scores = aim_score_from_l1(l1, sigma, np.asarray(lengths, float),
                                         np.asarray(weights, float))
        self._charge(step)

    def _kept(self, offsets: Sequence[int], lengths: Sequence[int]
              ) -> tuple[np.ndarray, np.ndarray]:
        """(kept_cells, Σ_r X·2^f per candidate) for this candidate set and aggregate; kept
        from the last call while both are unchanged (the candidates shrink only when the size
        filter drops some)."""
        key = (tuple(int(o) for o in offsets), tuple(int(n) for n in lengths))
        last = self._kept_last
        if last is None or last[0] is not self.aggregate or last[1] != key:
            cells = kept_cells(offsets, lengths)
            sums = np.zeros(len(lengths), dtype=np.int64)
            if cells.size:
                starts = np.cumsum(lengths) - np.asarray(lengths)
                sums = np.add.reduceat(self.aggregate[cells] * (1 << self.options.frac_bits),
                                       starts)
            self._kept_last = last = (self.aggregate, key, cells, sums)
        return last[2], last[3]

    def select(self, round: int, epsilon: float, sensitivity: float) -> tuple[int, float]:
        bits = select_bits(self.cost.score_bound, epsilon, sensitivity)
        if bits != self.cost.select_bits:
            raise ValueError(
                f"the cost table prices the secure argmax on {self.cost.select_bits}-bit "
                f"integers; round {round} (ε_t = {epsilon:.3g}, Δ = {sensitivity:.3g}) needs {bits}")
        eps_eff = em_scale(epsilon, sensitivity)[2]
        index = PLAIN_SELECTION[self.options.em](self._scores, eps_eff, sensitivity, self.rng)
        self._charge(Step(round, self.options.em.cost_op, k=len(self._scores)))
        self._reveals.append({"seq": len(self._reveals), "name": "selected-index",
                              "label": f"round {round}", "shape": []})
        self._scores = None
        return index, eps_eff

    def measure(self, round: int, offset: int, length: int, sigma: float
                ) -> tuple[np.ndarray, float]:
        self._before_measure(round, offset, length)
        m, t = self.options.m, self.options.threshold
        noise = noise_shares(sigma, m, t, length, self.rng)
        values = self.aggregate[offset:offset + length] + noise.sum(axis=0)
        self._charge(Step(round, "measure", cells=length))
        self._reveals.append({"seq": len(self._reveals), "name": "noisy-marginal",
                              "label": f"round {round}", "shape": [int(length)]})
        return values, added_variance(sigma, m, t)

    def reveal_log(self) -> list[dict[str, Any]]:
        return list(self._reveals)

    def close(self) -> None:
        pass
