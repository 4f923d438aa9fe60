"""Graphical-model adapter, central AIM end to end, and the CLI's run command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flaimsim.bench.cli import main
from flaimsim.mechanisms.data import Table
from flaimsim.mechanisms.model import GraphicalModel, Measurement
from flaimsim.protocols.central import run_central
from flaimsim.protocols.config import ConfigError, RunConfig
from flaimsim.protocols.prepare import prepare

SMALL = dict(dataset="synthfs", clients=8, synthfs_features=5, synthfs_records=60, max_bins=6,
             workload_marginals=4, rounds=2, iters_round=30, iters_final=60, seed=3)
WALL = ("wall_seconds", "select_s", "estimate_s", "generate_s", "evaluate_s")


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    t = Table(("a", "b", "c", "d"), (3, 4, 2, 5), rng.integers(0, [3, 4, 2, 5], size=(500, 4)))
    meas = [Measurement((a,), t.marginal((a,)) + rng.normal(0, 2, t.size((a,))), 2.0)
            for a in t.columns]
    meas += [Measurement(("a", "b"), t.marginal(("a", "b")) + rng.normal(0, 2, 12), 2.0),
             Measurement(("b", "c"), t.marginal(("b", "c")) + rng.normal(0, 2, 8), 2.0)]
    return t, GraphicalModel.for_table(t).fit(meas, iters=200)


@pytest.mark.parametrize("clique", [("a",), ("a", "b"), ("a", "c"), ("a", "c", "d"),
                                    ("d", "b", "a")])
def test_fast_marginals_match_mbi_projection(fitted, clique):
    _, model = fitted
    ref = np.asarray(model.fitted.project(clique).datavector(flatten=True))
    np.testing.assert_allclose(model.marginal(clique), ref, rtol=1e-8, atol=1e-8)


def test_nll_is_a_normalised_log_likelihood(fitted):
    t, model = fitted
    # exp(-NLL per record) over every possible record must sum to 1.
    every = np.array(np.meshgrid(*[np.arange(s) for s in t.sizes], indexing="ij")).reshape(4, -1).T
    full = Table(t.columns, t.sizes, every)
    logp = np.array([-model.nll(full.subset(np.array([i]))) for i in range(full.n)])
    assert np.exp(logp).sum() == pytest.approx(1.0, rel=1e-9)


def test_size_filter_and_clique_bytes(fitted):
    _, model = fitted
    assert model.in_model(("a",)) and model.in_model(("b", "a"))
    assert not model.in_model(("a", "d"))
    assert model.size_mb([("a", "c", "d")]) > model.size_mb()
    assert model.clique_table_bytes() == 8 * (12 + 8 + 5)  # maximal cliques ab, bc, d


def test_central_run_spends_budget_and_is_reproducible():
    cfg = RunConfig(**SMALL)
    data = prepare(cfg)
    a, b = run_central(cfg, data), run_central(cfg, data)
    ra = {k: v for k, v in a.record.items() if k not in WALL}
    rb = {k: v for k, v in b.record.items() if k not in WALL}
    assert ra == rb
    assert 0 < ra["rho_spent"] <= ra["rho_budget"] * (1 + 1e-9)
    assert ra["rho_spent"] == pytest.approx(ra["rho_budget"])
    assert ra["measurements"] == 2 + 5  # T selections + d1 one-ways
    assert 0 <= ra["l1_workload_error"] <= 2 and ra["bytes_source"] is None
    assert len(a.loop.privacy.spends) == 2 * 2 + 5
    assert not a.ledger.rows


def test_cli_run_writes_config_and_result(tmp_path, capsys):
    args = ["run", "--protocol", "central", "--dataset", "synthfs", "--clients", "8",
            "--rounds", "2", "--seed", "3", "--max-bins", "6", "--workload-marginals", "4",
            "--iters-round", "30", "--iters-final", "60", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "central" in out and "L1 W+" in out
    result = json.loads((tmp_path / "result.json").read_text())
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["rounds"] == 2 and config["seed"] == 3
    rec = result["results"][0]
    for key in ("protocol", "dataset", "epsilon", "delta", "rounds", "seed", "l1_workload_error",
                "l1_workload_error_3way", "nll", "auc", "rho_budget", "rho_spent",
                "wall_seconds", "client_bytes_sent_mean", "client_bytes_received_mean",
                "server_bytes_sent_mean", "server_bytes_received_mean", "bytes_source"):
        assert key in rec
    assert main(args[:-1] + [str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "result.json").read_text())["results"][0]
    assert {k: v for k, v in again.items() if k not in WALL} == {
        k: v for k, v in rec.items() if k not in WALL}


def test_bad_configuration_is_named():
    with pytest.raises(ConfigError, match="epsilon"):
        RunConfig(epsilon=0)
    with pytest.raises(ConfigError, match="adaptive"):
        RunConfig(protocol="distaim", mode="adaptive")
    assert main(["run", "--protocol", "central", "--rounds", "0"]) == 2


def test_adaptive_mode_spends_exactly_the_budget():
    cfg = RunConfig(**{**SMALL, "mode": "adaptive", "iters_round": 20, "iters_final": 30,
                       "epsilon": 0.3})
    res = run_central(cfg)
    rec = res.record
    assert rec["rho_spent"] == pytest.approx(rec["rho_budget"], rel=1e-9)
    assert rec["rounds_run"] >= 1
    # the last round spends whatever was left: one EM and one Gaussian per round
    kinds = [s.mechanism for s in res.loop.privacy.spends]
    assert kinds.count("exponential") == rec["rounds_run"]


def sharp_chain_model(n: int, off_peak: float, seed: int) -> tuple[GraphicalModel, Table,
                                                                     float]:
    """A chain of n binary attributes whose pairwise factors each prefer (0, 1), e^off_peak
    elsewhere: neighbours disagree, so Z is tiny. Returns the model, its table and the
    brute-force log Z over all 2^n states."""
    from scipy.special import logsumexp

    rng = np.random.default_rng(seed)
    cols = tuple(f"a{i}" for i in range(n))
    t = Table(cols, (2,) * n, rng.integers(0, 2, size=(100, n)))
    pairs = list(zip(cols, cols[1:]))
    model = GraphicalModel.for_table(t).fit(
        [Measurement(p, t.marginal(p).astype(float), 1.0) for p in pairs], iters=10)
    sharp = np.full((2, 2), off_peak)
    sharp[0, 1] = 0.0
    model._log_tables = {p: sharp for p in pairs}
    states = np.array(np.meshgrid(*[[0, 1]] * n, indexing="ij")).reshape(n, -1)
    return model, t, float(logsumexp(sum(sharp[states[i], states[i + 1]]
                                         for i in range(n - 1))))


def test_sharp_many_clique_model_does_not_underflow():
    """Z = Π of many tiny factors underflows in one shot; the pairwise rescaling copes."""
    model, _, brute = sharp_chain_model(12, -300.0, seed=5)  # Z ≈ e^(−300·5)
    assert brute < -1000  # exp(brute) is 0.0 in float64
    assert model.log_partition() == pytest.approx(brute, rel=1e-12)
    m = model.marginal(("a0", "a11"))
    assert np.all(np.isfinite(m)) and m.sum() == pytest.approx(model.total)


def test_repeated_measurements_merge_exactly():
    from flaimsim.mechanisms.model import merge_by_clique

    a = Measurement(("x",), np.array([1.0, 3.0]), 1.0)
    b = Measurement(("x",), np.array([3.0, 5.0]), 2.0)
    (m,) = merge_by_clique([a, b])
    np.testing.assert_allclose(m.values, [(1 + 3 / 4) / 1.25, (3 + 5 / 4) / 1.25])
    assert m.sigma == pytest.approx(1.25 ** -0.5)
    # Same loss up to a constant: ‖y1−μ‖²/σ1² + ‖y2−μ‖²/σ2² − ‖ȳ−μ‖²/σ̄² does not depend on μ.
    losses = [sum(((x.values - mu) ** 2).sum() / x.sigma ** 2 for x in (a, b))
              - ((m.values - mu) ** 2).sum() / m.sigma ** 2
              for mu in (np.zeros(2), np.array([2.0, 7.0]))]
    assert losses[0] == pytest.approx(losses[1])


@pytest.mark.parametrize("off_peak", [-300.0, -800.0])
def test_log_partition_survives_a_product_that_underflows_in_one_step(off_peak):
    """At −800 every term of one pairwise product is below float64's range, so the rescaled
    contraction returns 0 (``math domain error`` in NaiveFLAIM on Marketing at T = 192); the
    log-space messages give log Z, equal to brute force, and equal the contraction where it
    works (−300)."""
    model, t, brute = sharp_chain_model(10, off_peak, seed=6)
    assert model.log_partition() == pytest.approx(brute, rel=1e-12)
    assert model._log_partition_by_messages() == pytest.approx(brute, rel=1e-12)
    assert np.isfinite(model.nll(t))


def test_log_partition_by_messages_sums_over_the_parts_of_a_forest():
    """Cliques in two parts with no attribute in common: no message joins them, so one
    node's belief gives its own part's log Z only (AugFLAIM on Marketing at T = 192 got
    NLL ~3,300 nats from that: log Z 2.1 instead of ~-3,200). Checked against brute force."""
    import itertools

    from scipy.special import logsumexp

    rng = np.random.default_rng(9)
    cols = tuple(f"a{i}" for i in range(6))
    t = Table(cols, (2, 3, 2, 2, 3, 2), rng.integers(0, 2, size=(150, 6)))
    cliques = [("a0", "a1"), ("a1", "a2"), ("a3", "a4"), ("a4", "a5")]
    model = GraphicalModel.for_table(t).fit(
        [Measurement(c, t.marginal(c).astype(float), 1.0) for c in cliques], iters=10)
    assert len(model.tree.component_roots()) == 2
    tables = {c: rng.normal(-400, 50, model.domain.project(c).shape) for c in model.tree.cliques}
    model._log_tables = tables
    states = np.array(list(itertools.product(*[range(k) for k in t.sizes])))
    logp = sum(th[tuple(states[:, cols.index(a)] for a in c)] for c, th in tables.items())
    assert model._log_partition_by_messages() == pytest.approx(float(logsumexp(logp)),
                                                               rel=1e-12)


def brute_pair_marginal(model: GraphicalModel, t: Table, a: str, b: str) -> np.ndarray:
    """P(a, b) under the model's potentials, by enumerating the whole (tiny) domain."""
    import itertools

    states = np.array(list(itertools.product(*[range(k) for k in t.sizes])))
    column = {name: states[:, i] for i, name in enumerate(t.columns)}
    logp = sum(th[tuple(column[x] for x in c)]
               for c, th in zip(model.tree.cliques, model.result.potentials))
    p = np.exp(logp - logp.max())
    brute = np.zeros((column[a].max() + 1, column[b].max() + 1))
    np.add.at(brute, (column[a], column[b]), p / p.sum())
    return brute


def test_a_marginal_whose_contraction_underflows_comes_from_log_space_messages(monkeypatch):
    """A candidate's marginal outside every junction-tree node is contracted from node
    marginals; when that comes out all zeros (NaiveFLAIM on Marketing at T = 160: "the
    model's marginal on ('contact', 'day') cannot be computed"), log-space messages on the
    tree with the candidate added give it. Checked against brute force."""
    from flaimsim.mechanisms.junction import JunctionTree

    rng = np.random.default_rng(8)
    cols = tuple(f"a{i}" for i in range(7))
    t = Table(cols, (2, 3, 2, 2, 3, 2, 2), rng.integers(0, 2, size=(200, 7)))
    pairs = list(zip(cols, cols[1:]))
    model = GraphicalModel.for_table(t).fit(
        [Measurement(p, t.marginal(p).astype(float), 1.0) for p in pairs], iters=10)
    model.result.potentials = [rng.normal(0, 3, model.domain.project(c).shape)
                               for c in model.tree.cliques]
    model.result.node_marginals = model.tree.node_marginals(model.result.potentials,
                                                            model.total)
    brute = brute_pair_marginal(model, t, "a0", "a6")
    plain = model.marginal(("a0", "a6"))   # the contraction works here
    np.testing.assert_allclose(plain / plain.sum(), brute.ravel(), rtol=1e-9)
    monkeypatch.setattr(JunctionTree, "spanning_marginal",
                        lambda self, nodes, clique, *_: np.zeros((2, 2)))  # as if underflowed
    m = model.marginal(("a0", "a6"))
    np.testing.assert_allclose(m / model.total, brute.ravel(), rtol=1e-9)


def test_a_separator_mass_that_overflows_its_inverse_falls_back_quietly():
    """A separator value with a subnormal mass (seen on Census) makes 1/μ overflow to inf in
    the node-marginal contraction; the marginal is then recomputed by log-space messages,
    without a RuntimeWarning in the log, and matches brute force."""
    import warnings

    rng = np.random.default_rng(9)
    cols = tuple(f"a{i}" for i in range(5))
    t = Table(cols, (2, 3, 2, 2, 2), rng.integers(0, 2, size=(200, 5)))
    model = GraphicalModel.for_table(t).fit(
        [Measurement(p, t.marginal(p).astype(float), 1.0) for p in zip(cols, cols[1:])],
        iters=10)
    brute = brute_pair_marginal(model, t, "a0", "a4")
    for k, node in enumerate(model.tree.nodes):   # a1 = 0 all but impossible in every node
        if "a1" in node:
            model.result.node_marginals[k][(slice(None),) * node.index("a1") + (0,)] = 1e-321
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = model.tree.spanning_marginal(model.result.node_marginals, ("a0", "a4"))
        m = model.marginal(("a0", "a4"))
    assert not np.isfinite(raw.sum())                # the contraction did overflow
    np.testing.assert_allclose(m / model.total, brute.ravel(), rtol=1e-9)


def test_candidate_marginals_share_separators_within_a_fit_only():
    """The round's candidate marginals reuse the fitted tree's separator inverses and
    contraction steps: each is the uncached contraction's, bit for bit, and a refit starts
    fresh caches (stale ones would give the old fit's tables)."""
    from flaimsim.mechanisms.junction import canonical, from_canonical

    rng = np.random.default_rng(4)
    cols = tuple(f"a{i}" for i in range(5))
    t = Table(cols, (2, 3, 2, 4, 2), rng.integers(0, 2, size=(300, 5)))
    model = GraphicalModel.for_table(t)
    pairs = [("a0", "a4"), ("a0", "a3"), ("a1", "a4"), ("a0", "a2", "a4")]
    chain = [p for p in zip(cols, cols[1:])]
    # a refit of the same cliques (new noise) keeps the tree: stale caches would be used
    for measured in (chain, chain, [p for p in zip(cols, cols[2:])]):
        model.fit([Measurement(p, t.marginal(p).astype(float)
                               + rng.normal(0, 1, t.marginal(p).size), 1.0) for p in measured],
                  iters=20)
        for clique in pairs:
            if model.tree.node_of(canonical(model.domain, clique)) is not None:
                continue
            fresh = model.tree.spanning_marginal(model.result.node_marginals, clique)
            fresh = from_canonical(model.domain, clique, fresh)
            want = (fresh / float(fresh.sum()) * model.total).ravel()
            for _ in range(2):   # the second time from cached steps only
                assert np.array_equal(model.marginal(clique).view(np.uint64),
                                      want.view(np.uint64))
        assert model._separators and model._steps.entries   # the caches were used
