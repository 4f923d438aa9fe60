"""Accounting, plain DP mechanisms, the AIM score's sensitivity and the workload."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats

from flaimsim.mechanisms.accounting import (AimSchedule, BudgetError, PrivacyLedger, cdp_delta,
                                            cdp_rho, exponential_cost, gaussian_cost)
from flaimsim.mechanisms.data import Table
from flaimsim.mechanisms.dp import (exponential_mechanism, exponential_mechanism_probabilities,
                                    gaussian_mechanism)
from flaimsim.mechanisms.scores import aim_score, aim_score_from_l1, score_sensitivity
from flaimsim.mechanisms.workload import make_workload


def test_rho_for_epsilon_1_delta_1e5():
    rho = cdp_rho(1.0, 1e-5)
    assert rho == pytest.approx(0.0306, abs=5e-5)
    assert cdp_delta(rho, 1.0) <= 1e-5
    assert cdp_delta(rho * 1.01, 1.0) > 1e-5  # the largest such rho


@pytest.mark.parametrize("lo,hi,root,most", [(0.0, 2.0, 0.0306, 100), (1.01, 70.0, 3.3, 100),
                                             (0.0, 1.0, 1.0, 100), (0.0, 1.0, 1e-300, 1000)])
def test_bisection_stops_early_with_the_full_result(lo, hi, root, most):
    from flaimsim.mechanisms.accounting import _bisect

    def full(below):            # the 1000 halvings of the reference conversion code
        a, b = lo, hi
        for _ in range(1000):
            mid = (a + b) / 2
            a, b = (mid, b) if below(mid) else (a, mid)
        return a, b

    calls = []

    def below(x):
        calls.append(x)
        return x < root

    assert _bisect(below, lo, hi) == full(lambda x: x < root)
    assert len(calls) <= most  # ~60 halvings reach float precision (toward 0: ~1075)
    assert _bisect(lambda x: x < root, lo, hi, steps=5) != full(lambda x: x < root)


@pytest.mark.parametrize("eps", [0.5, 1.0, 3.0, 5.0])
def test_rho_grows_with_epsilon(eps):
    assert cdp_rho(eps, 1e-5) < cdp_rho(eps * 1.5, 1e-5)


@pytest.mark.parametrize("eps,delta", [(0, 1e-5), (-1, 1e-5), (1, 0), (1, 1.5), (math.inf, 1e-5)])
def test_rho_rejects_bad_targets(eps, delta):
    with pytest.raises(ValueError):
        cdp_rho(eps, delta)


@pytest.mark.parametrize("rounds,alpha", [(2, 0.9), (10, 0.9), (32, 0.5)])
def test_fixed_schedule_spends_exactly_the_budget(rounds, alpha):
    rho = cdp_rho(1.0, 1e-5)
    s = AimSchedule.fixed(rho, rounds, rounds + 14, alpha)
    assert s.total_cost == pytest.approx(rho, rel=1e-12)
    assert (rounds + 14) * gaussian_cost(s.sigma) == pytest.approx(alpha * rho)
    assert rounds * exponential_cost(s.epsilon_select) == pytest.approx((1 - alpha) * rho)


def test_privacy_ledger_refuses_to_overspend():
    led = PrivacyLedger(0.1)
    led.spend(0, "gaussian", 0.06)
    with pytest.raises(BudgetError, match="remains"):
        led.spend(1, "exponential", 0.05)
    assert led.rho_spent == pytest.approx(0.06)
    led.spend(1, "exponential", 0.04)
    assert led.rho_remaining == pytest.approx(0.0, abs=1e-15)


def test_schedule_rejects_impossible_configuration():
    with pytest.raises(BudgetError):
        AimSchedule.fixed(0.03, 0, 14)
    with pytest.raises(BudgetError):
        AimSchedule.fixed(0.03, 4, 18, alpha=1.0)


def test_exponential_mechanism_matches_softmax_chi_square():
    rng = np.random.default_rng(7)
    scores = np.array([0.0, 1.0, 2.5, -1.0, 4.0])
    eps, sens = 1.0, 1.0
    draws = np.array([exponential_mechanism(scores, eps, sens, rng) for _ in range(20000)])
    observed = np.bincount(draws, minlength=len(scores))
    expected = exponential_mechanism_probabilities(scores, eps, sens) * len(draws)
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # The softmax itself: P(r) ∝ exp(ε u_r / (2Δ)).
    p = np.exp(eps * scores / 2) / np.exp(eps * scores / 2).sum()
    np.testing.assert_allclose(expected / len(draws), p)


def test_exponential_mechanism_rejects_bad_scores():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        exponential_mechanism(np.array([]), 1.0, 1.0, rng)
    with pytest.raises(ValueError):
        exponential_mechanism(np.array([1.0, np.nan]), 1.0, 1.0, rng)
    with pytest.raises(ValueError):
        exponential_mechanism(np.array([1.0]), 1.0, 0.0, rng)


def test_gaussian_mechanism_variance():
    rng = np.random.default_rng(1)
    y = gaussian_mechanism(np.zeros(200000), 3.0, rng)
    assert abs(y.mean()) < 0.05
    assert y.var() == pytest.approx(9.0, rel=0.02)


def _tiny_table(rows):
    return Table(("a", "b", "c"), (2, 3, 2), np.array(rows, dtype=np.int64).reshape(-1, 3))


def test_score_sensitivity_brute_force_add_remove():
    """|u_r(D) − u_r(D')| ≤ w_r for every neighbour D' = D ± one record, every candidate."""
    rng = np.random.default_rng(3)
    base = _tiny_table(rng.integers(0, [2, 3, 2], size=(6, 3)))
    wl = make_workload(base.domain, degree=2, num_marginals=None)
    model_marginals = {c: rng.uniform(0, 3, base.size(c)) for c in wl.candidates}
    all_records = list(itertools.product(range(2), range(3), range(2)))
    neighbours = [_tiny_table(np.vstack([base.values, r])) for r in all_records]
    neighbours += [base.subset(np.delete(np.arange(base.n), i)) for i in range(base.n)]
    worst = 0.0
    for c, w in zip(wl.candidates, wl.weights):
        u = aim_score(base.marginal(c), model_marginals[c], 2.0, w)
        for nb in neighbours:
            change = abs(aim_score(nb.marginal(c), model_marginals[c], 2.0, w) - u)
            assert change <= w + 1e-9
            worst = max(worst, change / w)
    assert worst == pytest.approx(1.0)  # the bound is attained
    assert score_sensitivity(wl.weights) == max(wl.weights)


def test_score_from_l1_is_the_shared_formula():
    x, m = np.array([3, 0, 5]), np.array([1.0, 1.0, 1.0])
    l1 = np.abs(x - m).sum()
    assert aim_score(x, m, 1.5, 2.0) == pytest.approx(
        2.0 * (l1 - math.sqrt(2 / math.pi) * 1.5 * 3))
    np.testing.assert_allclose(aim_score_from_l1(np.array([l1, 0.0]), 1.5, np.array([3, 3]), 2.0),
                               [aim_score(x, m, 1.5, 2.0), 2.0 * -math.sqrt(2 / math.pi) * 4.5])


def test_adult_workload_counts(adult_dir):
    domain = json.loads((adult_dir / "adult-domain.json").read_text())
    wl = make_workload(domain)
    assert wl.summary() == {"workload_marginals": 64, "candidates": 161, "cells": 2_870_490,
                            "candidates_1way": 14, "candidates_2way": 83,
                            "candidates_3way": 64}
    # w_r = Σ_s |r ∩ s|: a one-way's weight is the number of workload marginals holding it.
    a = wl.candidates[0]
    assert wl.weight(a) == sum(1 for s in wl.marginals if a[0] in s)


def test_workload_is_seeded_and_rejects_unknown_attributes():
    dom = {str(i): 3 for i in range(8)}
    assert make_workload(dom, num_marginals=10, seed=5) == make_workload(dom, num_marginals=10,
                                                                         seed=5)
    assert make_workload(dom, num_marginals=10, seed=5) != make_workload(dom, num_marginals=10,
                                                                         seed=6)
    with pytest.raises(ValueError, match="unknown attributes"):
        make_workload(dom, marginals=[("0", "zz")])
