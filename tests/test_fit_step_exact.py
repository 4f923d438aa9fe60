"""The fitter's hot path (direct ufunc calls, in-place updates, no zero-initialised
gradients) gives the values of the plain numpy expressions it replaced, bit for bit: the
speed-up must not move a single fit (issue 26: same results to the last digit)."""

from __future__ import annotations

import numpy as np
import pytest

from flaimsim.mechanisms import junction
from flaimsim.mechanisms.junction import JunctionTree
from flaimsim.mechanisms.mbi_setup import mbi
from flaimsim.mechanisms.mirror_descent import MirrorDescent

COLS, SIZES = ("a", "b", "c", "d", "e", "f"), (3, 4, 2, 5, 3, 2)
CLIQUES = [("a", "b", "c"), ("c", "d"), ("d", "e", "f"), ("a", "e"), ("b",)]


def plain_logsumexp(x, axes):
    peak = x.max(axis=axes, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    return np.log(np.exp(x - peak).sum(axis=axes)) + peak.reshape(
        [s for i, s in enumerate(x.shape) if i not in axes])


def plain_node_marginals(tree: JunctionTree, potentials, total):
    beliefs = [np.zeros(s) for s in tree.node_shapes]
    for k, theta in enumerate(potentials):
        beliefs[tree.home[k]] = beliefs[tree.home[k]] + theta.reshape(tree.embed[k])
    sent = {}
    for m in tree.messages:
        back = sent.get((m.target, m.source))
        tau = beliefs[m.source] if back is None else (
            beliefs[m.source] - back.reshape(m.shape_in_source))
        msg = plain_logsumexp(tau, m.axes)
        sent[(m.source, m.target)] = msg
        beliefs[m.target] = beliefs[m.target] + msg.reshape(m.shape_in_target)
    out = []
    for b in beliefs:
        p = np.exp(b - b.max())
        out.append(p * (total / p.sum()))
    return out


def plain_loss_and_gradient(fit: MirrorDescent, mu):
    loss, grad = 0.0, [np.zeros_like(m) for m in mu]
    for o, p, axes, shape in zip(fit.observations, fit.parents, fit.read_axes,
                                 fit.grad_shapes):
        diff = (mu[p].sum(axis=axes) if axes else mu[p]) - o.values
        loss += 0.5 * o.weight * float(np.vdot(diff, diff))
        grad[p] = grad[p] + (o.weight * diff).reshape(shape)
    return loss, grad


def same(a, b) -> bool:
    return all(x.shape == y.shape and np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("structural_zero", [False, True])
def test_junction_marginals_equal_the_plain_expressions_bit_for_bit(structural_zero):
    domain = mbi.Domain(COLS, SIZES)
    tree = JunctionTree(domain, CLIQUES)
    rng = np.random.default_rng(3)
    thetas = [rng.normal(0, 4, domain.project(c).shape) for c in tree.cliques]
    if structural_zero:  # a −inf potential: the shift falls back to 0 where the max is −inf
        thetas[0][0] = -np.inf
    nodes = tree.node_marginals(thetas, 977.0)
    assert same(nodes, plain_node_marginals(tree, thetas, 977.0))
    assert same(tree.clique_marginals(nodes),
                [n if not ax else n.sum(axis=ax) for n, ax in
                 zip([nodes[h] for h in tree.home], tree.clique_axes)])
    x = rng.normal(0, 3, (4, 5, 3))
    x[1, :, :] = -np.inf
    for axes in [(0,), (1, 2), (0, 2)]:
        assert np.array_equal(junction.logsumexp(x.copy(), axes), plain_logsumexp(x, axes),
                              equal_nan=True)


def test_loss_and_gradient_equal_the_plain_expressions_bit_for_bit():
    domain = mbi.Domain(COLS, SIZES)
    rng = np.random.default_rng(4)
    measured = [(c, rng.normal(50, 9, domain.size(c)), s) for c, s in
                zip(CLIQUES + [("a",), ("d",), ("e", "d")], [1.5, 2.0, 3.0, 1.0, 2.5, 0.7,
                                                             4.0, 1.1])]
    fit = MirrorDescent(domain, measured)
    nodes = fit.tree.node_marginals([rng.normal(0, 1, domain.project(c).shape)
                                     for c in fit.cliques], 2000.0)
    mu = fit.tree.clique_marginals(nodes)
    loss, grad = fit.loss_and_gradient(mu)
    plain_loss, plain_grad = plain_loss_and_gradient(fit, mu)
    assert loss == plain_loss
    assert same(grad, plain_grad)


def plain_run(fit: MirrorDescent, iters: int, warm, total: float):
    """The Armijo loop with one list of arrays per iterate (no reused flat buffers)."""
    from flaimsim.mechanisms.mirror_descent import expand
    theta = expand(fit.domain, warm, fit.cliques)
    alpha = 2.0 / (fit.lipschitz * total)
    nodes, mu, loss, grad = fit.evaluate(theta, total)
    rejected = 0
    for _ in range(iters):
        trial = [t - alpha * g for t, g in zip(theta, grad)]
        nodes2, mu2, loss2, grad2 = fit.evaluate(trial, total)
        expected = 0.5 * alpha * sum(float(np.vdot(g, m - m2))
                                     for g, m, m2 in zip(grad, mu, mu2))
        if loss - loss2 >= expected:
            theta, nodes, mu, loss, grad = trial, nodes2, mu2, loss2, grad2
            alpha *= 1.01
        else:
            alpha *= 0.5
            rejected += 1
    return theta, nodes, loss, alpha, rejected


def test_fit_with_flat_buffers_is_the_plain_armijo_loop_bit_for_bit():
    """The fit keeps θ and ∇L in two reused flat buffers (θ − α∇L as two whole-buffer
    operations); its iterates are those of the plain loop, accepted and rejected steps alike,
    from a warm start, and its gradient written into buffers is the list one."""
    from flaimsim.mechanisms.mirror_descent import FitSettings
    domain = mbi.Domain(COLS, SIZES)
    rng = np.random.default_rng(6)
    measured = [(c, rng.normal(40, 12, domain.size(c)), s) for c, s in
                zip(CLIQUES + [("a",), ("d", "e")], [0.3, 2.0, 0.5, 1.0, 2.5, 0.7, 1.1])]
    fit = MirrorDescent(domain, measured)
    warm = {fit.cliques[0]: rng.normal(0, 1, domain.project(fit.cliques[0]).shape)}
    theta, nodes, loss, alpha, rejected = plain_run(fit, 400, warm, 1500.0)
    assert 0 < rejected < 400   # both branches ran
    got = fit.run(FitSettings(400), warm, 1500.0)
    assert same(got.potentials, theta) and same(got.node_marginals, nodes)
    assert (got.loss, got.step) == (loss, alpha)
    mu = fit.tree.clique_marginals(nodes)
    buffers = [np.full(m.shape, np.nan) for m in mu]
    with_out = fit.loss_and_gradient(mu, buffers)
    plain = fit.loss_and_gradient(mu)
    assert with_out[0] == plain[0] and same(with_out[1], plain[1])
