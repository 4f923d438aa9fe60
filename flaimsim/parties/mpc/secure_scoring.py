"""Secure L1 scoring of candidate marginals (DistAIM's select step, the dominant MPC cost).

The servers hold secret counts x (one concatenated vector over all candidate marginals, each
value in 0..N) as a secure integer array; the model's marginals c (scaled by the model's public
total) are public. For each candidate r (a segment of the vector) we compute

    L1_r = Σ_{i∈r} |x_i·2^f − round(c_i·2^f)| · 2^−f

secretly, then u_r = aim_score_from_l1(L1_r, σ, n_r, w_r) (the shared plain formula).

Method ("bits once, then comparisons with public constants", MPC-NOTES):
- once per contributor set: bits b_{i,j} of x_i (l = bit length of N) by ``mpc.np_to_bits``;
- per round, with c_i's bits γ_j (x·2^f has f known zero low bits):
  e_j = [bit_j(x·2^f) = γ_j] is linear; P_L = 1, P_j = P_{j+1}·e_j (one multiplication per
  secret bit, vectorised over all cells); [x < c] = Σ_j γ_j (P_{j+1} − P_j);
  Σ_r |x − c| = Σ_r (x − c) − 2 Σ_r (x − c)[x < c]: an inner product per segment (one reshare
  per candidate, not per cell). Cost: l − 1 multiplications per cell and round (the f low
  bits are public zeros: their products are local).

Rounding: c is rounded publicly to the grid 2^−f, so the computed L1 is exact for round_f(c):
the per-cell error versus the real c is at most 2^−(f+1) (0.5 for f = 0). This rounding is of a
public, post-processed value and is the same for neighbouring data sets, so it does not enter
the sensitivity: ‖x − round_f(c)‖₁ still changes by at most 1 when one record is added/removed.

Measured (3 parties on loopback, bytes sent per party, fixed-width encoding, N = 45,222 so
l = 16, SecInt20): 272 B per cell and round (15 multiplications × 2 peers × 8 B + headers),
plus 1,180 B per cell once per contributor set for the bits; the SecFxp(32) baseline costs
1,689 B per cell and round (``python -m flaimsim.bench.secure_bench``).

Types: counts are ``count_secint(N, f)`` (a SecInt whose field holds all intermediate sums);
per-segment L1 and scores are returned in a SecFxp type chosen by the caller
(``flaimsim.parties.secure_em.em_fxp_type``), converted once per candidate (k values, cheap).
All functions return MPyC secure arrays (placeholders) and never open anything: call them from
inside an MPyC coroutine or open with ``await mpc.output(...)`` / ``mpc.run(mpc.output(...))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from mpyc.runtime import mpc

from flaimsim.mechanisms.scores import aim_score_from_l1, score_offset

# Extra bits of the count type beyond bitlen(N) + f: segment sums of |x − c| reach
# Σx + Σc ≈ 2N (more if the model total overshoots N); 4 bits allow Σ_r c up to ~7·2^l
# (checked before the conversion to fixed point, the only step that needs it).
_SUM_HEADROOM_BITS = 4


class SecureScoringError(ValueError):
    """Bad input to the secure scoring functions (shapes, ranges, types)."""


@dataclass(frozen=True)
class SecretBits:
    """Secret counts with their bits, computed once per contributor set.

    counts: secure integer array (n,), values in 0..2^count_bits − 1.
    bits: secure integer array (n, count_bits), least significant bit first.
    frac_bits: f, the public marginal is compared on the grid 2^−f (x is scaled by 2^f).
    """

    counts: Any
    bits: Any
    count_bits: int
    frac_bits: int

    @property
    def n_cells(self) -> int:
        return int(self.counts.shape[0])

    def take(self, cells: np.ndarray) -> "SecretBits":
        """The same secrets restricted to public cell indices (local; e.g. kept candidates)."""
        idx = np.asarray(cells, dtype=np.int64)
        return SecretBits(counts=self.counts[idx], bits=self.bits[idx],
                          count_bits=self.count_bits, frac_bits=self.frac_bits)


def score_bound(max_weight: float, max_count: int, model_total: float, sigma: float,
                max_cells: int) -> float:
    """Public bound on |u_r| = w_r |L1_r − sqrt(2/π) σ n_r| for ``em_fxp_type``."""
    return float(max_weight * (max_count + model_total + score_offset(sigma, max_cells)))


def count_secint(max_count: int, frac_bits: int = 0) -> type:
    """SecInt type for counts in 0..max_count compared on the grid 2^−frac_bits.

    Bit length bitlen(N) + f + 4: segment sums of |x·2^f − c·2^f| fit with room to spare.
    With N ≤ 2^20 and f ≤ 8 this is a 64-bit field (8 bytes per element on the wire).
    """
    if max_count < 1 or frac_bits < 0:
        raise SecureScoringError(f"need max_count >= 1 and frac_bits >= 0, got {max_count}, {frac_bits}")
    return mpc.SecInt(int(max_count).bit_length() + frac_bits + _SUM_HEADROOM_BITS)


def decompose_counts(counts: Any, max_count: int, frac_bits: int = 0) -> SecretBits:
    """Bit-decompose secret counts once (l = bitlen(max_count) bits per cell).

    Cost: one ``np_to_bits`` per cell (~1.2 KB per cell per party at l = 16, 3 parties).
    Redo it whenever the contributor set (hence x) changes.
    """
    stype = getattr(counts, "sectype", None)
    if stype is None or getattr(stype, "frac_length", 0) != 0 or counts.ndim != 1:
        raise SecureScoringError("counts must be a 1-D secure integer array (SecInt.array)")
    count_bits = int(max_count).bit_length()
    if stype.bit_length < count_bits + frac_bits + 2:
        raise SecureScoringError(
            f"{stype.__name__} too short for counts up to {max_count} with {frac_bits} "
            f"fractional bits; use count_secint({max_count}, {frac_bits})")
    bits = mpc.np_to_bits(counts, l=count_bits)
    return SecretBits(counts=counts, bits=bits, count_bits=count_bits, frac_bits=frac_bits)


def round_public_marginal(public_c: np.ndarray, frac_bits: int) -> np.ndarray:
    """round(c·2^f) as int64; the value the secure L1 actually compares with (error ≤ 2^−(f+1))."""
    c = np.asarray(public_c, dtype=float)
    if c.ndim != 1 or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise SecureScoringError("public marginal must be a 1-D array of finite non-negative floats")
    return np.rint(c * 2.0 ** frac_bits).astype(np.int64)


def _segment_sums(values: Any, segments: Sequence[int]) -> Any:
    """Per-segment sums of a secure 1-D array (local: cumulative sum, then differences)."""
    lengths = np.asarray(segments, dtype=np.int64)
    if lengths.ndim != 1 or len(lengths) == 0 or np.any(lengths < 1):
        raise SecureScoringError("segments must be a non-empty list of positive lengths")
    if int(lengths.sum()) != values.shape[0]:
        raise SecureScoringError(
            f"segment lengths sum to {int(lengths.sum())} but there are {values.shape[0]} cells")
    ends = np.cumsum(lengths) - 1
    cum = np.cumsum(values)[ends]
    if len(lengths) == 1:
        return cum
    return cum - mpc.np_concatenate((type(cum)(np.array([0])), cum[:-1]))


def _secure_less_than(bits: SecretBits, c_int: np.ndarray) -> Any:
    """Secret [x_i·2^f < c_i] per cell by the prefix-product method (l multiplications)."""
    f, l = bits.frac_bits, bits.count_bits
    if c_int.shape[0] != bits.n_cells:
        raise SecureScoringError(f"public marginal has {c_int.shape[0]} cells, counts {bits.n_cells}")
    top = 1 << (l + f)
    above = (c_int >= top).astype(np.int64)
    c_bits = (np.minimum(c_int, top - 1)[:, None] >> np.arange(l + f)) & 1   # (n, l+f)
    x_bits = bits.bits.T                                                     # (l, n)
    prefix: Any = None      # P_{j+1}; None stands for the public all-ones vector
    lt: Any = None          # Σ γ_j (P_{j+1} − P_j), accumulated from the top bit down
    for j in reversed(range(l + f)):
        gamma = c_bits[:, j]
        if j >= f:          # e_j = x_j if γ_j = 1 else 1 − x_j (linear)
            e = x_bits[j - f] * (2 * gamma - 1) + (1 - gamma)
        else:               # bit j of x·2^f is a public 0: e_j = 1 − γ_j
            e = 1 - gamma
        p_next = e if prefix is None else prefix * e
        term = (1 - e) * gamma if prefix is None else (prefix - p_next) * gamma
        lt = term if lt is None else lt + term
        prefix = p_next
    return lt * (1 - above) + above   # model above every possible count: x < c publicly


def secure_abs_diff_bits(bits: SecretBits, public_c: np.ndarray) -> Any:
    """Secret |x_i·2^f − round(c_i·2^f)| per cell (SecInt array, units 2^−f).

    l + 1 secret multiplications per cell (vectorised, depth l); the f low bits are public
    zeros. Cells where round(c·2^f) ≥ 2^(l+f) get [x < c] = 1 publicly.
    """
    c_int = round_public_marginal(public_c, bits.frac_bits)
    lt = _secure_less_than(bits, c_int)
    diff = bits.counts * (1 << bits.frac_bits) - c_int
    return diff * (1 - 2 * lt)


def _segment_dots(a: Any, b: Any, segments: Sequence[int]) -> Any:
    """Per-segment inner products Σ_{i∈r} a_i b_i: one reshare per segment, not per cell."""
    ends = np.cumsum(np.asarray(segments, dtype=np.int64))
    starts = ends - np.asarray(segments, dtype=np.int64)
    dots = [a[s:e] @ b[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
    return mpc.np_fromlist(dots)


def _check_sum_range(bits: SecretBits, c_int: np.ndarray, segments: Sequence[int]) -> None:
    """Conversion to SecFxp needs L1_r < 2^(L−1) (L: count type bits); public check.

    Uses Σ_{i∈r} x_i ≤ 2^l (a marginal sums to the contributors' count ≤ N), so
    L1_r ≤ (2^l + Σ_r round(c)) · 2^f.
    """
    if c_int.shape[0] != bits.n_cells or int(np.sum(segments)) != bits.n_cells:
        return   # reported with a clearer message by the callee
    ends = np.cumsum(np.asarray(segments, dtype=np.int64))
    seg_c = np.diff(np.r_[0, np.cumsum(c_int, dtype=np.int64)[ends - 1]])
    worst = ((1 << bits.count_bits) << bits.frac_bits) + int(seg_c.max())
    limit = 1 << (type(bits.counts).sectype.bit_length - 1)
    if worst >= limit:
        raise SecureScoringError(
            f"model marginal too large for the count type: a segment's L1 may reach {worst} "
            f"(units 2^-{bits.frac_bits}) >= {limit}; check the model total")


def l1_to_fxp(l1_scaled: Any, frac_bits: int, fxp: type) -> Any:
    """Convert per-segment L1 (SecInt, units 2^−f) to ``fxp`` reals (one conversion per value)."""
    converted = mpc.np_fromlist(mpc.convert(mpc.np_tolist(l1_scaled), fxp))
    return converted * 2.0 ** -frac_bits if frac_bits else converted


def secure_l1_bits(bits: SecretBits, public_c: np.ndarray, segments: Sequence[int],
                   fxp: type | None = None) -> Any:
    """Secret per-segment L1 ‖x_r − round_f(c_r)‖₁.

    Returns a SecInt array in units 2^−f if ``fxp`` is None, else an ``fxp`` (SecFxp) array of
    reals. ``segments`` are the candidates' cell counts n_r, in the order of the cells.
    """
    c_int = round_public_marginal(public_c, bits.frac_bits)
    if fxp is not None:
        _check_sum_range(bits, c_int, segments)
    lt = _secure_less_than(bits, c_int)
    diff = bits.counts * (1 << bits.frac_bits) - c_int
    # Σ|d| = Σ d − 2 Σ d·[x < c]: the last product folds into one inner product per segment.
    l1_scaled = _segment_sums(diff, segments) - 2 * _segment_dots(diff, lt, segments)
    return l1_scaled if fxp is None else l1_to_fxp(l1_scaled, bits.frac_bits, fxp)


def secure_scores_bits(bits: SecretBits, public_c: np.ndarray, segments: Sequence[int],
                       sigma: float, weights: Sequence[int], fxp: type) -> Any:
    """Secret AIM scores u_r = w_r (L1_r − sqrt(2/π) σ n_r) as an ``fxp`` array (k,).

    Integer weights keep the multiplication local (no truncation).
    """
    w = np.asarray(weights)
    if w.shape != (len(segments),):
        raise SecureScoringError(f"{w.shape[0] if w.ndim else 1} weights for {len(segments)} segments")
    if np.all(w == np.rint(w)):
        w = w.astype(np.int64)
    l1 = secure_l1_bits(bits, public_c, segments, fxp)
    return aim_score_from_l1(l1, sigma, np.asarray(segments, dtype=float), w)


def secure_l1_naive(x_fxp: Any, public_c: np.ndarray, segments: Sequence[int]) -> Any:
    """Baseline: Σ_r |x − c| with one secure absolute value per cell (SecFxp arrays).

    The comparison here is secret against secret-minus-public at the full bit length of the
    type: ~1.4 KB per cell per party at SecFxp(32) (MPC-NOTES), every round.
    """
    c = np.asarray(public_c, dtype=float)
    if c.shape != x_fxp.shape:
        raise SecureScoringError(f"public marginal shape {c.shape} != counts shape {x_fxp.shape}")
    return _segment_sums(np.absolute(x_fxp - c), segments)
