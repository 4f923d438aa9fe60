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

from flaimsim.mechanisms.compiled import (_PAIRWISE_DEPTH, _jit, lane_max, njit, pairwise_block,
                                         pairwise_sum, pairwise_walk)

# columns of a message's row in the plan; an embedding of a smaller table in a node is
# (index, row length, kind: see :func:`embedding`)
(_SRC, _SRC_N, _TGT, _TGT_N, _SEP_N, _MSG, _PEAK, _IDX_SRC, _L_SRC, _KIND_SRC, _IDX_TGT,
 _L_TGT, _KIND_TGT, _BACK, _IDX_SUM, _RUN) = range(16)
# Rows shorter than this are gathered cell by cell (a row's loop costs more than its cells).
_NARROW = 8
# how the cells of a node row take their small cells (see :func:`embedding`)
BROADCAST, FULL, PATTERN = 0, 1, 2
# The narrow rows' blocks: at least this many cells (the offsets stay in the L1 cache).
_BLOCK = 64
# The potentials are added into a node this many cells at a time (or more: whole rows).
_CHUNK = 4096
# A tree with a node above this many cells keeps the numpy path: the pass's index arrays
# grow with the nodes (8 bytes a cell for each narrow embedding).
MAX_NODE_CELLS = 1 << 22


# The loops index slices with their range variables: numba then knows the index is not
# negative and drops its wrap-around test, and LLVM vectorises the loop (measured: a
# 56,700-cell row-wise subtraction 31.8 → 8.0 µs).


def _peak_pattern(peak: np.ndarray, cells: np.ndarray, starts: np.ndarray,
                  offsets: np.ndarray) -> None:
    width = offsets.size
    for r in range(starts.size):
        into, row = peak[starts[r]:], cells[r * width:r * width + width]
        for k in range(width):
            into[offsets[k]] = max(into[offsets[k]], row[k])


def _reduce_into(a: np.ndarray, start: int, n: int, run: int, index: np.ndarray,
                 index_at: int, out: np.ndarray, out_at: int, out_n: int) -> None:
    # np.add.reduce's order, as a fold (see fold_index): out = −0.0 (−0.0 + x = x exactly),
    # then for each combination of the summed axes in C order, into every output its cell,
    # or its run of trailing summed cells as pairwise_sum adds them. Outputs inner: their
    # additions do not wait on each other
    target = out[out_at:out_at + out_n]
    target[:] = -0.0
    combos = n // (run * out_n)
    bases = index[index_at:index_at + combos]
    offsets = index[index_at + combos:index_at + combos + out_n].view(np.uint64)
    cells = a[start:start + n]
    if run == 1:
        for j in range(combos):
            at = cells[bases[j]:]
            for o in range(out_n):
                target[o] += at[offsets[o]]
    elif run < 8:
        for j in range(combos):
            at = cells[bases[j]:]
            for o in range(out_n):
                x = at[offsets[o]:offsets[o] + run]
                res = -0.0
                for k in range(run):
                    res += x[k]
                target[o] += res
    elif run <= 128:
        for j in range(combos):
            at = cells[bases[j]:]
            for o in range(out_n):
                target[o] += pairwise_block(at[offsets[o]:offsets[o] + run])
    else:
        stack = np.empty((_PAIRWISE_DEPTH, 3), dtype=np.int64)
        values = np.empty(_PAIRWISE_DEPTH)
        for j in range(combos):
            for o in range(out_n):
                target[o] += pairwise_walk(cells, bases[j] + offsets[o], run, stack, values)


def _gather(out: np.ndarray, out_at: int, a: np.ndarray, a_at: int, n: int, small: np.ndarray,
            small_at: int, width: int, kind: int, rows: np.ndarray, rows_at: int,
            sign: int) -> None:
    # out = a + small, a − small (sign ±1) or small (sign 0), small broadcast, row by row
    # (out may be a); one IEEE operation a cell
    dst, src, tail = out[out_at:out_at + n], a[a_at:a_at + n], small[small_at:]
    count = n // width
    starts = rows[rows_at:rows_at + count]
    if kind == PATTERN:
        _gather_pattern(dst, src, tail, starts,
                        rows[rows_at + count:rows_at + count + width].view(np.uint64), sign)
    elif kind == FULL:
        _gather_full(dst, src, tail, starts, width, sign)
    else:
        _gather_broadcast(dst, src, tail, starts, width, sign)


def _gather_pattern(dst: np.ndarray, src: np.ndarray, tail: np.ndarray, starts: np.ndarray,
                    offsets: np.ndarray, sign: int) -> None:
    width = offsets.size
    for r in range(starts.size):
        d, x = dst[r * width:r * width + width], src[r * width:r * width + width]
        y = tail[starts[r]:]
        if sign > 0:
            for k in range(width):
                d[k] = x[k] + y[offsets[k]]
        elif sign < 0:
            for k in range(width):
                d[k] = x[k] - y[offsets[k]]
        else:
            for k in range(width):
                d[k] = y[offsets[k]]


def _gather_full(dst: np.ndarray, src: np.ndarray, tail: np.ndarray, starts: np.ndarray,
                 width: int, sign: int) -> None:
    for r in range(starts.size):
        d, x = dst[r * width:r * width + width], src[r * width:r * width + width]
        y = tail[starts[r]:starts[r] + width]
        if sign > 0:
            for k in range(width):
                d[k] = x[k] + y[k]
        elif sign < 0:
            for k in range(width):
                d[k] = x[k] - y[k]
        else:
            for k in range(width):
                d[k] = y[k]


def _gather_broadcast(dst: np.ndarray, src: np.ndarray, tail: np.ndarray, starts: np.ndarray,
                      width: int, sign: int) -> None:
    for r in range(starts.size):
        d, x = dst[r * width:r * width + width], src[r * width:r * width + width]
        v = tail[starts[r]]
        if sign > 0:
            for k in range(width):
                d[k] = x[k] + v
        elif sign < 0:
            for k in range(width):
                d[k] = x[k] - v
        else:
            for k in range(width):
                d[k] = v


def _init_beliefs(beliefs: np.ndarray, theta: np.ndarray, index: np.ndarray,
                  cliques: np.ndarray) -> None:
    # b_n = 0 + θ_1 + θ_2 + … in clique order (the numpy path's zeros, then in-place adds),
    # a chunk of the node at a time (the rows sorted by node: their cliques' order kept), so
    # each clique's pass finds the chunk in the cache
    beliefs[:] = 0.0
    first = 0
    while first < cliques.shape[0]:
        node, n, chunk = cliques[first, 0], cliques[first, 1], cliques[first, 6]
        last = first
        while last < cliques.shape[0] and cliques[last, 0] == node:
            last += 1
        for begin in range(0, n, chunk):
            cells = beliefs[node + begin:node + begin + chunk]
            for c in range(first, last):
                theta_at, rows_at, width, kind = (cliques[c, 2], cliques[c, 3], cliques[c, 4],
                                                  cliques[c, 5])
                starts = index[rows_at + begin // width:rows_at + (begin + chunk) // width]
                tail = theta[theta_at:]
                if kind == PATTERN:
                    at = rows_at + n // width
                    _gather_pattern(cells, cells, tail, starts,
                                    index[at:at + width].view(np.uint64), 1)
                elif kind == FULL:
                    _gather_full(cells, cells, tail, starts, width, 1)
                else:
                    _gather_broadcast(cells, cells, tail, starts, width, 1)
        first = last


def _finish(beliefs: np.ndarray, work: np.ndarray, index: np.ndarray, row: np.ndarray
            ) -> None:
    sep = row[_SEP_N]
    msg, peak = work[row[_MSG]:row[_MSG] + sep], work[row[_PEAK]:row[_PEAK] + sep]
    for o in range(sep):
        msg[o] += peak[o]                          # log S + peak
    _gather(beliefs, row[_TGT], beliefs, row[_TGT], row[_TGT_N], work, row[_MSG], row[_L_TGT],
            row[_KIND_TGT], index, row[_IDX_TGT], 1)


def _start(beliefs: np.ndarray, work: np.ndarray, table: np.ndarray, index: np.ndarray,
           row: np.ndarray) -> None:
    # τ − peak into ``table`` (its own buffer: the loops need not fear aliasing)
    src, n, at, back = row[_SRC], row[_SRC_N], row[_IDX_SRC], row[_BACK]
    width, kind, sep = row[_L_SRC], row[_KIND_SRC], row[_SEP_N]
    if back >= 0:
        _gather(table, 0, beliefs, src, n, work, back, width, kind, index, at, -1)
    else:
        table[:n] = beliefs[src:src + n]
    # the peak: max over each output's cells, 0 where it is not finite. A NaN cell may be
    # passed over (the numpy path's peak would be NaN, so 0): its output's S is NaN either
    # way, and so is the message
    peak = work[row[_PEAK]:row[_PEAK] + sep]
    peak[:] = -np.inf
    count = n // width
    starts = index[at:at + count]
    cells = table[:n]
    if kind == PATTERN:
        _peak_pattern(peak, cells, starts, index[at + count:at + count + width].view(np.uint64))
    elif kind == FULL:
        for r in range(count):
            into, x = peak[starts[r]:starts[r] + width], cells[r * width:r * width + width]
            for k in range(width):
                into[k] = max(into[k], x[k])
    else:
        for r in range(count):
            peak[starts[r]] = max(peak[starts[r]], lane_max(cells[r * width:r * width + width]))
    for o in range(sep):
        if not np.isfinite(peak[o]):
            peak[o] = 0.0
    _gather(table, 0, table, 0, n, work, row[_PEAK], width, kind, index, at, -1)


def _between(beliefs: np.ndarray, work: np.ndarray, table: np.ndarray, index: np.ndarray,
             plan: np.ndarray, done: int, next_: int) -> None:
    if done >= 0:
        _finish(beliefs, work, index, plan[done])
    if next_ >= 0:
        _start(beliefs, work, table, index, plan[next_])


def _sum_message(work: np.ndarray, table: np.ndarray, index: np.ndarray, plan: np.ndarray,
                 m: int) -> None:
    row = plan[m]
    _reduce_into(table, 0, row[_SRC_N], row[_RUN], index, row[_IDX_SUM], work, row[_MSG],
                 row[_SEP_N])


def _shift_nodes(beliefs: np.ndarray, nodes: np.ndarray) -> None:
    # b − max b for each node (a −inf max gives NaN, as numpy's subtract does)
    for k in range(nodes.shape[0]):
        node = beliefs[nodes[k, 0]:nodes[k, 0] + nodes[k, 1]]
        top = lane_max(node)
        for i in range(node.size):
            node[i] -= top


def _scale_nodes(beliefs: np.ndarray, nodes: np.ndarray, total: float) -> None:
    # μ_n = e · (N / Σ e), the sum in numpy's order over the whole node
    for k in range(nodes.shape[0]):
        node = beliefs[nodes[k, 0]:nodes[k, 0] + nodes[k, 1]]
        factor = total / pairwise_sum(node, 0, node.size)
        for i in range(node.size):
            node[i] *= factor


if njit is not None:
    _peak_pattern = _jit(_peak_pattern)
    _reduce_into = _jit(_reduce_into)
    _gather_pattern = _jit(_gather_pattern)
    _gather_full = _jit(_gather_full)
    _gather_broadcast = _jit(_gather_broadcast)
    _gather = _jit(_gather)
    _init_beliefs = _jit(_init_beliefs)
    _finish = _jit(_finish)
    _start = _jit(_start)
    _between = _jit(_between)
    _sum_message = _jit(_sum_message)
    _shift_nodes = _jit(_shift_nodes)
    _scale_nodes = _jit(_scale_nodes)


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
    width, full = 1, True
    for n, m in zip(reversed(shape), reversed(sub_shape)):
        if n == 1:
            continue
        if width > 1 and (m == n) != full:
            break
        full, width = m == n, width * n
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
    kept = tuple(1 if a in axes else n for a, n in enumerate(shape))
    index, run = fold_index(kept, shape)
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
        self.node_views = [(int(a), s) for a, s in zip(node_at, shapes)]
        self.nodes = np.array([[int(a), n] for a, n in zip(node_at, sizes)],
                              dtype=np.int64).reshape(-1, 2)
        indices = IndexArrays()
        add_index = indices.add
        theta_at, _, self.theta_cells = end_to_end([tuple(tree.domain.project(c).shape)
                                                    for c in tree.cliques])
        rows = []
        for k in sorted(range(len(tree.home)), key=lambda k: tree.home[k]):
            home = tree.home[k]
            at, width, kind = embedding(tree.embed[k], shapes[home])
            rows.append([int(node_at[home]), sizes[home], int(theta_at[k]), add_index(at),
                         width, kind, 0])
        for row in rows:   # a node's chunk: trailing axes, ≥ _CHUNK and ≥ each row's length
            widest = max(r[4] for r in rows if r[0] == row[0])
            row[6] = _trailing_block(shapes[node_at.index(row[0])], max(_CHUNK, widest))
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
            plan.append([int(node_at[m.source]), sizes[m.source], int(node_at[m.target]),
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
