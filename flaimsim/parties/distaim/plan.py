"""DistAIM's public arithmetic: what the driver and the compute servers must agree on, without
MPyC.

The servers compute on secrets; everything here is a function of public values only (the
public record bound N, f, ε, Δ, σ, the public model marginals and the candidates' layout), so
the driver (engines, cost model, protocol) computes it in the clear and the servers' secure
steps (``secure_scoring``, ``secure_l2``, ``secure_em``, ``secure_noise``, ``server_commands``)
import the same definitions:

- widths: the counts' SecInt bit length l = bitlen(N) + f + 4 (L1, :func:`l1_count_bits`) or
  B + 2 with B = 2(bitlen(N) + f) + 4 (L2, :func:`l2_square_bits`); the scores' SecFxp width
  L = max(bitlen(score bound), 8) + 24 (:func:`em_score_bits`) and the argmax's integer width
  (:func:`argmax_bits`), which keys the cost table;
- the comparisons priced by the public value: round_f(c), :func:`comparison_plan` (h, t0 per
  cell; its multiplications and vectorised steps are what the score step costs) and
  :func:`priced_cells` (round_f(c) > 0: the cells that need bits);
- the lazy decomposition's bookkeeping (:class:`DecomposedCells`, chunks, anchor cells);
- the score bound, the EM's public scale ε/(2Δ) = m·2^−e (:func:`em_scale`), the noise
  shares' law N_Z(0, σ²/(m − t)) and its variance;
- the stated fixed-point error bounds (η, τ) and the Gumbel cap B that the privacy ledger
  charges.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

from flaimsim.mechanisms.discrete_gaussian import (UniformSource, discrete_gaussian_variance,
                                                   sample_discrete_gaussian)
from flaimsim.mechanisms.scores import score_offset

# ---------------------------------------------------------------- constants

# Extra bits of the count type beyond bitlen(N) + f: segment sums of |x − c| reach
# Σx + Σc ≈ 2N (more if the model total overshoots N); 4 bits allow Σ_r c up to ~7·2^l
# (checked before the conversion to fixed point, the only step that needs it).
SUM_HEADROOM_BITS = 4
# Cells per bit decomposition call in the decompose step: the transients of one chunk stay in
# the hundreds of megabytes per server at full Adult size (2.87 M cells). Each chunk adds a
# fixed number of messages, which the cost model charges (feature "chunks").
DECOMPOSE_CHUNK_CELLS = 1 << 17

EM_FRAC_BITS = 20            # F of the scores' SecFxp type (``secure_em.em_fxp_type``)
# η: the stated bound on |computed − ideal| of s_r + G_r at F = 20 (see ``secure_em``), and its
# noise part, which the tests assert; the other two parts are the truncations' bounds.
NOISE_ETA = 6e-5
STATED_ETA = 1e-4
assert NOISE_ETA + 2 * 2.0 ** -20 + 2 * 2.0 ** -16 <= STATED_ETA
GEOMETRIC_BITS = 40          # B: cap of the geometric parts K and J of the Gumbel noise
SCALE_MANTISSA_BITS = 16
COMPARISON_DROP_BITS = 4     # the argmax compares s + Z on the grid 2^−(F−4)
STATED_TAU = 1e-3   # |computed − exact| of ‖X_r − C_r‖₂·2^−f (``secure_l2``), asserted by the tests


class SecureScoringError(ValueError):
    """Bad input to the secure scoring functions (shapes, ranges, types)."""


class SecureMechanismError(ValueError):
    """Bad input to the secure mechanisms (types, parameters)."""


class SecureNoiseError(ValueError):
    """Bad input to the secure Gaussian measurement."""


# ---------------------------------------------------------------- widths

def l1_count_bits(max_count: int, frac_bits: int = 0) -> int:
    """l = bitlen(N) + f + 4: the counts' SecInt width under the L1 score."""
    return int(max_count).bit_length() + frac_bits + SUM_HEADROOM_BITS


def l2_square_bits(max_count: int, frac_bits: int = 0) -> int:
    """B: every Q_r < 2^B (Q_r ≤ (Σ X + Σ C)² ≤ (2^(l+f) + 2^(l+f+1))² < 2^(2(l+f)+4))."""
    return 2 * (int(max_count).bit_length() + frac_bits) + 4


def count_bits_for(max_count: int, frac_bits: int = 0, score: str = "l1") -> int:
    """SecInt bit length holding counts up to N: ``secure_scoring.count_secint``'s rule (L1),
    ``secure_l2.l2_count_secint``'s (L2: squares must not wrap)."""
    if score == "l2":
        return l2_square_bits(max_count, frac_bits) + 2
    return l1_count_bits(max_count, frac_bits)


def em_score_bits(score_bound: float, frac_bits: int = EM_FRAC_BITS) -> int:
    """L of the scores' SecFxp(L, F): max(bitlen(score_bound), 8) + 24, room for u·(16-bit
    scale mantissa), for L1 values converted from the count type with up to 8 fractional bits,
    and for |G| < 32."""
    if not score_bound > 0 or frac_bits < 8:
        raise SecureMechanismError(f"need score_bound > 0 and frac_bits >= 8, got {score_bound}, {frac_bits}")
    return max(int(math.ceil(score_bound)).bit_length(), 8) + 24


def em_scale(epsilon: float, sensitivity: float) -> tuple[int, int, float]:
    """(m, e, ε_eff): ε/(2Δ) rounded down to m·2^−e, 2^15 ≤ m < 2^16; ε_eff = 2Δ m 2^−e ≤ ε."""
    if not (epsilon > 0 and sensitivity > 0 and math.isfinite(epsilon) and math.isfinite(sensitivity)):
        raise SecureMechanismError(
            f"need finite epsilon > 0 and sensitivity > 0, got {epsilon}, {sensitivity}")
    scale = epsilon / (2.0 * sensitivity)
    e = SCALE_MANTISSA_BITS - 1 - math.floor(math.log2(scale))
    m = math.floor(scale * 2.0 ** e)
    while m >= 1 << SCALE_MANTISSA_BITS:   # guard float edge cases of log2
        e -= 1
        m = math.floor(scale * 2.0 ** e)
    return m, e, 2.0 * sensitivity * m * 2.0 ** -e


def argmax_bits(score_bits: int, frac_bits: int, epsilon: float, sensitivity: float) -> int:
    """Width l of the argmax's integers s_r + Z_r in units 2^−(F−4): |s| < 2^(L−24)·ε_eff/(2Δ)
    for scores of SecFxp(L, F), |Z| < 32 (G > −ln((B+1) ln2), G, E ≤ (B + 2) ln2 + 1);
    one bit for the sign and one for differences of two values. A key of the cost table."""
    scale = em_scale(epsilon, sensitivity)[2] / (2 * sensitivity)
    bound = 2.0 ** (score_bits - 24) * scale
    return int(math.ceil(bound + 32)).bit_length() + frac_bits - COMPARISON_DROP_BITS + 2


def select_bits(score_bound: float, epsilon: float, sensitivity: float = 1.0) -> int:
    """The secure argmax's width for scores bounded by ``score_bound`` at (ε, Δ)."""
    return argmax_bits(em_score_bits(score_bound), EM_FRAC_BITS, epsilon, sensitivity)


def score_bound(max_weight: float, max_count: int, model_total: float, sigma: float,
                max_cells: int) -> float:
    """Public bound on |u_r| = w_r |L1_r − sqrt(2/π) σ n_r| for ``em_fxp_type``."""
    return float(max_weight * (max_count + model_total + score_offset(sigma, max_cells)))


# ---------------------------------------------------------------- comparisons priced by c

def round_public_marginal(public_c: np.ndarray, frac_bits: int) -> np.ndarray:
    """round(c·2^f) as int64; the value the secure L1 actually compares with (error ≤ 2^−(f+1))."""
    c = _checked_public_marginal(public_c)
    scaled = c * 2.0 ** frac_bits
    return np.rint(scaled, out=scaled).astype(np.int64)


def _checked_public_marginal(public_c: np.ndarray) -> np.ndarray:
    c = np.asarray(public_c, dtype=float)
    # min ≥ 0 fails on a NaN or a negative cell, a finite max on +inf: two passes, no masks
    if c.ndim != 1 or (c.size and not (np.minimum.reduce(c) >= 0
                                       and math.isfinite(np.maximum.reduce(c)))):
        raise SecureScoringError("public marginal must be a 1-D array of finite non-negative floats")
    return c


@dataclass(frozen=True)
class PricedMarginal:
    """round(c·2^f) where it is positive (the priced cells, :func:`priced_cells`), of n cells;
    0 elsewhere."""

    n: int
    cells: np.ndarray    # int64 positions, sorted
    values: np.ndarray   # int64 round(c·2^f) > 0 at those positions

    @staticmethod
    def of(c_int: np.ndarray) -> "PricedMarginal":
        c_int = np.asarray(c_int, dtype=np.int64)
        cells = priced_cells(c_int)
        return PricedMarginal(int(c_int.shape[0]), cells, c_int[cells])


def price_public_marginal(public_c: np.ndarray, frac_bits: int) -> PricedMarginal:
    """``PricedMarginal.of(round_public_marginal(public_c, frac_bits))`` without the full
    int64 array: round(c·2^f) > 0 exactly when c > 2^−(f+1) (c·2^f is exact, and rint takes
    0.5 to 0), so only the priced cells are scaled and rounded (~6 % of Adult's 2.87 M)."""
    c = _checked_public_marginal(public_c)
    cells = np.flatnonzero(c > 2.0 ** -(frac_bits + 1))
    values = np.rint(c[cells] * 2.0 ** frac_bits).astype(np.int64)
    return PricedMarginal(int(c.shape[0]), cells, values)


@dataclass(frozen=True)
class ComparisonPlan:
    """Public shape of [X < c] for X = x·2^f with l secret bits: per cell, h = bitlen(c) − 1 and
    t0 = the lowest set bit of c (cells with 0 < c < 2^(l+f) are ``inside``). h and t0 are
    held for the inside cells only (~6 % of Adult's 2.87 M cells): full-length arrays cost a
    page fault per page each round."""

    above: np.ndarray       # bool (n,)
    inside: np.ndarray      # int64 cell indices
    h_inside: np.ndarray    # int64, h of each inside cell
    t0_inside: np.ndarray   # int64, t0 of each inside cell
    frac_bits: int

    @functools.cached_property
    def h(self) -> np.ndarray:
        """h per cell (int64 (n,), valid on ``inside``)."""
        return self._full(self.h_inside)

    @functools.cached_property
    def t0(self) -> np.ndarray:
        """t0 per cell (int64 (n,), valid on ``inside``)."""
        return self._full(self.t0_inside)

    def _full(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.above.shape[0], dtype=np.int64)
        out[self.inside] = values
        return out

    @property
    def mults(self) -> int:
        """Secret multiplications per round: Σ_inside max(0, h − max(t0, f))."""
        return int(np.maximum(self.h_inside - np.maximum(self.t0_inside, self.frac_bits),
                              0).sum())

    @property
    def steps(self) -> int:
        """Bit positions j ≥ f at which some cell multiplies (one vectorised message each)."""
        lo, hi = np.maximum(self.t0_inside, self.frac_bits), self.h_inside
        size = int(hi.max()) + 1 if hi.size else 1
        lo, hi = lo[lo < hi], hi[lo < hi]
        # position j is used iff some cell has lo <= j < hi: +1 at lo, -1 at hi, running sum
        opened = np.cumsum(np.bincount(lo, minlength=size) - np.bincount(hi, minlength=size))
        return int(np.count_nonzero(opened[:size] > 0))


def comparison_plan(c_int: np.ndarray | None, count_bits: int, frac_bits: int,
                    priced: PricedMarginal | None = None) -> ComparisonPlan:
    """The public plan of ``secure_scoring.less_than_pieces`` (also what the cost model charges).
    ``priced``: ``PricedMarginal.of(c_int)``, if the caller has it (then ``c_int`` may be
    None); only those cells are looked at (the others have h = t0 = 0 and are not ``inside``)."""
    if priced is None:
        priced = PricedMarginal.of(c_int)
    positive, c_pos = priced.cells, priced.values
    over = c_pos >= (1 << (count_bits + frac_bits))
    above = np.zeros(priced.n, dtype=bool)
    above[positive[over]] = True
    inside, c_in = positive[~over], c_pos[~over]
    return ComparisonPlan(above, inside, bit_lengths(c_in) - 1, bit_lengths(c_in & -c_in) - 1,
                          int(frac_bits))


def bit_lengths(values: np.ndarray) -> np.ndarray:
    """bitlen(v) of positive int64 values, exactly (frexp's exponent of float(v), corrected
    where the conversion to float rounded v up to a power of two)."""
    values = np.asarray(values, dtype=np.int64)
    bits = np.frexp(values.astype(float))[1].astype(np.int64)
    bits -= (values >> np.minimum(bits - 1, 63)) == 0
    return bits


def segment_bounds(positions: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
    """For sorted ``positions`` in a concatenation of segments of ``lengths``: index b with
    positions[b[r]:b[r+1]] the positions inside segment r (len(lengths) + 1 entries)."""
    ends = np.cumsum(np.asarray(lengths, dtype=np.int64))
    return np.searchsorted(positions, np.concatenate([[0], ends]))


def priced_cells(c_int: np.ndarray) -> np.ndarray:
    """Cells whose comparison [X < c] is not publicly false: round_f(c) > 0. Only these need
    bits (lazy decomposition); which they are depends on the public model only."""
    return np.flatnonzero(np.asarray(c_int) > 0)


def l2_distances(x: np.ndarray, public_c: np.ndarray, lengths: Sequence[int],
                 frac_bits: int) -> np.ndarray:
    """Plain ‖x_r·2^f − round(c_r·2^f)‖₂·2^−f per segment: what ``secure_l2`` computes."""
    d = (np.asarray(x, dtype=np.int64) * (1 << frac_bits)
         - round_public_marginal(public_c, frac_bits)).astype(float)
    ends = np.cumsum(lengths)
    return np.sqrt(np.add.reduceat(d * d, ends - np.asarray(lengths))) / float(1 << frac_bits)


# ---------------------------------------------------------------- lazy decomposition

def chunk_count(cells: int, chunk: int = DECOMPOSE_CHUNK_CELLS) -> int:
    """Number of chunks of at most ``chunk`` cells that cover ``cells`` (0 for none)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return -(-int(cells) // int(chunk))


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
        cells = np.asarray(cells, dtype=np.int64)
        if cells.size > 1 and not np.all(cells[1:] > cells[:-1]):  # else sorted and unique
            cells = np.unique(cells)
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
    lengths = np.asarray(lengths, dtype=np.int64)
    if not lengths.size:
        return np.zeros(0, dtype=np.int64)
    # cell i of the concatenation is offset_r + (i − start_r) for its candidate r
    starts = np.cumsum(lengths) - lengths
    shift = np.asarray(offsets, dtype=np.int64) - starts
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(shift, lengths)


def scored_priced_cells(offsets: Sequence[int], lengths: Sequence[int], public_c: np.ndarray,
                        frac_bits: int, c_int: np.ndarray | None = None,
                        cells: np.ndarray | None = None) -> np.ndarray:
    """The aggregate's cells that a score step prices (round_f(c) > 0): those needing bits.
    ``c_int``: round_public_marginal(public_c, frac_bits), ``cells``: kept_cells(offsets,
    lengths), if the caller has them already."""
    if c_int is None:
        c_int = round_public_marginal(np.asarray(public_c, dtype=float), frac_bits)
    if cells is None:
        cells = kept_cells(offsets, lengths)
    return cells[priced_cells(c_int)]


# ---------------------------------------------------------------- noise shares

def _check_noise(sigma: float, parties: int, threshold: int) -> None:
    if not sigma > 0 or parties < 1 or not 0 <= threshold < parties:
        raise SecureNoiseError(
            f"need sigma > 0 and 0 <= t < m, got sigma={sigma}, m={parties}, t={threshold}")


def share_scale2(sigma: float, parties: int, threshold: int) -> Fraction:
    """Each share's s² = σ²/(m − t), exactly (σ² as the float's rational value)."""
    _check_noise(sigma, parties, threshold)
    return Fraction(sigma ** 2) / (parties - threshold)


def share_std(sigma: float, parties: int, threshold: int) -> float:
    """Per-server scale σ/sqrt(m − t): any m − t honest shares sum to parameter σ²."""
    return float(np.sqrt(float(share_scale2(sigma, parties, threshold))))


def added_variance(sigma: float, parties: int, threshold: int) -> float:
    """m·Var N_Z(0, σ²/(m − t)): the variance of Σ_i Z_i over all m shares (≤ mσ²/(m − t))."""
    return parties * discrete_gaussian_variance(share_scale2(sigma, parties, threshold))


def noise_shares(sigma: float, parties: int, threshold: int, n: int,
                 source: "np.random.Generator | UniformSource") -> np.ndarray:
    """(parties, n) int64 shares N_Z(0, σ²/(m − t)) (the ideal engine draws all m at once)."""
    return sample_discrete_gaussian(share_scale2(sigma, parties, threshold), (parties, n), source)
