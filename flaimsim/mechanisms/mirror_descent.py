"""Mirror descent for graphical models in numpy: ``mbi``'s estimator without the JIT.

This is Algorithm 1 of McKenna et al., "Graphical-model based estimation and inference for
differential privacy" (ICML 2019), as ``mbi.estimation.MirrorDescent`` runs it:

- loss L(μ) = ½ Σ_M ‖μ_{c_M} − y_M‖² / σ_M², over the model's marginals μ on the maximal
  measured cliques (each measurement read from the smallest clique that holds it);
- update θ' = θ − α ∇L(μ(θ)), with μ(θ) the exact marginals of P ∝ exp(Σ_c θ_c) scaled to
  the total N (:class:`~flaimsim.mechanisms.junction.JunctionTree`);
- step α₀ = 2 / (L_∇ N) with L_∇ = max_C Σ_{M→C} |C| / (|c_M| σ_M²), then Armijo:
  accept θ' if L(μ) − L(μ') ≥ ½ α ⟨∇L(μ), μ − μ'⟩ and set α ← 1.01 α, else keep θ and
  halve α;
- warm start: the previous θ, each table added into the smallest new clique containing it.

The maths, the step rule and the warm start are ``mbi``'s, so the fits agree to rounding
(tested). Differences: the μ of an accepted step is reused instead of recomputed (same
iterates, half the marginal evaluations), ``iters`` is exact (``mbi`` rounds up to a multiple
of 50), and an optional stopping rule ends the fit once the loss stops improving.

The stopping rule (``tol``), checked every ``check_every`` iterations and met ``patience``
blocks in a row: rule "moves" (default) stops once the fit moved less than ``tol`` noise
standard deviations over the block, RMS over the measured cells,
sqrt(Σ_M ‖Δμ_{c_M}‖² / σ_M² / Σ_M |c_M|), so a change far below the noise is not chased;
rule "loss" (``mbi``'s ``tol``) stops once L fell by at most ``tol`` · L over the block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from flaimsim.mechanisms.junction import (Clique, JunctionTree, canonical, embed_shape,
                                          summed_axes, to_canonical)
from flaimsim.mechanisms.compiled_loss import CompiledLoss
from flaimsim.mechanisms.compiled_pass import end_to_end
from flaimsim.mechanisms.heap import pad_the_heap
from flaimsim.mechanisms.kernels import _add  # ndarray.sum without its wrapper
from flaimsim.mechanisms.mbi_setup import Domain, clique_utils


@dataclass(frozen=True)
class Observation:
    """One measurement, laid out for the loss: y over canonical ``clique``, weight 1/σ²."""

    clique: Clique
    values: np.ndarray
    weight: float


@dataclass(frozen=True)
class FitSettings:
    """How long to run: at most ``iters`` steps; with ``tol``, stop early on a flat loss."""

    iters: int
    tol: float | None = None
    check_every: int = 25
    patience: int = 2
    rule: str = "moves"  # moves | loss

    def __post_init__(self) -> None:
        if self.iters < 0:
            raise ValueError(f"iterations must be non-negative, got {self.iters}")
        if self.tol is not None and self.tol < 0:
            raise ValueError(f"tolerance must be non-negative, got {self.tol}")
        if self.rule not in ("moves", "loss"):
            raise ValueError(f"unknown stopping rule {self.rule!r}; use 'moves' or 'loss'")
        if self.check_every < 1 or self.patience < 1:
            raise ValueError("check_every and patience must be at least 1")


@dataclass
class FitResult:
    """Fitted log-potentials (canonical layout) and what the run did."""

    tree: JunctionTree
    spelled: list[Clique]
    potentials: list[np.ndarray]
    node_marginals: list[np.ndarray]
    total: float
    loss: float
    iterations: int
    step: float
    losses: list[float] = field(default_factory=list, repr=False)


def minimum_variance_total(observations: Sequence[Observation]) -> float:
    """N̂ = inverse-variance weighted mean of Σ y_M (Var Σ y_M = σ² |c_M|), at least 1
    (``mbi.estimation.minimum_variance_unbiased_total``)."""
    sums = np.array([o.values.sum() for o in observations])
    inv_var = np.array([o.weight / o.values.size for o in observations])
    return max(1.0, float((sums * inv_var).sum() / inv_var.sum()))


def lipschitz(domain: Domain, cliques: Sequence[Clique], parents: Sequence[int],
              observations: Sequence[Observation]) -> float:
    """L_∇ = max_C Σ_{M→C} |C| / (|c_M| σ_M²): exact for identity marginal queries."""
    blocks: dict[int, float] = {}
    for o, p in zip(observations, parents):
        blocks[p] = blocks.get(p, 0.0) + o.weight * domain.size(cliques[p]) / o.values.size
    return max(blocks.values())


def expand(domain: Domain, old: dict[Clique, np.ndarray], cliques: Sequence[Clique]
           ) -> list[np.ndarray]:
    """θ re-expressed on ``cliques``: each old table added into the smallest new clique that
    contains it (``mbi``'s ``CliqueVector.expand``; tables it cannot place are dropped)."""
    out = [np.zeros(domain.project(c).shape) for c in cliques]
    for c, theta in old.items():
        fits = [k for k, n in enumerate(cliques) if set(c) <= set(n)]
        if fits:
            k = min(fits, key=lambda k: domain.size(cliques[k]))
            out[k] = out[k] + theta.reshape(embed_shape(domain, c, cliques[k]))
    return out


class MirrorDescent:
    """One fitting problem: the measurements, their cliques, junction tree and loss."""

    def __init__(self, domain: Domain, measured: Sequence[tuple[Sequence[str], np.ndarray,
                                                                    float]],
                 tree: JunctionTree | None = None):
        if not measured:
            raise ValueError("cannot fit a model without measurements")
        self.domain = domain
        self.observations = []
        for clique, values, sigma in measured:
            if not sigma > 0:
                raise ValueError(f"measurement of {tuple(clique)} has σ = {sigma}; need σ > 0")
            self.observations.append(Observation(canonical(domain, clique),
                                                 to_canonical(domain, clique, values),
                                                 1.0 / float(sigma) ** 2))
        # the potentials' cliques in mbi's order, as the caller spelled them
        spelled = clique_utils.maximal_subset([tuple(c) for c, _, _ in measured])
        self.spelled: list[Clique] = spelled
        self.cliques: list[Clique] = [canonical(domain, c) for c in spelled]
        if tree is None or tree.cliques != self.cliques:
            tree = JunctionTree(domain, self.cliques)
        self.tree = tree
        self.parents = [min((k for k, c in enumerate(self.cliques) if set(o.clique) <= set(c)),
                            key=lambda k: domain.size(self.cliques[k]))
                        for o in self.observations]
        self.read_axes = [summed_axes(o.clique, self.cliques[p])
                          for o, p in zip(self.observations, self.parents)]
        self.grad_shapes = [embed_shape(domain, o.clique, self.cliques[p])
                            for o, p in zip(self.observations, self.parents)]
        self.lipschitz = lipschitz(domain, self.cliques, self.parents, self.observations)

    # ---- the objective ------------------------------------------------------------------
    def loss_and_gradient(self, mu: Sequence[np.ndarray],
                          out: Sequence[np.ndarray] | None = None
                          ) -> tuple[float, list[np.ndarray]]:
        """L(μ) and ∂L/∂μ_c = Σ_{M→c} broadcast((μ_{c_M} − y_M)/σ_M²).

        A clique's first term is stored, not added to zeros (0 + x = x exactly: μ ≥ 0, so no
        −0.0 arises), and sums call ``np.add.reduce`` directly: the same values as the plain
        expression, with fewer numpy calls per fitting step (tested bit for bit). ``out``:
        one array per clique to write the gradient into (the fit's reused buffers)."""
        loss = 0.0
        grad: list[np.ndarray | None] = [None] * len(mu)
        for o, p, axes, shape in zip(self.observations, self.parents, self.read_axes,
                                     self.grad_shapes):
            if axes:
                diff = _add(mu[p], axis=axes)
                diff -= o.values
            else:
                diff = mu[p] - o.values
            loss += 0.5 * o.weight * float(np.vdot(diff, diff))
            diff *= o.weight
            term = diff.reshape(shape)
            if grad[p] is not None:
                grad[p] += term
            elif out is not None:   # a copy, broadcast where the term is (values unchanged)
                np.copyto(out[p], term)
                grad[p] = out[p]
            else:
                grad[p] = np.broadcast_to(term, mu[p].shape).copy() if axes else term
        if out is not None:
            for p, g in enumerate(grad):
                if g is None:
                    out[p].fill(0.0)
            return loss, list(out)
        return loss, [np.zeros_like(m) if g is None else g for g, m in zip(grad, mu)]

    def movement(self, before: Sequence[np.ndarray], after: Sequence[np.ndarray]) -> float:
        """RMS over measured cells of (μ_after − μ_before)/σ: how far the fit moved, in units
        of each measurement's noise."""
        moved, cells = 0.0, 0
        for o, p, axes in zip(self.observations, self.parents, self.read_axes):
            d = after[p] - before[p]
            d = d.sum(axis=axes) if axes else d
            moved += o.weight * float(np.vdot(d, d))
            cells += d.size
        return (moved / cells) ** 0.5

    def evaluate(self, theta: Sequence[np.ndarray], total: float,
                 grad_out: Sequence[np.ndarray] | None = None,
                 flat: np.ndarray | None = None):
        nodes = self.tree.node_marginals(theta, total, flat)
        mu = self.tree.clique_marginals(nodes)
        loss, grad = self.loss_and_gradient(mu, grad_out)
        return nodes, mu, loss, grad

    # ---- the iteration --------------------------------------------------------------------
    def run(self, settings: FitSettings, warm_start: dict[Clique, np.ndarray] | None = None,
            known_total: float | None = None) -> FitResult:
        """Armijo mirror descent from ``warm_start`` (canonical clique -> θ table) or θ = 0.

        θ and ∇L live in flat buffers, two of each (the current and the trial), with one view
        per clique: a step's update θ − α∇L is two whole-buffer operations instead of two per
        clique, cell for cell the same IEEE operations."""
        pad_the_heap()  # each step's large temporaries then reuse the heap's pages
        total = minimum_variance_total(self.observations) if known_total is None else float(
            known_total)
        start = expand(self.domain, warm_start or {}, self.cliques)
        thetas, theta_views = _flat_buffers([t.shape for t in start])
        grads, grad_views = _flat_buffers([t.shape for t in start])
        for view, table in zip(theta_views[0], start):
            np.copyto(view, table)
        scratch = np.empty_like(thetas[0])
        now = 0   # the buffers holding θ and its ∇L; 1 − now: the trial's
        alpha = 2.0 / (self.lipschitz * total)
        compiled = CompiledLoss.for_fit(self)
        if compiled is not None:   # μ flat, laid out as θ: μ − μ' in one subtraction
            scratch_views = compiled.table_views(scratch)

            def evaluate(k: int):
                nodes, mu, loss = compiled.evaluate(thetas[k], total, grads[k])
                return nodes, mu, loss, grad_views[k]

            def descent(grad, mu, mu2) -> float:
                np.subtract(mu, mu2, out=scratch)
                return sum(float(np.vdot(g, d)) for g, d in zip(grad, scratch_views))
        else:
            def evaluate(k: int):
                return self.evaluate(theta_views[k], total, grad_views[k], thetas[k])

            def descent(grad, mu, mu2) -> float:
                return sum(float(np.vdot(g, m - m2)) for g, m, m2 in zip(grad, mu, mu2))

        def tables(mu) -> list[np.ndarray]:
            return compiled.table_views(mu) if compiled is not None else mu

        nodes, mu, loss, grad = evaluate(0)
        losses = [loss]
        block_start, block_mu, flat_blocks, done = loss, mu, 0, 0
        for done in range(1, settings.iters + 1):
            np.multiply(grads[now], alpha, out=scratch)
            np.subtract(thetas[now], scratch, out=thetas[1 - now])
            nodes2, mu2, loss2, grad2 = evaluate(1 - now)
            expected = 0.5 * alpha * descent(grad, mu, mu2)
            if loss - loss2 >= expected:
                now = 1 - now
                nodes, mu, loss, grad = nodes2, mu2, loss2, grad2
                alpha *= 1.01
            else:
                alpha *= 0.5
            losses.append(loss)
            if settings.tol is not None and done % settings.check_every == 0:
                if settings.rule == "loss":
                    flat = block_start - loss <= settings.tol * max(abs(loss), 1.0)
                else:
                    flat = self.movement(tables(block_mu), tables(mu)) <= settings.tol
                flat_blocks = flat_blocks + 1 if flat else 0
                block_start, block_mu = loss, mu
                if flat_blocks >= settings.patience:
                    break
        theta = [view.copy() for view in theta_views[now]]
        return FitResult(self.tree, self.spelled, theta, nodes, total, loss, done, alpha, losses)


def _flat_buffers(shapes: Sequence[tuple[int, ...]]
                  ) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Two flat float buffers holding one table of each shape, and each one's table views."""
    at, sizes, cells = end_to_end(shapes)
    buffers = [np.empty(cells), np.empty(cells)]
    views = [[b[a:a + n].reshape(s) for a, n, s in zip(at, sizes, shapes)] for b in buffers]
    return buffers, views
