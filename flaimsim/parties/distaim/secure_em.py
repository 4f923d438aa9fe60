"""Secure exponential mechanism (Gumbel-max) over secret scores; only the index is opened.

Ideal mechanism: P(r) ∝ exp(ε u_r / (2Δ)). Gumbel-max: r* = argmax_r s_r + G_r with
s_r = ε u_r/(2Δ) and G_r = −ln E_r, E_r ~ Exp(1) i.i.d.; r* has exactly the softmax law.

Exp(1) without decomposing secret data, and with ln E of bounded absolute error everywhere:
- E = K·ln2 + R (memorylessness): K ~ Geom(1/2) = number of leading zeros of fresh random
  bits (capped at B), R = −ln(1 − V/2) ~ Exp(1) truncated to [0, ln2), V ~ U[0, 1).
- V in floating form: V = 2^−(J+1)·(1 + M), J ~ Geom(1/2) from a second set of random bits,
  M ~ U[0, 1) on the grid 2^−F (F fresh random bits).
- K ≥ 1: ln E = ln(K ln2) + ln1p(R/(K ln2)); ln(K ln2) and 1/(K ln2) are public tables
  selected by the one-hot of K (linear), R/(K ln2) ∈ [0, 1).
- K = 0: ln E = ln R = −(J+2) ln2 + ln1p(M) + q(V), q(v) = ln(−ln(1 − v/2)/(v/2)).
- One ln1p serves both branches: its argument (M or R/(K ln2)) is selected by the bit [K = 0]
  before the polynomial (a bit times a secret needs no truncation).
ln1p, R(V), q(V) are degree-6 Chebyshev interpolants on [0, 1] (max error < 2e−6), evaluated
from secret powers with one truncation per polynomial. The noise is computed in the small type
``noise_fxp(F)`` = SecFxp(F + 10, F) and converted to the scores' type (one opening per value).

Fixed point and privacy (state this with every use): scores SecFxp(L, F), default F = 20.
- The public scale ε/(2Δ) is rounded DOWN to 16 significant bits: the mechanism run is exactly
  the EM with ε_eff = 2Δ·scale ≤ ε (returned by :func:`em_scale`); no privacy cost.
- Scores u_r are exact up to the public rounding of the offset (same on neighbours).
- Let η bound |computed (s_r + G_r) − ideal (s_r + G_r)| for the coupled continuous sample.
  Each output probability is then within a factor exp(±2η) of the ideal EM with ε_eff, so the
  mechanism is (ε_eff + 4η)-DP and (ε_eff + 8η)-bounded-range, i.e. (ε_eff + 8η)²/8-zCDP.
  We state η ≤ STATED_ETA = 1e−4 at F = 20, the sum of three parts:
  - the noise (probabilistic truncations of < 2 units 2^−F each, ``fixed_point.prss_trunc``;
    polynomial error < 2e−6; M on the grid): ≤ NOISE_ETA = 6e−5, asserted by the tests on
    random and extreme known randomness, in one party and under 3 (worst seen 5.4e−6);
  - the truncation of s = u·m·2^−e: < 2·2^−20 = 1.9e−6;
  - the argmax compares on the grid 2^−(F−4): its truncation < 2·2^−16 = 3.05e−5.
  Exact ties on that grid go to the lower index; covered by η (computed values within η).
- Capping K, J at B = 40 bits changes the noise law by total variation ≤ 2k·2^−40 over k
  candidates: an extra δ ≤ (1 + e^ε)·2k·2^−40 (≈ 4e−9 for k = 1000), stated, not hidden.
- MPC randomness cannot be seeded: tests are statistical.

Cost (3 parties, bytes sent per party, ``flaimsim bench em``): ~6.4 KB per candidate at
k = 161 (1.03 MB; 0.99 MB in Adult's DistAIM widths), from 20 KB before three changes:
- every truncation (inside SecFxp products too) draws its low mask by PRSS, not from F random
  bits: one opening per value (``fixed_point``);
- the 2B + F random bits and the one-hot prefix products (one product per position) live in
  ``randomness_secint``'s 56-bit field, not the noise type's 82-bit one;
- the argmax compares ``comparison_bits``-bit integers in their own small field.
The Gumbel noise is ~4.2 KB per candidate: 100 random bits (~17 B each) and 80 products.

Option: :func:`secure_report_noisy_max` (Exp noise, = permute-and-flip): ε-DP but zCDP ε²/2.

API: :func:`secure_exponential_mechanism` is ``async`` (``await`` it in a server coroutine;
``mpc.run(...)`` in a script or single-party test); the ``secure_*`` helpers return secure
placeholders and open nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from mpyc.runtime import mpc
from numpy.polynomial import chebyshev, polynomial

from flaimsim.parties.distaim.fixed_point import (convert_array, exact_shift_down, fxp_multiply,
                                              fxp_scale, prss_trunc, reinterpret_as_secint)
from flaimsim.parties.distaim.plan import (COMPARISON_DROP_BITS, EM_FRAC_BITS, GEOMETRIC_BITS,
                                          SecureMechanismError, argmax_bits, em_scale,
                                          em_score_bits)
from flaimsim.parties.profile import section

RANDOMNESS_INT_BITS = 24     # randomness_secint: every selected table value is below 2^22
POLY_DEGREE = 6
LN2 = math.log(2.0)


def _interpolant(fn: Any) -> np.ndarray:
    """Monomial coefficients on [0, 1] of the degree-6 Chebyshev interpolant of fn."""
    cheb = chebyshev.Chebyshev.interpolate(fn, POLY_DEGREE, domain=[0, 1])
    return cheb.convert(kind=polynomial.Polynomial, domain=[0, 1], window=[0, 1]).coef


def _ln_h(v: np.ndarray) -> np.ndarray:
    half = np.maximum(np.asarray(v, dtype=float) / 2, 1e-300)
    return np.log(-np.log1p(-half) / half)


LN1P_COEF = _interpolant(np.log1p)
TRUNC_EXP_COEF = _interpolant(lambda v: -np.log1p(-np.asarray(v) / 2))   # R(V)
LN_H_COEF = _interpolant(_ln_h)                                           # q(V)


def em_fxp_type(score_bound: float, frac_bits: int = EM_FRAC_BITS) -> type:
    """SecFxp(L, F) for scores with |u_r| ≤ score_bound (and L1 values), F = frac_bits, L from
    :func:`~flaimsim.parties.distaim.plan.em_score_bits`."""
    return mpc.SecFxp(em_score_bits(score_bound, frac_bits), frac_bits)


def _scaled_scores(scores: Any, epsilon: float, sensitivity: float) -> Any:
    """s = u·m·2^−e (exact multiplication by m, one probabilistic truncation by e bits)."""
    m, e, _ = em_scale(epsilon, sensitivity)
    v = scores * m
    if e > 0:
        return prss_trunc(v, e)
    return v * (1 << -e)


def _poly(powers: list[Any], coef: np.ndarray, fxp: type) -> Any:
    """Σ coef_i x^i from powers [x, x², ...]: exact integer-weighted sum, one truncation."""
    f = fxp.frac_length
    acc = powers[0] * int(round(coef[1] * 2 ** f))
    for i in range(2, len(coef)):
        acc = acc + powers[i - 1] * int(round(coef[i] * 2 ** f))
    return prss_trunc(acc, f) + float(coef[0])


def _powers(x: Any, degree: int) -> list[Any]:
    """[x, x², ..., x^degree], each x^i = x^⌈i/2⌉·x^⌊i/2⌋ (depth log2 degree)."""
    pw = [x]
    for i in range(2, degree + 1):
        pw.append(fxp_multiply(pw[(i + 1) // 2 - 1], pw[i // 2 - 1]))
    return pw


def _one_hot_first_one(bits: Any) -> list[Any]:
    """[[G = j] for j = 0..B], G = number of leading zeros of rows of bits (n, B), capped at B."""
    n_bits = bits.shape[1]
    cols = bits.T
    one_hot = [cols[0]]
    run = 1 - cols[0]                     # Q_1 = [first bit is 0]
    for j in range(1, n_bits):
        hit = run * cols[j]               # Q_j b_j (bits are integral: no truncation)
        one_hot.append(hit)
        run = run - hit                   # Q_{j+1} = Q_j (1 − b_j), no second product
    one_hot.append(run)                   # all B bits zero: G = B (the cap)
    return one_hot


def _select(one_hot: list[Any], table: np.ndarray, frac_bits: int) -> Any:
    """Σ_j [G = j]·round(table_j·2^F): integers times a one-hot, so local and exact."""
    acc = None
    for j, ind in enumerate(one_hot):
        c = int(round(float(table[j]) * 2 ** frac_bits))
        if c:
            term = ind * c
            acc = term if acc is None else acc + term
    return acc


def randomness_secint() -> type:
    """SecInt type of the noise's random bits and integer selections (|values| < 2^22).

    Its field (56 bits) is smaller than the noise type's (82 bits at F = 20): the bits and
    the products of the one-hots, most of the noise's traffic, cost 7 bytes per element, not 11.
    """
    return mpc.SecInt(RANDOMNESS_INT_BITS)


def _integers_to_fxp(rows: list[Any], fxp: type) -> list[Any]:
    """Integers a (units 2^−F) of ``randomness_secint`` arrays (n,) to ``fxp`` values a·2^−F.

    One conversion (one opening per value) of all rows at once, then an exact local shift.
    """
    n = rows[0].shape[0]
    flat = mpc.np_stack(rows).reshape(len(rows) * n)
    conv = exact_shift_down(convert_array(flat, fxp), fxp.frac_length).reshape(len(rows), n)
    return [conv[i] for i in range(len(rows))]


def gumbel_from_randomness(k_bits: Any, j_bits: Any, mantissa: Any, fxp: type) -> Any:
    """Gumbel samples −ln E from given secret randomness (see module docstring), in ``fxp``.

    k_bits, j_bits: ``randomness_secint`` arrays (n, B) of bits; mantissa: its array (n,) of
    integers in [0, 2^F) (M = mantissa·2^−F). Exposed so that tests can feed known randomness
    and check the fixed-point error exactly.
    """
    f = fxp.frac_length
    n_bits = k_bits.shape[1]
    j_range = np.arange(n_bits + 1, dtype=float)
    k_hot = _one_hot_first_one(k_bits)
    j_hot = _one_hot_first_one(j_bits)
    k_pos = np.maximum(j_range, 1.0)
    ln_k = np.where(j_range >= 1, np.log(k_pos * LN2), 0.0)
    inv_k = np.where(j_range >= 1, 1.0 / (k_pos * LN2), 0.0)
    # (J + 2)/64 is selected exactly (it fits the small integer type; (J + 2) ln2 does not).
    ln_k_sel, inv_k_sel, j2_64, pow2_j, is_k0, mantissa = _integers_to_fxp(
        [_select(k_hot, ln_k, f), _select(k_hot, inv_k, f),
         _select(j_hot, (j_range + 2.0) / 64, f), _select(j_hot, 2.0 ** -(j_range + 1.0), f),
         k_hot[0] * (1 << f), mantissa], fxp)
    neg_j_ln2 = fxp_scale(j2_64, -64 * LN2)
    v = fxp_multiply(pow2_j, mantissa + 1.0)            # V = 2^−(J+1)(1 + M) ∈ (0, 1)
    v_pw = _powers(v, POLY_DEGREE)
    r = _poly(v_pw, TRUNC_EXP_COEF, fxp)                # R = −ln(1 − V/2) ∈ [0, ln 2)
    q = _poly(v_pw, LN_H_COEF, fxp)
    ratio = fxp_multiply(r, inv_k_sel)                  # R/(K ln2) ∈ [0, 1); 0 when K = 0
    # Both branches need one ln1p: of M (K = 0) or of R/(K ln2) (K ≥ 1); select the argument
    # first and evaluate a single polynomial.
    ln1p_arg = _poly(_powers(ratio + fxp_multiply(is_k0, mantissa - ratio), POLY_DEGREE),
                     LN1P_COEF, fxp)
    ln_e = ln_k_sel + ln1p_arg + fxp_multiply(is_k0, neg_j_ln2 + q - ln_k_sel)
    return -ln_e


def noise_fxp(frac_bits: int) -> type:
    """Small SecFxp type for the noise computations: |values| < 2^9, polynomial sums < 2^(F+3).

    A smaller field than the scores' type: fewer bytes per truncation and product.
    """
    return mpc.SecFxp(frac_bits + 10, frac_bits)


def _to_type(a: Any, fxp: type) -> Any:
    """Convert a noise array into the scores' type (one opening per value; same F: exact)."""
    return a if type(a).sectype is fxp else convert_array(a, fxp)


def secure_gumbel(fxp: type, n: int) -> Any:
    """n fresh secret Gumbel(0, 1) samples as an ``fxp`` array (2B + F random bits each).

    Bits in ``randomness_secint``, the rest in ``noise_fxp(F)``, converted to ``fxp``.
    """
    if n < 1:
        raise SecureMechanismError(f"need n >= 1 Gumbel samples, got {n}")
    f = fxp.frac_length
    secint = randomness_secint()
    bits = mpc.np_random_bits(secint, n * (2 * GEOMETRIC_BITS + f))
    bits = bits.reshape(n, 2 * GEOMETRIC_BITS + f)
    k_bits = bits[:, :GEOMETRIC_BITS]
    j_bits = bits[:, GEOMETRIC_BITS:2 * GEOMETRIC_BITS]
    mantissa = mpc.np_from_bits(bits[:, 2 * GEOMETRIC_BITS:])
    return _to_type(gumbel_from_randomness(k_bits, j_bits, mantissa, noise_fxp(f)), fxp)


def _check_scores(scores: Any) -> type:
    stype = getattr(scores, "sectype", None)
    if stype is None or not getattr(stype, "frac_length", 0) or scores.ndim != 1:
        raise SecureMechanismError("scores must be a 1-D SecFxp array (see em_fxp_type)")
    if stype.frac_length < 8:
        raise SecureMechanismError("scores need at least 8 fractional bits")
    return stype


def secure_em_index(scores: Any, epsilon: float, sensitivity: float, draws: int = 1) -> Any:
    """Secret index (or (draws,) indices) of argmax_r ε u_r/(2Δ) + G_r; nothing opened."""
    return _noisy_argmax(scores, epsilon, sensitivity, secure_gumbel, draws)


def _noisy_argmax(scores: Any, epsilon: float, sensitivity: float, noise: Any,
                  draws: int) -> Any:
    """argmax_r ε u_r/(2Δ) + Z_r with Z = ``noise(fxp, n)``, for ``draws`` independent draws."""
    fxp = _check_scores(scores)
    k = scores.shape[0]
    with section("scaled scores"):
        s = _scaled_scores(scores, epsilon, sensitivity)
    with section("Gumbel noise" if noise is secure_gumbel else "Exp noise"):
        z = noise(fxp, draws * k)
    with section("argmax"):
        noisy = s + z if draws == 1 else z.reshape(draws, k) + s
        if not mpc.options.no_prss:
            # Compare integers in units 2^−(F − c), c = COMPARISON_DROP_BITS, in a small
            # field, not SecFxp values in the scores' field (the truncation adds ≤ 2·2^−(F−c)
            # to η).
            noisy = prss_trunc(noisy, COMPARISON_DROP_BITS)
            noisy = reinterpret_as_secint(noisy, comparison_secint(fxp, epsilon, sensitivity))
        return mpc.np_argmax(noisy) if draws == 1 else mpc.np_argmax(noisy, axis=1)


def comparison_bits(fxp: type, epsilon: float, sensitivity: float) -> int:
    """The argmax's integer width for scores of type ``fxp``
    (:func:`~flaimsim.parties.distaim.plan.argmax_bits`)."""
    return argmax_bits(fxp.bit_length, fxp.frac_length, epsilon, sensitivity)


def comparison_secint(fxp: type, epsilon: float, sensitivity: float) -> type:
    """SecInt(:func:`comparison_bits`): a smaller field than the scores' type."""
    return mpc.SecInt(comparison_bits(fxp, epsilon, sensitivity))


async def secure_exponential_mechanism(scores: Any, epsilon: float, sensitivity: float) -> int:
    """Open only the index r ~ exp(ε_eff u_r/(2Δ)) (ε_eff = em_scale(ε, Δ)[2] ≤ ε). Async."""
    index = secure_em_index(scores, epsilon, sensitivity)
    with section("opening"):
        index = await mpc.output(index)
    return int(index)


async def secure_exponential_mechanism_batch(scores: Any, epsilon: float, sensitivity: float,
                                             draws: int) -> np.ndarray:
    """``draws`` independent EM draws on the same scores in one vectorised run (tests, bench)."""
    if draws < 1:
        raise SecureMechanismError(f"need draws >= 1, got {draws}")
    indices = await mpc.output(secure_em_index(scores, epsilon, sensitivity, draws))
    return np.rint(np.asarray(indices, dtype=float)).astype(np.int64).reshape(draws)


# ---------------------------------------------------------------- report-noisy-max, Exp noise

def secure_exponential_noise(fxp: type, n: int) -> Any:
    """n fresh secret Exp(1) samples E = K ln2 + R(V) (B + F random bits each, no log of E).

    V is uniform on the grid 2^−F; R(V) = −ln(1 − V/2) is 1-Lipschitz·½, so the grid and the
    polynomial add at most ~2^−F + 2e−6 to E (part of η below).
    """
    if n < 1:
        raise SecureMechanismError(f"need n >= 1 exponential samples, got {n}")
    f = fxp.frac_length
    small = noise_fxp(f)
    bits = mpc.np_random_bits(randomness_secint(), n * (GEOMETRIC_BITS + f))
    bits = bits.reshape(n, GEOMETRIC_BITS + f)
    k_hot = _one_hot_first_one(bits[:, :GEOMETRIC_BITS])
    k_64, v = _integers_to_fxp(
        [_select(k_hot, np.arange(GEOMETRIC_BITS + 1, dtype=float) / 64, f),
         mpc.np_from_bits(bits[:, GEOMETRIC_BITS:])], small)
    k_ln2 = fxp_scale(k_64, 64 * LN2)
    return _to_type(k_ln2 + _poly(_powers(v, POLY_DEGREE), TRUNC_EXP_COEF, small), fxp)


def secure_rnm_index(scores: Any, epsilon: float, sensitivity: float, draws: int = 1) -> Any:
    """Secret argmax_r ε u_r/(2Δ) + E_r, E_r ~ Exp(1) (= permute-and-flip); nothing opened."""
    return _noisy_argmax(scores, epsilon, sensitivity, secure_exponential_noise, draws)


async def secure_report_noisy_max(scores: Any, epsilon: float, sensitivity: float,
                                  draws: int | None = None) -> int | np.ndarray:
    """Report-noisy-max with Exp(2Δ/ε) noise, identical in law to permute-and-flip. Async.

    NOT AIM's exponential mechanism: it is ε_eff-DP (+4η as for the EM), but not ε-bounded
    range, so its zCDP cost is ε²/2, four times the EM's ε²/8 at the same ε. About half the
    MPC cost of the Gumbel EM (no logarithm of E). ``draws`` > 1 returns an int64 array.
    """
    if draws is not None and draws < 1:
        raise SecureMechanismError(f"need draws >= 1, got {draws}")
    index = secure_rnm_index(scores, epsilon, sensitivity, draws or 1)
    with section("opening"):
        index = await mpc.output(index)
    if draws is None:
        return int(index)
    return np.rint(np.asarray(index, dtype=float)).astype(np.int64).reshape(draws)
