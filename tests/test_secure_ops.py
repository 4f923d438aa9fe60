"""Secure scoring, exponential mechanism and Gaussian measurement, in one MPyC party (no -M).

Deterministic parts are checked exactly; samplers statistically (MPC randomness cannot be seeded).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from mpyc.runtime import mpc
from scipy import stats

from flaimsim.mechanisms.scores import aim_score_from_l1
from flaimsim.parties.distaim.plan import (SecureMechanismError, SecureScoringError, added_variance,
                                          em_scale)
from flaimsim.parties.distaim.secure_em import (em_fxp_type, gumbel_from_randomness, noise_fxp,
                                                randomness_secint, secure_exponential_mechanism,
                                                secure_exponential_mechanism_batch)
from flaimsim.parties.distaim.secure_noise import secure_gaussian_measure
from flaimsim.parties.distaim.secure_scoring import (count_secint, decompose_counts,
                                                     secure_abs_diff_bits, secure_l1_bits,
                                                     secure_l1_naive, secure_scores_bits)

MAX_COUNT = 1000
SEGMENTS = [1, 60, 139]


def _plain_l1(x: np.ndarray, c_rounded: np.ndarray, segments: list[int]) -> np.ndarray:
    starts = np.r_[0, np.cumsum(segments)[:-1]]
    return np.add.reduceat(np.abs(x - c_rounded), starts)


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Marginal-like data: each segment's counts sum to ≤ N, the model sums to ~N."""
    rng = np.random.default_rng(seed)
    xs, cs = [np.array([MAX_COUNT])], [np.array([float(MAX_COUNT)])]
    for n in SEGMENTS[1:]:
        xs.append(rng.multinomial(MAX_COUNT - 5, rng.dirichlet(np.full(n, 0.3))))
        cs.append(rng.dirichlet(np.full(n, 0.5)) * MAX_COUNT * rng.uniform(0.9, 1.1))
    x, c = np.concatenate(xs), np.concatenate(cs)
    # edges: ties, halves, a zero model cell, a model value above 2^l = 1024 (all x < 2^l).
    x[1:6] = [7, 8, 0, 3, 2]
    c[1:6] = [7.0, 7.5, 0.0, 3.25, 1030.0]
    return x, c


@pytest.mark.parametrize("frac_bits", [0, 2])
def test_bits_l1_is_exact_for_rounded_model(frac_bits: int) -> None:
    x, c = _data(frac_bits)
    secint = count_secint(MAX_COUNT, frac_bits)
    bits = decompose_counts(secint.array(x), MAX_COUNT, frac_bits)
    got = np.asarray(mpc.run(mpc.output(secure_l1_bits(bits, c, SEGMENTS))), dtype=np.int64)
    scale = 2 ** frac_bits
    want = _plain_l1(x * scale, np.rint(c * scale), SEGMENTS)
    np.testing.assert_array_equal(got, want)
    per_cell = mpc.run(mpc.output(secure_abs_diff_bits(bits.take(np.arange(1, 40)), c[1:40])))
    np.testing.assert_array_equal(np.asarray(per_cell, dtype=np.int64),
                                  np.abs(x[1:40] * scale - np.rint(c[1:40] * scale)))
    # rounding bound of the public value: ≤ 2^-(f+1) per cell versus the unrounded L1
    exact = _plain_l1(x.astype(float), c, SEGMENTS)
    assert np.all(np.abs(got / scale - exact) <= np.asarray(SEGMENTS) * 2.0 ** -(frac_bits + 1) + 1e-9)


def test_bits_scores_use_shared_formula() -> None:
    x, c = _data(7)
    secint = count_secint(MAX_COUNT)
    fxp = em_fxp_type(1e7)
    bits = decompose_counts(secint.array(x), MAX_COUNT)
    weights = [3, 1, 2]
    got = np.asarray(mpc.run(mpc.output(secure_scores_bits(bits, c, SEGMENTS, 4.5, weights, fxp))), float)
    want = aim_score_from_l1(_plain_l1(x, np.rint(c), SEGMENTS), 4.5, np.asarray(SEGMENTS, float),
                             np.asarray(weights))
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_naive_l1_matches_numpy() -> None:
    x, c = _data(3)
    fxp = mpc.SecFxp(32)
    got = np.asarray(mpc.run(mpc.output(secure_l1_naive(fxp.array(x.astype(float)), c, SEGMENTS))), float)
    np.testing.assert_allclose(got, _plain_l1(x.astype(float), c, SEGMENTS), atol=sum(SEGMENTS) * 2.0 ** -15)


def test_scoring_rejects_bad_input() -> None:
    x, c = _data(1)
    secint = count_secint(MAX_COUNT)
    bits = decompose_counts(secint.array(x), MAX_COUNT)
    with pytest.raises(SecureScoringError, match="segment lengths"):
        secure_l1_bits(bits, c, [1, 2])
    with pytest.raises(SecureScoringError, match="non-negative"):
        secure_l1_bits(bits, -c, SEGMENTS)
    with pytest.raises(SecureScoringError, match="too short"):
        decompose_counts(mpc.SecInt(8).array(x % 100), MAX_COUNT)
    with pytest.raises(SecureMechanismError):
        em_scale(0.0, 1.0)


@pytest.mark.parametrize("epsilon,sensitivity", [(0.1, 192.0), (3.0, 1.0), (5000.0, 1.0), (1e-4, 3.0)])
def test_em_scale_rounds_down(epsilon: float, sensitivity: float) -> None:
    m, e, eps_eff = em_scale(epsilon, sensitivity)
    assert 2 ** 15 <= m < 2 ** 16
    assert eps_eff <= epsilon and eps_eff >= epsilon * (1 - 2.0 ** -15)


def test_gumbel_fixed_point_error_is_small() -> None:
    """Known randomness in, compare with the exact −ln(K ln2 − ln(1 − V/2)): the noise part
    of η (secure_em.NOISE_ETA)."""
    from flaimsim.bench.secure_bench import known_gumbel_randomness
    fxp = noise_fxp(em_fxp_type(1e6).frac_length)      # the type the noise is computed in
    k_bits, j_bits, mantissa, want = known_gumbel_randomness(np.random.default_rng(5),
                                                             fxp.frac_length)
    secint = randomness_secint()
    got = np.asarray(mpc.run(mpc.output(gumbel_from_randomness(
        secint.array(k_bits), secint.array(j_bits), secint.array(mantissa), fxp))), float)
    from flaimsim.parties.distaim.plan import NOISE_ETA
    assert np.max(np.abs(got - want)) < NOISE_ETA


def test_em_with_huge_epsilon_returns_argmax() -> None:
    fxp = em_fxp_type(1e4)
    scores = fxp.array(np.array([10.0, -3.0, 250.5, 250.0, 7.0]))
    assert mpc.run(secure_exponential_mechanism(scores, 2000.0, 1.0)) == 2


def test_em_matches_softmax_chi_square() -> None:
    fxp = em_fxp_type(1e4)
    u = np.array([0.0, 1.5, 3.0, -2.0])
    epsilon, sensitivity = 1.0, 0.5            # exp(u): probabilities ~ 0.04 .. 0.79
    draws = 400
    idx = mpc.run(secure_exponential_mechanism_batch(fxp.array(u), epsilon, sensitivity, draws))
    assert idx.shape == (draws,) and idx.min() >= 0 and idx.max() < len(u)
    eps_eff = em_scale(epsilon, sensitivity)[2]
    p = np.exp(eps_eff * u / (2 * sensitivity))
    p /= p.sum()
    observed = np.bincount(idx, minlength=len(u))
    assert stats.chisquare(observed, draws * p).pvalue > 1e-3


def test_gaussian_measure_single_party_variance() -> None:
    sigma, n = 6.0, 20000
    x = np.random.default_rng(2).integers(0, 500, n)
    out = mpc.run(secure_gaussian_measure(count_secint(1000).array(x), sigma))
    assert out.parties == 1 and out.threshold == 0
    # One party: the discrete Gaussian N_Z(0, σ²), whose variance is σ² to ~exp(−2π²σ²).
    assert out.variance == pytest.approx(added_variance(sigma, 1, 0)) == pytest.approx(sigma ** 2)
    noise = out.values - x
    assert np.all(noise == np.rint(noise))
    assert abs(noise.mean()) < 4.5 * math.sqrt(out.variance / n)
    stat = (n - 1) * noise.var(ddof=1) / out.variance
    p = 2 * min(stats.chi2.cdf(stat, n - 1), stats.chi2.sf(stat, n - 1))
    assert p > 1e-3


def test_range_check_rejects_oversized_model() -> None:
    x, c = _data(4)
    bits = decompose_counts(count_secint(MAX_COUNT).array(x), MAX_COUNT)
    with pytest.raises(SecureScoringError, match="model marginal too large"):
        secure_l1_bits(bits, c * 1000, SEGMENTS, em_fxp_type(1e7))


def test_three_parties_on_loopback() -> None:
    """The same functions under 3 real MPyC parties: exact L1, bytes saving, noise variance."""
    from flaimsim.bench.secure_bench import bench_em, bench_measure, bench_scoring
    scoring = bench_scoring(cells=300, parties=3, timeout=240, shape="uniform")
    assert scoring["correct"]
    assert scoring["full_bytes_per_cell"] * 3 < scoring["naive_bytes_per_cell"]
    assert scoring["priced_bytes_per_cell"] < scoring["full_bytes_per_cell"]
    measured = bench_measure(cells=4000, sigma=5.0, parties=3, timeout=120)
    assert measured["threshold"] == 1
    # Each of the 3 servers adds N_Z(0, 25/2); at this scale a discrete Gaussian's variance
    # equals its parameter to ~1e-50, so the sum's is 3·12.5.
    
    assert measured["reported_variance"] == pytest.approx(added_variance(5.0, 3, 1))
    assert measured["reported_variance"] == pytest.approx(3 * 25.0 / 2, rel=1e-9)
    stat = 3999 * measured["empirical_variance"] / measured["reported_variance"]
    assert 2 * min(stats.chi2.cdf(stat, 3999), stats.chi2.sf(stat, 3999)) > 1e-3
    (em,) = bench_em(ks=(5,), parties=3, timeout=120)
    # A draw is the Gumbel noise plus the scaling and the argmax: strictly more traffic.
    assert 0 < em["gumbel_bytes_per_party"] < em["bytes_per_party"]


def _rnm_exp_probabilities(s: np.ndarray) -> np.ndarray:
    """Exact P(argmax_r s_r + E_r = r), E ~ Exp(1) i.i.d., by numerical integration."""
    from scipy import integrate

    def density(t: float, r: int) -> float:
        others = np.delete(s, r)
        return math.exp(-t) * float(np.prod(np.clip(1 - np.exp(-(s[r] + t - others)), 0, None)))

    return np.array([integrate.quad(density, max(0.0, float(np.max(s) - s[r])), np.inf, args=(r,))[0]
                     for r in range(len(s))])


def test_report_noisy_max_matches_permute_and_flip_law() -> None:
    from flaimsim.parties.distaim.secure_em import secure_report_noisy_max
    fxp = em_fxp_type(1e4)
    u = np.array([0.0, 1.5, 3.0, -2.0])
    epsilon, sensitivity, draws = 1.0, 0.5, 400
    idx = mpc.run(secure_report_noisy_max(fxp.array(u), epsilon, sensitivity, draws))
    p = _rnm_exp_probabilities(em_scale(epsilon, sensitivity)[2] * u / (2 * sensitivity))
    assert p.sum() == pytest.approx(1.0, abs=1e-6)
    assert stats.chisquare(np.bincount(idx, minlength=len(u)), draws * p).pvalue > 1e-3


def test_prss_truncation_and_mechanisms_under_three_parties() -> None:
    """The PRSS truncation (3 real parties): error within its stated bound and unbiased; the
    Gumbel noise built on it within η; EM and report-noisy-max draws follow their laws."""
    from flaimsim.bench.secure_bench import check_fixed_point
    from flaimsim.parties.distaim.plan import NOISE_ETA
    out = check_fixed_point(parties=3, values=2000, draws=400, timeout=240)
    assert out["truncation_bound_units"] == 2.0           # (C(3, 1) + 1) / 2
    assert 0.5 < out["truncation_max_abs_units"] < out["truncation_bound_units"]
    # mean of 2000 errors of spread ~0.7 units: |mean| < 0.1 is > 6 standard errors
    assert abs(out["truncation_mean_units"]) < 0.1
    assert out["gumbel_max_abs_error"] < NOISE_ETA
    from flaimsim.parties.distaim.plan import STATED_TAU
    assert out["l2_max_abs_error"] < STATED_TAU
    dec = out["bit_decomposition"]
    assert dec["ripple"]["exact"] and dec["mpyc"]["exact"]
    # l random bits + one opening + (l − 1) products against MPyC's log-depth adder
    assert dec["ripple"]["bytes"] < 0.6 * dec["mpyc"]["bytes"]
    u = np.asarray(out["scores"])
    s = em_scale(out["epsilon"], out["sensitivity"])[2] * u / (2 * out["sensitivity"])
    p_em = np.exp(s) / np.exp(s).sum()
    for draws, p in ((out["em_draws"], p_em), (out["rnm_draws"], _rnm_exp_probabilities(s))):
        observed = np.bincount(draws, minlength=len(u))
        assert stats.chisquare(observed, len(draws) * p).pvalue > 1e-3
