"""The fitter's loss and gradient as two compiled calls, for trees that have a compiled pass
(:mod:`~flaimsim.mechanisms.compiled_pass`): the same values as
:meth:`~flaimsim.mechanisms.mirror_descent.MirrorDescent.loss_and_gradient`, bit for bit.

With L(μ) = ½ Σ_M w_M ‖μ_{c_M} − y_M‖² (w_M = 1/σ_M²) and ∂L/∂μ_c = Σ_{M→c} broadcast(w_M
(μ_{c_M} − y_M)):

1. one compiled call sums every clique marginal μ_c out of its node, and every residual
   μ_{c_M} − y_M out of its clique marginal, each sum in ``np.add.reduce``'s order (checked
   on a random table per shape and axes, as the pass checks its own);
2. each ‖residual‖² is numpy's ``vdot`` (BLAS's order of additions, which no loop here could
   promise to follow), added into L in measurement order, as before;
3. one compiled call scales each residual by w_M and writes the gradient: a clique's first
   term copied (broadcast), the others added in measurement order.

μ and ∇L are laid out as θ is (one flat buffer, cliques in order), so the step's Armijo test
takes μ − μ' as one subtraction; ``vdot`` gives the same bits on a view as on a copy
(checked on this machine for every length to 300 and 8 offsets).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from flaimsim.mechanisms.compiled import _gradient, _marginals_and_residuals
from flaimsim.mechanisms.compiled_pass import (CompiledPass, IndexArrays, embedding, end_to_end,
                                               fold_index, sums_like_numpy)

# a clique's row: node offset, node cells, μ offset, μ cells, then its sum from the node
# (index, run: compiled_pass.fold_index), summed (0: μ is the node itself)
# a measurement's row: its clique's μ offset and cells, residual offset and cells, y offset,
# its sum from the clique (index, run), summed; then its broadcast onto the clique (index,
# row length, kind: compiled_pass.embedding), first term of its clique (1) or not (0)


class CompiledLoss:
    """Loss and gradient of one fitting problem whose tree has a compiled pass. Build with
    :meth:`for_fit`, which gives None where the numpy path must stay."""

    def __init__(self, fit, passed: CompiledPass) -> None:
        tree = fit.tree
        self.passed = passed
        shapes = [tuple(fit.domain.project(c).shape) for c in fit.cliques]
        at, sizes, self.cells = end_to_end(shapes)
        self.views = list(zip(at, shapes))
        indices = IndexArrays()
        add = indices.add

        node_at = passed.nodes[:, 0]
        rows = []
        for k, (home, axes) in enumerate(zip(tree.home, tree.clique_axes)):
            node_shape = tree.node_shapes[home]
            r, run = fold_index(tree.embed[k], node_shape)   # the clique, 1 on summed axes
            rows.append([int(node_at[home]), math.prod(node_shape), at[k], sizes[k], add(r),
                         run, int(bool(axes))])
        self.cliques = np.array(rows, dtype=np.int64).reshape(-1, 7)

        rows, y_parts, first = [], [], set()
        residual_at = y_at = 0
        for o, p, axes, shape in zip(fit.observations, fit.parents, fit.read_axes,
                                     fit.grad_shapes):
            # ``shape``: the measurement's axes in its clique, 1 on those summed
            r, run = fold_index(tuple(shape), shapes[p])
            g, g_width, g_kind = embedding(tuple(shape), shapes[p])
            cells = o.values.size
            rows.append([at[p], sizes[p], residual_at, cells, y_at, add(r), run,
                         int(bool(axes)), add(g), g_width, g_kind,
                         int(p not in first)])
            first.add(p)
            y_parts.append(np.ascontiguousarray(o.values, dtype=float).ravel())
            residual_at += cells
            y_at += cells
        self.measured = np.array(rows, dtype=np.int64).reshape(-1, 12)
        self.y = np.concatenate(y_parts)
        self.weights = np.array([o.weight for o in fit.observations], dtype=float)
        self.index = indices.array()
        self.residual_cells = residual_at
        self.half_weights = [0.5 * o.weight for o in fit.observations]
        self._local = threading.local()

    @classmethod
    def for_fit(cls, fit) -> "CompiledLoss | None":
        """The compiled loss, or None: no compiled pass for the tree, a clique no measurement
        reads (its gradient is 0; the fitter's cliques are measured ones, so none such), or a
        sum whose order numpy takes otherwise."""
        passed = fit.tree.compiled_pass()
        if passed is None or set(fit.parents) != set(range(len(fit.cliques))):
            return None
        tree = fit.tree
        for home, axes in zip(tree.home, tree.clique_axes):
            if axes and not sums_like_numpy(tree.node_shapes[home], tuple(axes)):
                return None
        for p, axes in zip(fit.parents, fit.read_axes):
            if axes and not sums_like_numpy(tuple(fit.domain.project(fit.cliques[p]).shape),
                                            tuple(axes)):
                return None
        return cls(fit, passed)

    def _residuals(self) -> tuple[np.ndarray, list[np.ndarray]]:
        space = getattr(self._local, "space", None)
        if space is None:
            residual = np.empty(self.residual_cells)
            views = [residual[r[2]:r[2] + r[3]] for r in self.measured]
            space = self._local.space = (residual, views)
        return space

    def table_views(self, flat: np.ndarray) -> list[np.ndarray]:
        """One table per clique, viewed in a buffer laid out as θ (μ, ∇L)."""
        return [flat[a:a + math.prod(s)].reshape(s) for a, s in self.views]

    def evaluate(self, theta: np.ndarray, total: float, grad: np.ndarray
                 ) -> tuple[list[np.ndarray], np.ndarray, float]:
        """Node marginals, μ (flat, laid out as θ) and L at θ; ∇L written into ``grad``."""
        beliefs, nodes = self.passed.node_marginals_and_buffer(theta, total)
        mu = np.empty(self.cells)
        residual, views = self._residuals()
        _marginals_and_residuals(beliefs, mu, residual, self.y, self.index, self.cliques,
                                 self.measured)
        loss = 0.0
        for half_weight, view in zip(self.half_weights, views):
            loss += half_weight * float(np.vdot(view, view))
        _gradient(residual, grad, self.weights, self.index, self.measured)
        return nodes, mu, loss


__all__ = ["CompiledLoss"]
