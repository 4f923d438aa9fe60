"""Secure L2 distances ‖x_r − round_f(c_r)‖₂ for DistAIM's ``--score l2`` (no per-cell comparison).

With X = x·2^f and the public C = round(c·2^f) (units 2^−f):

    Q_r = ‖X_r − C_r‖₂² = 4^f·Σ_{i∈r} x_i² − 2·2^f·Σ_{i∈r} x_i C_i + Σ_{i∈r} C_i²

- Σ x_i² per candidate: one inner product (one reshare) per candidate, once per contributor
  set (:func:`sum_squares`);
- Σ x_i C_i is local (C public); Σ C_i² is public;
- ‖·‖₂ = sqrt(Q_r)·2^−f by :func:`secure_sqrt`, k values per round whatever the cells.

Types: Q_r < 2^B with B = 2(l + f) + 4 (Σx ≤ 2^l, Σ C ≤ 2^(l+f+1) checked by the caller), so the
counts live in ``l2_count_secint`` = SecInt(B + 2): squares and their sums never wrap.

Square root (per candidate): the B bits of Q (``secure_low_bits``), the one-hot of the leading bit
(B multiplications), Q·4^(I−i) = m·4^I with m ∈ [1, 4) (one multiplication; i = ⌊e/2⌋ for the
leading bit e, I = ⌊(B−1)/2⌋), m in SecFxp(B + F + 4, F) with F = max(40, 2I), y ≈ 1/sqrt(m) by a quadratic start and
four Newton steps y ← y(3 − m y²)/2, sqrt(Q) = m·y·2^i, converted to the scores' type.

Fixed point and privacy: every computed distance is within ``STATED_TAU`` of the exact
‖X_r − C_r‖₂·2^−f (the test asserts it on random and extreme inputs). A distance error τ moves
each scaled score ε u_r/(2Δ) by at most ε τ/2 (w_r ≤ Δ), which adds to the secure EM's η; the
protocol runs the mechanism with ε reduced for it (``protocols.distaim.secure_em_epsilon``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from mpyc.runtime import mpc
from numpy.polynomial import chebyshev, polynomial

from flaimsim.parties.mpc.bit_decomposition import secure_low_bits
from flaimsim.parties.distaim.fixed_point import (convert_array, exact_shift_down, fxp_multiply,
                                              fxp_scale)
from flaimsim.parties.distaim.plan import l2_square_bits, round_public_marginal
from flaimsim.parties.distaim.secure_em import _one_hot_first_one
from flaimsim.parties.distaim.secure_scoring import segment_sums

SQRT_FRAC_BITS = 40
NEWTON_STEPS = 4


class SecureL2Error(ValueError):
    """Bad input to the secure L2 distances."""


def l2_count_secint(max_count: int, frac_bits: int = 0) -> type:
    """SecInt(B + 2) for the counts under the L2 score: Q and Q·4^(I−i) fit without wrapping."""
    return mpc.SecInt(l2_square_bits(max_count, frac_bits) + 2)


def sum_squares(counts: Any, segments: Sequence[int]) -> Any:
    """Σ_{i∈r} x_i² per segment: one reshare per segment (once per contributor set)."""
    ends = np.cumsum(np.asarray(segments, dtype=np.int64))
    starts = ends - np.asarray(segments, dtype=np.int64)
    return mpc.np_fromlist([counts[s:e] @ counts[s:e] for s, e in zip(starts.tolist(),
                                                                      ends.tolist())])


def _inverse_sqrt_start() -> np.ndarray:
    cheb = chebyshev.Chebyshev.interpolate(lambda m: 1 / np.sqrt(m), 2, domain=[1, 4])
    return cheb.convert(kind=polynomial.Polynomial, domain=[1, 4], window=[1, 4]).coef


INV_SQRT_START = _inverse_sqrt_start()


def secure_sqrt(q: Any, square_bits: int, fxp: type) -> Any:
    """sqrt(Q) for a secret integer array Q (values in 0..2^B − 1) as an ``fxp`` array."""
    top = square_bits - 1
    half = top // 2
    frac = max(SQRT_FRAC_BITS, 2 * half)     # 4^−I must be exact in the fixed point
    big = mpc.SecFxp(square_bits + frac + 4, frac)
    bits = secure_low_bits(q, square_bits)
    lead = _one_hot_first_one(bits[:, ::-1])          # lead[j]: leading bit at e = top − j
    scale_m = None                                    # Σ [e] 4^(I − ⌊e/2⌋): Q·scale ∈ [4^I, 4^(I+1))
    scale_r = None                                    # Σ [e] 2^⌊e/2⌋
    for j in range(square_bits):                      # lead[B] (Q = 0) contributes 0
        e = top - j
        a, r = lead[j] * (4 ** (half - e // 2)), lead[j] * (2 ** (e // 2))
        scale_m = a if scale_m is None else scale_m + a
        scale_r = r if scale_r is None else scale_r + r
    mq = q * scale_m
    # m = mq·4^−I ∈ [1, 4) (0 when Q = 0): exact, frac ≥ 2I. Products and public factors
    # truncate by PRSS (fixed_point): one opening each, error < 2 units of 2^−frac.
    m = exact_shift_down(convert_array(mq, big), 2 * half)
    c0, c1, c2 = (float(v) for v in INV_SQRT_START)
    y = fxp_scale(fxp_multiply(m, m), c2) + fxp_scale(m, c1) + c0
    for _ in range(NEWTON_STEPS):
        y = fxp_scale(fxp_multiply(y, 3 - fxp_multiply(m, fxp_multiply(y, y))), 0.5)
    root = fxp_multiply(fxp_multiply(m, y), convert_array(scale_r, big))
    return convert_array(root, fxp)


def secure_l2_distances(counts: Any, squares: Any, public_c: np.ndarray,
                        segments: Sequence[int], max_count: int, frac_bits: int,
                        fxp: type) -> Any:
    """‖x_r − round_f(c_r)‖₂ per segment as an ``fxp`` array (k,); ``squares`` = Σ_r x²."""
    c_int = round_public_marginal(public_c, frac_bits)
    lengths = np.asarray(segments, dtype=np.int64)
    if int(lengths.sum()) != counts.shape[0] or squares.shape[0] != len(lengths):
        raise SecureL2Error("segments, counts and sums of squares do not match")
    ends = np.cumsum(lengths)
    seg_c = np.add.reduceat(c_int, ends - lengths)
    if int(seg_c.max()) >= 1 << (int(max_count).bit_length() + frac_bits + 1):
        raise SecureL2Error("model marginal too large for the L2 square type; check the total")
    c_sq = np.add.reduceat(c_int.astype(object) ** 2, ends - lengths)
    cross = segment_sums(counts * c_int, segments)
    q = squares * (4 ** frac_bits) - cross * (2 ** (frac_bits + 1)) + c_sq
    root = secure_sqrt(q, l2_square_bits(max_count, frac_bits), fxp)
    return root * 2.0 ** -frac_bits if frac_bits else root
