"""The compiled loss and gradient equal the numpy path's bit for bit, and a fit run with them
is the fit run without."""

from __future__ import annotations

import numpy as np
import pytest

from flaimsim.mechanisms import compiled_loss, compiled_pass
from flaimsim.mechanisms.mbi_setup import mbi
from flaimsim.mechanisms.mirror_descent import FitSettings, MirrorDescent

pytestmark = pytest.mark.skipif(compiled_pass.njit is None, reason="numba not installed")


def identical(a, b) -> bool:
    return all(x.shape == y.shape and np.array_equal(np.ascontiguousarray(x).view(np.uint64),
                                                      np.ascontiguousarray(y).view(np.uint64))
               for x, y in zip(a, b, strict=True))


def problem(seed: int) -> MirrorDescent:
    """Random measurements on a random domain: long axes (runs past 8 and 128 cells), several
    measurements read from one clique, some read whole (no axes summed)."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(4, 7))
    names = tuple(f"x{i}" for i in range(k))
    domain = mbi.Domain(names, [int(rng.choice([2, 3, 7, 16, 150])) for _ in range(k)])
    measured = []
    for _ in range(int(rng.integers(3, 7))):
        clique = tuple(rng.choice(names, size=int(rng.integers(2, 4)), replace=False))
        measured.append((clique, rng.normal(30, 9, domain.size(clique)),
                         float(rng.uniform(0.5, 4))))
        for sub in (clique[:1], clique[1:]):   # read from the larger clique
            measured.append((sub, rng.normal(60, 9, domain.size(sub)), float(rng.uniform(1, 3))))
    return MirrorDescent(domain, measured)


@pytest.mark.parametrize("seed", range(10))
def test_compiled_loss_and_gradient_are_the_numpy_paths(seed):
    fit = problem(seed)
    fast = compiled_loss.CompiledLoss.for_fit(fit)
    assert fast is not None
    rng = np.random.default_rng(50 + seed)
    thetas = [rng.normal(0, 1, t.shape) for t in fast.table_views(np.empty(fast.cells))]
    flat = np.concatenate([t.ravel() for t in thetas])
    nodes = fit.tree.node_marginals(thetas, 4321.0)
    mu = fit.tree.clique_marginals(nodes)
    loss, grad = fit.loss_and_gradient(mu)
    grad_flat = np.full(fast.cells, np.nan)
    got_nodes, got_mu, got_loss = fast.evaluate(flat, 4321.0, grad_flat)
    assert identical(got_nodes, nodes)
    assert identical(fast.table_views(got_mu), mu)
    assert got_loss == loss
    assert identical(fast.table_views(grad_flat), grad)


@pytest.mark.parametrize("tol", [None, 5.0])
def test_a_fit_with_the_compiled_loss_is_the_fit_without(monkeypatch, tol):
    """Accepted and rejected Armijo steps, from a warm start, with and without the early stop
    (its movement reads μ through the compiled loss's views)."""
    fit = problem(3)
    rng = np.random.default_rng(9)
    warm = {fit.cliques[0]: rng.normal(0, 1, fit.domain.project(fit.cliques[0]).shape)}
    settings = FitSettings(300, tol=tol, check_every=10)
    fast = fit.run(settings, warm, 2000.0)
    monkeypatch.setattr(compiled_loss.CompiledLoss, "for_fit", classmethod(lambda cls, f: None))
    plain = fit.run(settings, warm, 2000.0)
    assert identical(fast.potentials, plain.potentials)
    assert identical(fast.node_marginals, plain.node_marginals)
    assert (fast.loss, fast.step, fast.iterations, fast.losses) == (
        plain.loss, plain.step, plain.iterations, plain.losses)
    if tol is not None:
        assert fast.iterations < 300   # the early stop ran


def test_no_compiled_pass_means_no_compiled_loss(monkeypatch):
    fit = problem(1)
    monkeypatch.setattr(compiled_pass, "MAX_NODE_CELLS", 1)
    fresh = MirrorDescent(fit.domain, [(o.clique, o.values, o.weight ** -0.5)
                                       for o in fit.observations])
    assert compiled_loss.CompiledLoss.for_fit(fresh) is None
