"""Issue 10: the exact discrete Gaussian sampler, the charge-before-release ledger, public
record bounds and the privacy block."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from flaimsim.mechanisms import discrete_gaussian as dg
from flaimsim.mechanisms.accounting import (BudgetError, PrivacyLedger, PrivacyOrderError,
                                            cdp_delta, distributed_noise_slack,
                                            gumbel_truncation_tv)
from flaimsim.mechanisms.discrete_gaussian import (GeneratorSource, SystemSource,
                                                   discrete_gaussian_pmf,
                                                   discrete_gaussian_variance, grid_scale2,
                                                   sample_discrete_gaussian,
                                                   sample_discrete_gaussian_scalar)
from flaimsim.protocols.config import ConfigError, RunConfig

TINY = dict(dataset="synthfs", clients=5, synthfs_features=4, synthfs_records=40, max_bins=5,
            workload_marginals=3, rounds=2, iters_round=30, iters_final=60, seed=11)


def chi_square_p(samples: np.ndarray, s2: float) -> float:
    """Chi-square p-value of integer samples against N_Z(0, s²), cells with ≥ 5 expected,
    the two tails pooled into one cell each."""
    n = samples.size
    half = int(math.sqrt(s2) * 6) + 2
    support = np.arange(-half, half + 1)
    p = discrete_gaussian_pmf(s2, support)
    keep = n * p >= 5
    lo, hi = support[keep][0], support[keep][-1]
    inner = np.arange(lo, hi + 1)
    p_in = discrete_gaussian_pmf(s2, inner)
    tail = (1 - p_in.sum()) / 2
    observed = np.concatenate([[np.sum(samples < lo)],
                               np.bincount(samples[(samples >= lo) & (samples <= hi)] - lo,
                                           minlength=inner.size),
                               [np.sum(samples > hi)]])
    expected = n * np.concatenate([[tail], p_in, [tail]])
    return float(stats.chisquare(observed, expected).pvalue)


@pytest.mark.parametrize("s2", [0.5, 20.0, 400.0])
def test_sampler_matches_the_discrete_gaussian_pmf(s2):
    x = sample_discrete_gaussian(s2, 200_000, np.random.default_rng(int(s2 * 10)))
    assert x.dtype == np.int64
    assert chi_square_p(x, s2) > 1e-3
    assert x.var() == pytest.approx(discrete_gaussian_variance(s2), rel=0.02)


def test_cryptographic_source_matches_the_pmf():
    # Unseedable: a statistical test with a small false-alarm rate.
    assert chi_square_p(sample_discrete_gaussian(20.0, 100_000, SystemSource()), 20.0) > 1e-6


def test_python_integer_paths_match_the_pmf(monkeypatch):
    """The fallbacks (far tails, long K loops) are exact too: force them for most draws."""
    monkeypatch.setattr(dg, "_INT64_SQRT", 25)  # |y| >= 1 takes the Python path
    monkeypatch.setattr(dg, "_K_MAX", 2)
    x = sample_discrete_gaussian(20.0, 20_000, np.random.default_rng(5))
    assert chi_square_p(x, 20.0) > 1e-3
    src = GeneratorSource(np.random.default_rng(6))
    y = np.array([sample_discrete_gaussian_scalar(Fraction(20), src) for _ in range(5000)])
    assert chi_square_p(y, 20.0) > 1e-3


def test_agrees_with_opendp():
    opendp = pytest.importorskip("opendp.prelude")
    opendp.enable_features("contrib")
    meas = opendp.m.make_gaussian(opendp.vector_domain(opendp.atom_domain(T=int)),
                                  opendp.l2_distance(T=int), scale=math.sqrt(20.0))
    assert meas.map(1) == pytest.approx(1 / (2 * 20.0))   # the same ρ = 1/(2σ²)
    theirs = np.asarray(meas([0] * 50_000), dtype=np.int64)
    ours = sample_discrete_gaussian(20.0, 50_000, np.random.default_rng(8))
    edges = np.arange(-15, 17) - 0.5
    a, _ = np.histogram(np.clip(ours, -15, 15), edges)
    b, _ = np.histogram(np.clip(theirs, -15, 15), edges)
    assert stats.chi2_contingency(np.vstack([a, b]))[1] > 1e-3


def test_seeded_runs_are_reproducible_and_grid_rounds_up():
    a = sample_discrete_gaussian(317.3, 1000, np.random.default_rng(1))
    b = sample_discrete_gaussian(317.3, 1000, np.random.default_rng(1))
    assert np.array_equal(a, b)
    for s2 in (0.5, 317.3, 1e6 / 3, Fraction(1, 3)):
        q = grid_scale2(s2)
        assert Fraction(s2) <= q <= Fraction(s2) * (1 + Fraction(1, 10 ** 6))


def test_variance_is_exact_and_below_the_parameter():
    k = np.arange(-60, 61)
    w = np.exp(-k ** 2 / (2 * 0.5))
    assert discrete_gaussian_variance(0.5) == pytest.approx((k ** 2 * w).sum() / w.sum())
    assert discrete_gaussian_variance(0.5) < 0.5
    assert discrete_gaussian_variance(400.0) == pytest.approx(400.0, rel=1e-12)


def _sum_of_shares_rho(sigma: float, n: int, half: int = 200) -> float:
    """Brute force: sup over α of D_α(P‖P shifted by 1)/α, P the law of a sum of n i.i.d.
    N_Z(0, σ²/n) (exact pmfs convolved on a wide support): the zCDP ρ of one cell."""
    from scipy.special import logsumexp

    p = discrete_gaussian_pmf(sigma ** 2 / n, np.arange(-half, half + 1))
    out = p
    for _ in range(n - 1):
        out = np.convolve(out, p)
    p_, q_ = out[1:] / out.sum(), out[:-1] / out.sum()
    keep = (p_ > 1e-300) & (q_ > 1e-300)         # mass beyond is below 1e-290 in all
    logp, logq = np.log(p_[keep]), np.log(q_[keep])
    alphas = np.linspace(1.05, 40, 300)
    return max(logsumexp(a * logp + (1 - a) * logq) / (a - 1) / a for a in alphas)


@pytest.mark.parametrize("sigma,n", [(1.2, 2), (1.0, 3), (0.8, 2), (1.5, 5), (2.0, 3)])
def test_kls_slack_covers_the_brute_force_renyi_cost(sigma, n):
    """Independent of KLS21's formula: the Rényi divergences of the summed shares' law,
    computed from its exact pmf, stay within 1/(2σ²) plus the slack we charge (d = 1)."""
    actual = _sum_of_shares_rho(sigma, n)
    assert actual <= 1 / (2 * sigma ** 2) + distributed_noise_slack(sigma, n, 1) + 1e-12


def test_kls_slack_is_needed_where_shares_are_narrow():
    # The sum of narrow shares is not N_Z(0, σ²): it costs more than 1/(2σ²).
    assert _sum_of_shares_rho(0.8, 2) > 1 / (2 * 0.8 ** 2) * 1.02
    assert _sum_of_shares_rho(1.0, 3) > 1 / (2 * 1.0 ** 2) * 1.02


def test_kls_slack():
    assert distributed_noise_slack(3.0, 1, 10) == 0.0          # one share: CKS20 exactly
    assert distributed_noise_slack(20.0, 2, 100) < 1e-300      # the settings we run
    # more cells, more shares or narrower shares never cost less
    assert distributed_noise_slack(1.2, 2, 70) > distributed_noise_slack(1.2, 2, 7)
    assert distributed_noise_slack(1.2, 4, 7) > distributed_noise_slack(1.2, 2, 7)
    assert distributed_noise_slack(1.0, 2, 7) > distributed_noise_slack(1.2, 2, 7)
    with pytest.raises(BudgetError, match="1/2"):
        distributed_noise_slack(0.5, 2, 1)
    assert gumbel_truncation_tv(10, 40) == 20 * 2.0 ** -40


def test_ledger_charge_release_refund_order():
    led = PrivacyLedger(1.0)
    with pytest.raises(PrivacyOrderError, match="without a prior charge"):
        led.release(0, "early output")
    c = led.spend_gaussian(1, 2.0, "m", honest_shares=2, cells=4)
    assert [s.mechanism for s in led.spends] == ["gaussian", "dgauss-sum-slack"]
    led.release(c, "noisy marginal")
    with pytest.raises(PrivacyOrderError, match="no refund"):
        led.refund(c, "too late")
    e = led.spend_exponential(2, 0.5)
    led.refund(e, "nothing released")
    assert [s.mechanism for s in led.spends] == ["gaussian", "dgauss-sum-slack"]
    with pytest.raises(PrivacyOrderError, match="refunded"):
        led.release(e, "after refund")
    led.check_order()
    seq = {ev.seq: ev for ev in led.events}
    for ev in led.events:
        if ev.kind == "release":
            assert seq[ev.charge].kind == "charge" and ev.charge < ev.seq
    led.add_deviation(2, "gumbel-truncation", 1e-12)
    terms = led.delta_terms(1.0)
    assert terms["gumbel-truncation"] == pytest.approx((1 + math.e) * 1e-12)
    assert terms["zcdp_conversion"] == cdp_delta(led.rho_spent, 1.0)


def test_a_run_that_charges_after_release_fails():
    from flaimsim.mechanisms.dp import gaussian_mechanism
    from flaimsim.mechanisms.model import Measurement
    from flaimsim.protocols import central

    class ReleasesFirst(central.CuratorBackend):
        def _measure(self, round, cliques, sigma, privacy):
            out = []
            for c in cliques:
                noisy = gaussian_mechanism(self.table.marginal(c), sigma, self.rng)
                privacy.release(len(privacy.events), f"noisy {c}")   # nothing charged yet
                privacy.spend_gaussian(round, sigma, "|".join(c))
                out.append(Measurement(c, noisy.astype(float), sigma))
            return out

    cfg = RunConfig(protocol="central", **TINY)
    data = central.prepare(cfg)
    model = central.GraphicalModel.for_table(data.train, 10, 10)
    backend = ReleasesFirst(data.train, data.workload, np.random.default_rng(0))
    with pytest.raises(PrivacyOrderError, match="without a prior charge"):
        central.run_fixed(cfg, data.workload, model, backend)


def _check_block(record):
    block = record["privacy"]
    assert block["neighbouring"] == "add/remove one record"
    # the schedule reserves KLS21's worst-case slack, so a run may spend a little less
    assert math.fsum(block["rho_by_mechanism"].values()) == pytest.approx(
        block["rho_spent"], rel=1e-12)
    assert block["rho_spent"] <= block["rho_budget"] * (1 + 1e-9)
    assert block["delta"] == pytest.approx(math.fsum(block["delta_terms"].values()), rel=1e-12)
    assert block["delta_terms"]["zcdp_conversion"] <= block["delta_target"] * (1 + 1e-6)
    assert block["order"]["releases"] > 0 and block["order"]["charges"] > 0
    json.dumps(block)
    return block


def test_central_privacy_block_and_charge_order():
    from flaimsim.protocols.central import run_central

    res = run_central(RunConfig(protocol="central", **TINY))
    block = _check_block(res.record)
    assert set(block["rho_by_mechanism"]) == {"gaussian", "exponential"}
    assert set(block["delta_terms"]) == {"zcdp_conversion"}
    assert block["threshold"] is None and "seeded" in block["noise"]["randomness"]
    assert block["record_bound"] == {"value": 200, "public": True, "source": "documented size"}


def test_distaim_model_privacy_block():
    from flaimsim.protocols.distaim import run_distaim

    res = run_distaim(RunConfig(protocol="distaim", mpc="model", **TINY))
    block = _check_block(res.record)
    assert set(block["rho_by_mechanism"]) == {"gaussian", "exponential", "dgauss-sum-slack"}
    assert block["delta_terms"]["gumbel-truncation"] > 0
    assert block["threshold"] == 1 and block["servers"] == 3
    # the default κ keeps the masked openings' δ term within δ/10 (protocols/mpc_security)
    assert block["security_terms"]["mpyc_sec_param"] >= 30
    assert 0 < block["delta_terms"]["mpc-statistical"] <= block["delta_target"] / 10
    kinds = [e.kind for e in res.loop.privacy.events]
    # Per selection: charge, deviation, release; per measurement: two charges, release.
    assert kinds.count("release") == kinds.count("charge") - 6


def test_record_bound_refuses_larger_data_and_sets_wire_widths():
    from flaimsim.protocols.prepare import prepare

    with pytest.raises(ConfigError, match="more records than the record bound 100"):
        prepare(RunConfig(max_records=100, **TINY))
    data = prepare(RunConfig(max_records=10_000, **TINY))
    assert data.record_bound.to_dict() == {"value": 10_000, "public": True,
                                           "source": "--max-records"}


def test_custom_data_without_bound_is_marked_not_public(tmp_path):
    from flaimsim.protocols.prepare import prepare

    rng = np.random.default_rng(0)
    rows = rng.integers(0, 3, size=(60, 3))
    (tmp_path / "toy.csv").write_text("a,b,c\n" + "\n".join(",".join(map(str, r))
                                                            for r in rows) + "\n")
    (tmp_path / "toy-domain.json").write_text(json.dumps({"a": 3, "b": 3, "c": 3}))
    cfg = RunConfig(dataset="toy", data_dir=str(tmp_path), clients=3, workload_marginals=1,
                    rounds=1, iters_round=10, iters_final=10)
    assert prepare(cfg).record_bound.to_dict() == {"value": 60, "public": False,
                                                   "source": "file row count"}
    from flaimsim.protocols.central import run_central

    notes = run_central(cfg).record["privacy"]["notes"]
    assert any("not public" in n.lower() for n in notes)


def test_real_distaim_privacy_block_and_server_openings():
    """Acceptance: real MPC (3 servers); ρ components add up to the budget, δ is the sum of
    its terms, and every opening the servers logged has a release after its charge."""
    from flaimsim.protocols.distaim import run_distaim

    res = run_distaim(RunConfig(protocol="distaim", mpc="real", **TINY))
    block = _check_block(res.record)
    assert block["noise"]["randomness"].startswith("OS CSPRNG")
    assert block["threshold"] == 1 and block["delta_terms"]["gumbel-truncation"] > 0
    masked = res.record["masked_openings"]     # counted at the servers, not just claimed
    assert masked["calls"] > 0 and masked["elements"] >= masked["calls"]
    releases = [e for e in res.loop.privacy.events if e.kind == "release"]
    reveals = res.artifacts["reveals"]
    assert len(releases) == len(reveals)
    assert sum(e.mechanism == "gaussian" for e in releases) == sum(
        r["name"] == "noisy-marginal" for r in reveals)
    assert sum(e.mechanism == "exponential" for e in releases) == sum(
        r["name"] == "selected-index" for r in reveals)


def _plain_bern_exp_frac(num, den, src):
    """CKS20 Alg. 1 with a K per element, as first written: the reference draw order."""
    out = np.zeros(num.shape, dtype=bool)
    k = np.ones(num.shape, dtype=np.int64)
    todo = np.arange(num.size)
    while todo.size:
        go_on = src.below(den[todo] * k[todo]) < num[todo]
        stop = todo[~go_on]
        out[stop] = k[stop] % 2 == 1
        todo = todo[go_on]
        k[todo] += 1
        for i in todo[k[todo] >= dg._K_MAX]:
            out[i] = dg._bern_exp_scalar(int(num[i]), int(den[i]), src, int(k[i]))
        todo = todo[k[todo] < dg._K_MAX]
    return out


@pytest.mark.parametrize("k_max", [64, 2])
def test_sampler_draws_what_a_k_per_element_loop_draws(monkeypatch, k_max):
    """The Bernoulli loop keeps one K for all elements still drawing (they all drew alike)
    and compacts them: the same draws from the source, in the same order, so a seeded run's
    noise is what it was (also where K reaches its cap and Python integers finish)."""
    monkeypatch.setattr(dg, "_K_MAX", k_max)
    fast = [sample_discrete_gaussian(s2, n, np.random.default_rng(seed))
            for seed in range(6) for s2 in (0.3, 20.0, 5e4) for n in (1, 15, 300)]
    monkeypatch.setattr(dg, "_bern_exp_frac", _plain_bern_exp_frac)
    plain = [sample_discrete_gaussian(s2, n, np.random.default_rng(seed))
             for seed in range(6) for s2 in (0.3, 20.0, 5e4) for n in (1, 15, 300)]
    assert all(np.array_equal(a, b) for a, b in zip(fast, plain, strict=True))
