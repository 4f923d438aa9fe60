"""The numpy fitter: junction-tree marginals, mirror descent against ``mbi``, the stopping
rule, warm starts and the sampler."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from flaimsim.mechanisms.data import Table
from flaimsim.mechanisms.junction import JunctionTree, to_canonical
from flaimsim.mechanisms.mbi_setup import mbi
from flaimsim.mechanisms.mirror_descent import FitSettings, MirrorDescent, expand
from flaimsim.mechanisms.model import GraphicalModel, Measurement, merge_by_clique

COLS, SIZES = ("a", "b", "c", "d", "e"), (3, 4, 2, 5, 3)


@pytest.fixture(scope="module")
def table() -> Table:
    rng = np.random.default_rng(0)
    # correlated columns so the two-way fits have something to find
    a = rng.integers(0, 3, 800)
    b = (a + rng.integers(0, 2, 800)) % 4
    c = (b > 1).astype(int) ^ (rng.random(800) < 0.2)
    d = rng.integers(0, 5, 800)
    e = (d + c) % 3
    return Table(COLS, SIZES, np.stack([a, b, c, d, e], axis=1))


def noisy(table: Table, cliques, sigma: float, seed: int) -> list[Measurement]:
    rng = np.random.default_rng(seed)
    return [Measurement(c, table.marginal(c) + rng.normal(0, sigma, table.size(c)), sigma)
            for c in cliques]


ONE_WAYS = [(a,) for a in COLS]
PAIRS = [("b", "a"), ("b", "c"), ("e", "d")]


def brute_marginal(domain: mbi.Domain, cliques, thetas, target) -> np.ndarray:
    """P(target) by enumerating the full domain (tiny domains only), domain-ordered."""
    logp = np.zeros(domain.shape)
    attrs = list(domain.attributes)
    for c, t in zip(cliques, thetas):
        shape = [domain[a] if a in c else 1 for a in attrs]
        logp = logp + t.reshape(shape)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    return p.sum(axis=tuple(i for i, a in enumerate(attrs) if a not in target))


@pytest.mark.parametrize("cliques", [[("a", "b"), ("b", "c"), ("c", "d"), ("d", "e")],
                                     [("a", "b", "c"), ("c", "d"), ("a", "e"), ("b", "d")],
                                     [("a",), ("b", "e")]])
def test_junction_tree_marginals_are_exact(cliques):
    domain = mbi.Domain(COLS, SIZES)
    tree = JunctionTree(domain, cliques)
    rng = np.random.default_rng(1)
    thetas = [rng.normal(0, 3, domain.project(c).shape) for c in tree.cliques]
    nodes = tree.node_marginals(thetas, 10.0)
    for target in itertools.chain(tree.nodes, [("a",), ("d", "e")]):
        held = tree.project(nodes, target)
        if held is None:
            continue
        np.testing.assert_allclose(held / 10.0, brute_marginal(domain, tree.cliques, thetas,
                                                               target), atol=1e-12)


def test_lipschitz_and_total_match_mbi(table):
    meas = merge_by_clique(noisy(table, ONE_WAYS + PAIRS, 3.0, 2))
    domain = mbi.Domain(COLS, SIZES)
    problem = MirrorDescent(domain, [(m.clique, m.values, m.sigma) for m in meas])
    lin = [m.to_mbi() for m in meas]
    ref = mbi.marginal_loss.from_linear_measurements(lin, domain)
    assert problem.lipschitz == pytest.approx(ref.lipschitz, rel=1e-12)
    assert [tuple(c) for c in ref.cliques] == problem.spelled
    total = problem.run(FitSettings(0)).total
    assert total == pytest.approx(mbi.estimation.minimum_variance_unbiased_total(lin))


def marginal_gap(a: GraphicalModel, b: GraphicalModel, cliques) -> float:
    return max(np.abs(a.marginal(c) - b.marginal(c)).max() for c in cliques) / a.total


def test_numpy_fit_matches_mbi_cold_and_warm(table):
    """Same loss, step rule and warm start: the two fitters give the same model (to rounding
    while the Armijo decisions agree; 50 iterations per fit keeps them in step)."""
    first = noisy(table, ONE_WAYS + PAIRS[:1], 3.0, 3)
    later = first + noisy(table, PAIRS[1:], 3.0, 4)
    fits = {}
    for fitter in ("numpy", "mbi"):
        model = GraphicalModel.for_table(table, fitter=fitter)
        model.fit(first, iters=50)
        cold = GraphicalModel(model.domain, fitter=fitter)
        cold.result = model.result
        model.fit(later, iters=50)
        fits[fitter] = (cold, model)
    check = ONE_WAYS + PAIRS + [("a", "c", "e")]
    assert marginal_gap(fits["numpy"][0], fits["mbi"][0], check[:6]) < 1e-9
    assert marginal_gap(fits["numpy"][1], fits["mbi"][1], check) < 1e-9
    assert fits["numpy"][1].cliques == fits["mbi"][1].cliques


def test_fit_reduces_the_weighted_squared_error(table):
    meas = noisy(table, ONE_WAYS + PAIRS, 3.0, 5)
    model = GraphicalModel.for_table(table).fit(meas, iters=300)
    losses = model.result.losses
    assert losses[-1] < 0.01 * losses[0]
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:]))  # Armijo: never worse
    # the reported loss is ½ Σ ‖M_q(μ) − y‖² / σ²
    direct = sum(0.5 * np.sum((model.marginal(m.clique) - m.values) ** 2) / m.sigma ** 2
                 for m in merge_by_clique(meas))
    assert model.result.loss == pytest.approx(direct, rel=1e-10)


@pytest.mark.parametrize("rule, tol", [("moves", 1e-3), ("loss", 1e-5)])
def test_stopping_rule_stops_early_at_the_same_quality(table, rule, tol):
    meas = noisy(table, ONE_WAYS + PAIRS, 3.0, 6)
    long = GraphicalModel.for_table(table).fit(meas, iters=3000)
    domain = long.domain
    problem = MirrorDescent(domain, [(m.clique, m.values, m.sigma)
                                     for m in merge_by_clique(meas)])
    early = GraphicalModel(domain)
    early.result = problem.run(FitSettings(3000, tol, rule=rule))
    assert early.result.iterations < 3000
    assert early.result.iterations % 25 == 0
    assert early.result.loss == pytest.approx(long.result.loss, rel=0.02)
    assert marginal_gap(early, long, PAIRS) < 0.01
    with pytest.raises(ValueError, match="tolerance"):
        FitSettings(10, tol=-1.0)
    with pytest.raises(ValueError, match="rule"):
        FitSettings(10, tol=1.0, rule="gap")


def test_warm_start_continues_from_the_previous_model(table):
    meas = noisy(table, ONE_WAYS + PAIRS[:1], 3.0, 7)
    model = GraphicalModel.for_table(table).fit(meas, iters=200)
    previous = model.result.loss
    model.fit(meas, iters=5)
    assert model.result.losses[0] == pytest.approx(previous, rel=1e-12)
    # a new clique: the old θ carried into the bigger clique set is the same distribution
    domain = model.domain
    old = dict(zip(model.tree.cliques, model.tree_potentials()))
    bigger = [("a", "b", "c"), ("d",), ("e",)]
    tree = JunctionTree(domain, bigger)
    nodes = tree.node_marginals(expand(domain, old, tree.cliques), model.total)
    for c in [("a", "b"), ("c",), ("d",)]:
        np.testing.assert_allclose(tree.project(nodes, c).ravel(), model.marginal(c),
                                   rtol=1e-10)
    more = meas + noisy(table, PAIRS[1:], 3.0, 8)
    warm = GraphicalModel.for_table(table)
    warm.result = model.result
    warm.fit(more, iters=100)
    cold = GraphicalModel.for_table(table).fit(more, iters=100)
    assert warm.result.losses[0] < cold.result.losses[0]
    assert warm.result.loss < cold.result.loss


def test_synthetic_records_follow_the_model_and_are_seeded(table):
    model = GraphicalModel.for_table(table).fit(noisy(table, ONE_WAYS + PAIRS, 2.0, 9),
                                                iters=300)
    synth = model.synthetic(4000, seed=5)
    assert synth.n == 4000 and synth.columns == COLS
    np.testing.assert_array_equal(synth.values, model.synthetic(4000, seed=5).values)
    assert not np.array_equal(synth.values, model.synthetic(4000, seed=6).values)
    for c in ONE_WAYS + PAIRS:
        model_p = model.marginal(c) / model.total
        assert np.abs(synth.marginal(c) / synth.n - model_p).sum() < 0.03
    # the first generated column is a rounding of its marginal: within one record per cell
    first = model.tree.elimination_order[-1]
    np.testing.assert_allclose(synth.marginal((first,)),
                               model.marginal((first,)) * 4000 / model.total, atol=1.0)


def test_bad_inputs_are_named():
    domain = mbi.Domain(("x",), (2,))
    with pytest.raises(ValueError, match="σ"):
        MirrorDescent(domain, [(("x",), np.ones(2), 0.0)])
    with pytest.raises(ValueError, match="without measurements"):
        MirrorDescent(domain, [])
    with pytest.raises(ValueError, match="unknown fitter"):
        GraphicalModel(domain, fitter="lbfgs")
    with pytest.raises(ValueError, match="synthetic row"):
        t = Table(("x",), (2,), np.zeros((3, 1), dtype=int))
        GraphicalModel.for_table(t).fit([Measurement(("x",), np.array([2.0, 1.0]), 1.0)],
                                        iters=5).synthetic(0, seed=1)


def test_canonical_layout_round_trip():
    domain = mbi.Domain(COLS, SIZES)
    values = np.arange(4 * 3, dtype=float)  # over ("b", "a"), C order
    table = to_canonical(domain, ("b", "a"), values)
    assert table.shape == (3, 4) and table[2, 1] == values.reshape(4, 3)[1, 2]


def test_numpy_runs_never_import_jax():
    """A whole central AIM run with the numpy fitter loads mbi's JAX-free modules only; the
    full package comes on demand with the same Domain class."""
    import subprocess
    import sys

    code = """
import sys
from flaimsim.protocols.config import RunConfig
from flaimsim.protocols.prepare import prepare
from flaimsim.protocols.central import run_central
config = RunConfig(protocol="central", dataset="synthfs", rounds=2, clients=4,
                   synthfs_features=4, synthfs_records=50, synthfs_bins=4,
                   workload_marginals=3, iters_round=20, iters_final=40)
run_central(config, prepare(config))
assert "jax" not in sys.modules and "mbi.estimation" not in sys.modules, sorted(
    m for m in sys.modules if m.startswith(("jax", "mbi")))
from flaimsim.mechanisms import mbi_setup
import mbi
assert mbi.Dataset is not None and "jax" in sys.modules    # the init ran on first use
assert mbi.Domain is mbi_setup.Domain and mbi.junction_tree is mbi_setup.junction_tree
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_contract_handles_more_attributes_than_einsum_labels():
    """np.einsum numbers labels 0..51; Covtype has 55 attributes (found by the fetch test)."""
    from flaimsim.mechanisms.junction import contract
    from flaimsim.mechanisms.mbi_setup import Domain

    rng = np.random.default_rng(0)
    names = [f"a{i}" for i in range(60)]
    domain = Domain(names, [2] * 60)
    factors = [(rng.uniform(0.5, 2.0, 2), [a]) for a in names]
    factors.append((rng.uniform(0.5, 2.0, (2, 2)), ["a0", "a59"]))
    value, log_scale = contract(domain, factors, ())
    pair = factors[-1][0] * factors[0][0][:, None] * factors[59][0][None, :]
    expected = np.log(pair.sum()) + sum(np.log(f.sum()) for f, _ in factors[1:59])
    assert np.log(float(value)) + log_scale == pytest.approx(expected, rel=1e-12)
