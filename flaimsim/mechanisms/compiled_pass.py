"""One HUGIN pass of a junction tree as a few compiled calls a message: the fitter's beliefs
and node marginals with the same IEEE operations, in the same order, as the numpy path of
:class:`~flaimsim.mechanisms.junction.JunctionTree`.

A fitting step on Adult's trees is ~500 numpy calls on tables of a few thousand cells, so its
cost is the calls, not the cells. Here the beliefs of all nodes live in one flat buffer and
every broadcast of a smaller table onto a node is precomputed as rows (:func:`embedding`:
runs of the node's trailing axes that take consecutive small cells, or one small cell, or,
for short rows, 64-cell blocks that take the same offsets from a base), so that for each
message i → j

- one compiled call finishes the previous message (msg = log S + peak; b_j += msg) and
  starts this one (τ = b_i − back; peak = max of τ over the summed axes, 0 where it is not
  finite; τ − peak),
- numpy's ``exp`` runs on the shifted table, one compiled call sums it (S) in numpy's order
  of additions, numpy's ``log`` runs on S;

and the node marginals are one compiled call (b − max b), one ``exp`` over all nodes and one
compiled call (the sum in numpy's order, then × N / sum).

What may not move a bit: ``+``, ``−``, ``×``, ``÷`` are one IEEE operation a cell in any
loop; a maximum is exact in any order (a ±0 tie can only change the sign of a zero shift,
and exp(±0) = 1); ``exp`` and ``log`` stay numpy's (numba's differ from numpy's AVX-512
ones in 4.6 % of values), applied element by element to slices of the same values. A sum's
value depends on its order, so the compiled sum takes numpy's (``np.add.reduce`` over a
C-contiguous table): each run of trailing summed cells by ``pairwise_sum`` (one by one from
−0.0 below 8 cells, 8 running sums up to 128, halves beyond), the runs added into their
output cell one after another in C order. Every (shape, axes) of a tree is checked against
``np.add.reduce`` on a random table before the pass is used; a tree with one that differs
(a numpy that orders its sums otherwise), or a message that sums nothing, keeps the numpy
path. `tests/test_compiled_pass.py` compares both paths bit for bit.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Sequence

import numpy as np

from flaimsim.mechanisms.compiled import (_MSG, _SEP_N, _SRC_N, BROADCAST, FULL, PATTERN,
                                          _between, _init_beliefs, _reduce_into, _scale_nodes,
                                          _shift_nodes, _sum_message, njit, pairwise_sum)
from flaimsim.mechanisms.kernels import _joined_axes, _kept_shape

# Rows shorter than this are gathered cell by cell (a row's loop costs more than its cells).
_NARROW = 8
# The narrow rows' blocks: at least this many cells (the offsets stay in the L1 cache).
_BLOCK = 64
# The potentials are added into a node this many cells at a time (or more: whole rows).
_CHUNK = 4096
# A tree with a node above this many cells keeps the numpy path: the pass's index arrays
# grow with the nodes (8 bytes a cell for each narrow embedding).
MAX_NODE_CELLS = 1 << 22


def _gather_index(sub_shape: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """For each cell of a C-ordered table of ``shape``, the flat index of the cell of a table
    of ``sub_shape`` (same number of axes, 1 where broadcast) that broadcasts onto it."""
    size = math.prod(sub_shape)
    return np.ascontiguousarray(np.broadcast_to(
        np.arange(size, dtype=np.int64).reshape(sub_shape), shape)).ravel()


def embedding(sub_shape: tuple[int, ...], shape: tuple[int, ...]
              ) -> tuple[np.ndarray, int, int]:
    """A ``sub_shape`` table broadcast onto a ``shape`` one, row by row: (index, row length,
    kind). The rows are the trailing axes of ``shape`` joined while all are full or all
    broadcast in ``sub_shape`` (1-value axes join either), as numpy joins them; the index
    holds each row's first small cell, and the kind says where the others are: FULL, the
    next ones; BROADCAST, the same one. Rows under 8 cells are joined instead into blocks of
    trailing axes of ≥ 64 cells, kind PATTERN: the index holds each block's first small cell
    and then the offsets of the block's cells from it (the same for every block, since a
    broadcast index is a sum over axes)."""
    groups = _joined_axes(shape, [m == n for n, m in zip(shape, sub_shape)])
    width, full = groups[-1] if groups else (1, True)
    cells = _gather_index(sub_shape, shape)
    if width >= _NARROW:
        return cells[::width].copy(), width, FULL if full else BROADCAST
    block = _trailing_block(shape, _BLOCK)
    blocks = cells.reshape(-1, block)
    offsets = blocks[0] - blocks[0, 0]
    if not np.array_equal(blocks, blocks[:, :1] + offsets):   # pragma: no cover - linear
        raise AssertionError(f"no block pattern for {sub_shape} in {shape}")
    return np.concatenate([blocks[:, 0], offsets]), block, PATTERN


def fold_index(kept_shape: tuple[int, ...], shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """``np.add.reduce``'s order for a C-ordered ``shape`` table summed to ``kept_shape`` (1
    on the summed axes) as a fold: (index, run). The trailing summed axes (1-value axes join
    either) form runs of ``run`` cells, each summed by pairwise_sum; the index holds the
    offset of each combination of the other summed axes, in C order, then the offset of
    each output cell's first cell (run) from it; every output adds its runs in the order of
    the combinations. A cell's offset is a sum over axes, so base + offset is every cell."""
    run, split = 1, len(shape)
    for a in range(len(shape) - 1, -1, -1):
        if shape[a] != 1 and kept_shape[a] != 1:
            break
        run, split = run * shape[a], a
    cells = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    summed = tuple(slice(None) if a < split and kept_shape[a] == 1 else 0
                   for a in range(len(shape)))
    kept = tuple(slice(None) if a < split and kept_shape[a] != 1 else 0
                 for a in range(len(shape)))
    return np.concatenate([cells[summed].ravel(), cells[kept].ravel()]), run


@functools.lru_cache(maxsize=4096)
def sums_like_numpy(shape: tuple[int, ...], axes: tuple[int, ...]) -> bool:
    """Whether the compiled sum of a ``shape`` table over ``axes`` gives ``np.add.reduce``'s
    bits on a random table (values over many orders of magnitude, both signs)."""
    rng = np.random.default_rng(len(shape) + 7 * len(axes))
    probe = np.exp(rng.normal(0.0, 4.0, shape)) * rng.choice([-1.0, 1.0], shape)
    expect = np.add.reduce(probe, axis=axes).ravel()
    index, run = fold_index(_kept_shape(shape, axes), shape)
    out = np.empty(expect.size)
    _reduce_into(probe.ravel(), 0, probe.size, run, index, 0, out, 0, out.size)
    return bool(np.array_equal(out.view(np.uint64), expect.view(np.uint64)))


@functools.lru_cache(maxsize=4096)
def totals_like_numpy(cells: int) -> bool:
    """Whether the compiled sum of a whole ``cells``-cell table gives ``np.add.reduce``'s
    bits (``axis=None``) on a random one."""
    rng = np.random.default_rng(cells)
    probe = np.exp(rng.normal(0.0, 4.0, cells))
    return bool(np.float64(pairwise_sum(probe, 0, cells)).view(np.uint64)
                == np.add.reduce(probe, axis=None).view(np.uint64))


def _trailing_block(shape: tuple[int, ...], least: int) -> int:
    """The cells of ``shape``'s fewest trailing axes that hold at least ``least`` cells (all
    of them if none do): every row length of a table of ``shape`` divides it."""
    block = 1
    for n in reversed(shape):
        if block >= least:
            break
        block *= n
    return block


def end_to_end(shapes: Sequence[tuple[int, ...]]) -> tuple[list[int], list[int], int]:
    """Tables of ``shapes`` laid end to end in one flat buffer: (each one's offset, each
    one's cells, the buffer's cells)."""
    sizes = [math.prod(s) for s in shapes]
    at = np.cumsum([0] + sizes)
    return [int(a) for a in at[:-1]], sizes, int(at[-1])


class IndexArrays:
    """Index arrays laid end to end in one int64 array (the kernels' ``index``)."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.cells = 0

    def add(self, part: np.ndarray) -> int:
        """Append ``part``; where it starts."""
        self.parts.append(np.asarray(part, dtype=np.int64))
        self.cells += part.size
        return self.cells - part.size

    def array(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.int64)


class CompiledPass:
    """The compiled HUGIN pass of one junction tree (see the module docstring). Build with
    :meth:`for_tree`, which gives None where the numpy path must stay."""

    def __init__(self, tree) -> None:
        shapes = tree.node_shapes
        node_at, sizes, self.cells = end_to_end(shapes)
        self.node_views = list(zip(node_at, shapes))
        self.nodes = np.array([[a, n] for a, n in zip(node_at, sizes)],
                              dtype=np.int64).reshape(-1, 2)
        indices = IndexArrays()
        add_index = indices.add
        theta_at, _, self.theta_cells = end_to_end([tuple(tree.domain.project(c).shape)
                                                    for c in tree.cliques])
        rows = []
        for home in sorted(set(tree.home)):   # a node's cliques together, in clique order
            homed = [k for k, h in enumerate(tree.home) if h == home]
            embedded = [embedding(tree.embed[k], shapes[home]) for k in homed]
            # the node's chunk: trailing axes, ≥ _CHUNK cells and ≥ each row's length
            chunk = _trailing_block(shapes[home], max([_CHUNK] + [w for _, w, _ in embedded]))
            for k, (at, width, kind) in zip(homed, embedded):
                rows.append([node_at[home], sizes[home], theta_at[k], add_index(at), width,
                             kind, chunk])
        self.cliques = np.array(rows, dtype=np.int64).reshape(-1, 7)

        work_at = 0
        plan, sent = [], {}
        for m in tree.messages:
            sep_n = math.prod(m.shape_in_target)
            src_rows, src_width, src_kind = embedding(m.shape_in_source, shapes[m.source])
            tgt_rows, tgt_width, tgt_kind = embedding(m.shape_in_target, shapes[m.target])
            sum_index, run = fold_index(m.shape_in_source, shapes[m.source])
            msg, peak = work_at, work_at + sep_n
            work_at += 2 * sep_n
            plan.append([node_at[m.source], sizes[m.source], node_at[m.target],
                         sizes[m.target], sep_n, msg, peak, add_index(src_rows),
                         src_width, src_kind, add_index(tgt_rows), tgt_width,
                         tgt_kind, sent.get((m.target, m.source), -1),
                         add_index(sum_index), run])
            sent[(m.source, m.target)] = msg
        self.plan = np.array(plan, dtype=np.int64).reshape(-1, 16)
        self.index = indices.array()
        self.work_cells = work_at
        self._local = threading.local()

    @classmethod
    def for_tree(cls, tree) -> "CompiledPass | None":
        """The pass, or None: no numba, a node above ``MAX_NODE_CELLS``, a message that sums
        no axis, or a sum whose order numpy takes otherwise."""
        if njit is None or max(math.prod(s) for s in tree.node_shapes) > MAX_NODE_CELLS:
            return None
        for m in tree.messages:
            if not m.axes or not sums_like_numpy(tree.node_shapes[m.source], tuple(m.axes)):
                return None
        if not all(totals_like_numpy(math.prod(s)) for s in tree.node_shapes):
            return None
        return cls(tree)

    def _workspace(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """Per thread: the messages' and peaks' buffer, the shifted table's, and their views
        per message (the shifted table, S)."""
        space = getattr(self._local, "space", None)
        if space is None:
            work = np.empty(self.work_cells)
            table = np.empty(max(self.nodes[:, 1]))
            shifted = [table[:r[_SRC_N]] for r in self.plan]
            sums = [work[r[_MSG]:r[_MSG] + r[_SEP_N]] for r in self.plan]
            space = self._local.space = (work, table, shifted, sums)
        return space

    def node_marginals(self, theta: np.ndarray, total: float) -> list[np.ndarray]:
        """μ_n = N · exp(b_n − log Σ exp b_n) for every node, from θ laid end to end in clique
        order (``theta``: flat, float64)."""
        return self.node_marginals_and_buffer(theta, total)[1]

    def node_marginals_and_buffer(self, theta: np.ndarray, total: float
                                  ) -> tuple[np.ndarray, list[np.ndarray]]:
        """:meth:`node_marginals`, and the flat buffer that holds them end to end."""
        if theta.size != self.theta_cells:
            raise ValueError(f"θ has {theta.size} cells; the tree's cliques hold "
                             f"{self.theta_cells}")
        beliefs = np.empty(self.cells)
        work, table, shifted, sums = self._workspace()
        index, plan = self.index, self.plan
        _init_beliefs(beliefs, theta, index, self.cliques)
        done = -1
        for m in range(len(plan)):
            _between(beliefs, work, table, index, plan, done, m)
            np.exp(shifted[m], out=shifted[m])
            _sum_message(work, table, index, plan, m)
            np.log(sums[m], out=sums[m])
            done = m
        _between(beliefs, work, table, index, plan, done, -1)
        _shift_nodes(beliefs, self.nodes)
        np.exp(beliefs, out=beliefs)
        _scale_nodes(beliefs, self.nodes, float(total))
        return beliefs, [beliefs[a:a + math.prod(s)].reshape(s) for a, s in self.node_views]


__all__ = ["CompiledPass", "sums_like_numpy", "totals_like_numpy"]
