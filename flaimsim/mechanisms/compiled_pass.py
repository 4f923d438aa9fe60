"""One HUGIN pass of a junction tree as a few compiled calls a message: the fitter's beliefs
and node marginals with the same IEEE operations, in the same order, as the numpy path of
:class:`~flaimsim.mechanisms.junction.JunctionTree`.

A fitting step on Adult's trees is ~500 numpy calls on tables of a few thousand cells, so its
cost is the calls, not the cells. Here the beliefs of all nodes live in one flat buffer and
every broadcast is a gather through a precomputed index (node cell → cell of the smaller
table), so that for each message i → j

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

import numpy as np

from flaimsim.mechanisms.compiled import njit, _jit

# columns of a message's row in the plan; an embedding of a smaller table in a node is
# (index, row length, kind: see :func:`embedding`)
(_SRC, _SRC_N, _TGT, _TGT_N, _SEP_N, _MSG, _PEAK, _IDX_SRC, _L_SRC, _KIND_SRC, _IDX_TGT,
 _L_TGT, _KIND_TGT, _BACK, _IDX_SUM, _L_SUM, _KIND_SUM) = range(17)
# Rows shorter than this are gathered cell by cell (a row's loop costs more than its cells).
_NARROW = 8
# how the cells of a node row take their small cells (see :func:`embedding`)
BROADCAST, FULL, PATTERN = 0, 1, 2
# The narrow rows' blocks: at least this many cells (the offsets stay in the L1 cache).
_BLOCK = 64
# A tree with a node above this many cells keeps the numpy path: the pass's index arrays
# grow with the nodes (8 bytes a cell for each narrow embedding).
MAX_NODE_CELLS = 1 << 22


# The loops index slices with their range variables: numba then knows the index is not
# negative and drops its wrap-around test, and LLVM vectorises the loop (measured: a
# 56,700-cell row-wise subtraction 31.8 → 8.0 µs).


def _pairwise_runs(a: np.ndarray, start: int, n: int) -> float:
    # a run's pairwise sum: the block itself (n ≤ 128), or the recursion beyond
    if n > 128:
        return _pairwise(a, start, n)
    return _pairwise_block(a[start:start + n])


def _pairwise_block(s: np.ndarray) -> float:
    # numpy's pairwise_sum (loops_utils.h) for n ≤ 128
    n = s.size
    if n < 8:
        res = -0.0
        for i in range(n):
            res += s[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
    blocks = n // 8
    for b in range(1, blocks):
        block = s[8 * b:8 * b + 8]
        r0 += block[0]
        r1 += block[1]
        r2 += block[2]
        r3 += block[3]
        r4 += block[4]
        r5 += block[5]
        r6 += block[6]
        r7 += block[7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    rest = s[8 * blocks:]
    for i in range(rest.size):
        res += rest[i]
    return res


def _pairwise(a: np.ndarray, start: int, n: int) -> float:
    # numpy's pairwise_sum: halves (each a multiple of 8 cells) down to blocks of 128, then
    # left + right up the tree. Walked with a stack, not by recursion: numba's cache of a
    # recursive function crashed the process once its source changed.
    if n <= 128:
        return _pairwise_block(a[start:start + n])
    depth = 2 * (64 - 7) + 2
    at = np.empty(depth, dtype=np.int64)
    size = np.empty(depth, dtype=np.int64)
    stage = np.empty(depth, dtype=np.int64)
    values = np.empty(depth)
    top, count = 0, 0
    at[0], size[0], stage[0] = start, n, 0
    while top >= 0:
        s, m = at[top], size[top]
        if m <= 128:
            values[count] = _pairwise_block(a[s:s + m])
            count += 1
            top -= 1
            continue
        half = m // 2
        half -= half % 8
        if stage[top] == 0:
            stage[top] = 1
            top += 1
            at[top], size[top], stage[top] = s, half, 0
        elif stage[top] == 1:
            stage[top] = 2
            top += 1
            at[top], size[top], stage[top] = s + half, m - half, 0
        else:
            values[count - 2] = values[count - 2] + values[count - 1]
            count -= 1
            top -= 1
    return values[0]


def _sum_pattern(target: np.ndarray, cells: np.ndarray, starts: np.ndarray,
                 offsets: np.ndarray) -> None:
    # each cell into its output, in C order: the order of np.add.reduce's fold
    width = offsets.size
    for r in range(starts.size):
        into, row = target[starts[r]:], cells[r * width:r * width + width]
        for k in range(width):
            into[offsets[k]] += row[k]


def _peak_pattern(peak: np.ndarray, cells: np.ndarray, starts: np.ndarray,
                  offsets: np.ndarray) -> None:
    width = offsets.size
    for r in range(starts.size):
        into, row = peak[starts[r]:], cells[r * width:r * width + width]
        for k in range(width):
            into[offsets[k]] = max(into[offsets[k]], row[k])


def _reduce_into(a: np.ndarray, start: int, n: int, width: int, kind: int,
                 rows: np.ndarray, rows_at: int, out: np.ndarray, out_at: int,
                 out_n: int) -> None:
    # np.add.reduce's order: out = −0.0, then the node's cells in C order, each FULL or
    # PATTERN row's cells into their distinct outputs, each BROADCAST row (a run of summed
    # trailing cells) as its pairwise sum into one (−0.0 + x = x exactly)
    target = out[out_at:out_at + out_n]
    target[:] = -0.0
    count = n // width
    starts = rows[rows_at:rows_at + count]
    cells = a[start:start + n]
    if kind == PATTERN:
        _sum_pattern(target, cells, starts,
                     rows[rows_at + count:rows_at + count + width].view(np.uint64))
    elif kind == FULL:
        for r in range(count):
            into = target[starts[r]:starts[r] + width]
            row = cells[r * width:r * width + width]
            for k in range(width):
                into[k] += row[k]
    elif width < 8:
        for r in range(count):
            row = cells[r * width:r * width + width]
            res = -0.0
            for k in range(width):
                res += row[k]
            target[starts[r]] += res
    else:
        for r in range(count):
            target[starts[r]] += _pairwise_runs(cells, r * width, width)


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
    # b_n = 0 + θ_1 + θ_2 + … in clique order (the numpy path's zeros, then in-place adds)
    beliefs[:] = 0.0
    for c in range(cliques.shape[0]):
        node, n, theta_at, rows_at, width, kind = (cliques[c, 0], cliques[c, 1], cliques[c, 2],
                                                   cliques[c, 3], cliques[c, 4], cliques[c, 5])
        _gather(beliefs, node, beliefs, node, n, theta, theta_at, width, kind, index, rows_at, 1)


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
            peak[starts[r]] = max(peak[starts[r]], _row_max(cells[r * width:r * width + width]))
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
    _reduce_into(table, 0, row[_SRC_N], row[_L_SUM], row[_KIND_SUM], index, row[_IDX_SUM],
                 work, row[_MSG], row[_SEP_N])


def _row_max(x: np.ndarray) -> float:
    # max in eight independent lanes (a maximum is exact in any order): 57 → 10 µs over
    # 56,700 cells. A NaN may be passed over; where it matters the result is NaN either way
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = -np.inf
    blocks = x.size // 8
    for b in range(blocks):
        block = x[8 * b:8 * b + 8]
        t0, t1 = max(t0, block[0]), max(t1, block[1])
        t2, t3 = max(t2, block[2]), max(t3, block[3])
        t4, t5 = max(t4, block[4]), max(t5, block[5])
        t6, t7 = max(t6, block[6]), max(t7, block[7])
    top = max(max(max(t0, t1), max(t2, t3)), max(max(t4, t5), max(t6, t7)))
    rest = x[8 * blocks:]
    for i in range(rest.size):
        top = max(top, rest[i])
    return top


def _shift_nodes(beliefs: np.ndarray, nodes: np.ndarray) -> None:
    # b − max b for each node (a −inf max gives NaN, as numpy's subtract does)
    for k in range(nodes.shape[0]):
        node = beliefs[nodes[k, 0]:nodes[k, 0] + nodes[k, 1]]
        top = _row_max(node)
        for i in range(node.size):
            node[i] -= top


def _scale_nodes(beliefs: np.ndarray, nodes: np.ndarray, total: float) -> None:
    # μ_n = e · (N / Σ e), the sum in numpy's order over the whole node
    for k in range(nodes.shape[0]):
        node = beliefs[nodes[k, 0]:nodes[k, 0] + nodes[k, 1]]
        factor = total / _pairwise(node, 0, node.size)
        for i in range(node.size):
            node[i] *= factor


if njit is not None:
    _pairwise_block = _jit(_pairwise_block)
    _pairwise = _jit(_pairwise)
    _pairwise_runs = _jit(_pairwise_runs)
    _sum_pattern = _jit(_sum_pattern)
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
    _row_max = _jit(_row_max)
    _shift_nodes = _jit(_shift_nodes)
    _scale_nodes = _jit(_scale_nodes)


def _gather_index(sub_shape: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """For each cell of a C-ordered table of ``shape``, the flat index of the cell of a table
    of ``sub_shape`` (same number of axes, 1 where broadcast) that broadcasts onto it."""
    size = math.prod(sub_shape)
    return np.ascontiguousarray(np.broadcast_to(
        np.arange(size, dtype=np.int64).reshape(sub_shape), shape)).ravel()


def embedding(sub_shape: tuple[int, ...], shape: tuple[int, ...], for_sum: bool = False
              ) -> tuple[np.ndarray, int, int]:
    """A ``sub_shape`` table broadcast onto a ``shape`` one, row by row: (index, row length,
    kind). The rows are the trailing axes of ``shape`` joined while all are full or all
    broadcast in ``sub_shape`` (1-value axes join either), as numpy joins them; the index
    holds each row's first small cell, and the kind says where the others are: FULL, the
    next ones; BROADCAST, the same one. Rows under 8 cells are joined instead into blocks of
    trailing axes of ≥ 64 cells, kind PATTERN: the index holds each block's first small cell
    and then the offsets of the block's cells from it (the same for every block, since a
    broadcast index is a sum over axes). A sum's short BROADCAST rows stay (its order is
    pairwise within each), but a FULL row's cells add into distinct outputs, so they may go
    in a block."""
    width, full = 1, True
    for n, m in zip(reversed(shape), reversed(sub_shape)):
        if n == 1:
            continue
        if width > 1 and (m == n) != full:
            break
        full, width = m == n, width * n
    cells = _gather_index(sub_shape, shape)
    if width >= _NARROW or (for_sum and not full):
        return cells[::width].copy(), width, FULL if full else BROADCAST
    block = 1
    for n in reversed(shape):
        if block >= _BLOCK:
            break
        block *= n
    blocks = cells.reshape(-1, block)
    offsets = blocks[0] - blocks[0, 0]
    if not np.array_equal(blocks, blocks[:, :1] + offsets):   # pragma: no cover - linear
        raise AssertionError(f"no block pattern for {sub_shape} in {shape}")
    return np.concatenate([blocks[:, 0], offsets]), block, PATTERN


@functools.lru_cache(maxsize=4096)
def sums_like_numpy(shape: tuple[int, ...], axes: tuple[int, ...]) -> bool:
    """Whether the compiled sum of a ``shape`` table over ``axes`` gives ``np.add.reduce``'s
    bits on a random table (values over many orders of magnitude, both signs)."""
    rng = np.random.default_rng(len(shape) + 7 * len(axes))
    probe = np.exp(rng.normal(0.0, 4.0, shape)) * rng.choice([-1.0, 1.0], shape)
    expect = np.add.reduce(probe, axis=axes).ravel()
    kept = tuple(1 if a in axes else n for a, n in enumerate(shape))
    rows, width, kind = embedding(kept, shape, for_sum=True)
    out = np.empty(expect.size)
    _reduce_into(probe.ravel(), 0, probe.size, width, kind, rows, 0, out, 0, out.size)
    return bool(np.array_equal(out.view(np.uint64), expect.view(np.uint64)))


@functools.lru_cache(maxsize=4096)
def totals_like_numpy(cells: int) -> bool:
    """Whether the compiled sum of a whole ``cells``-cell table gives ``np.add.reduce``'s
    bits (``axis=None``) on a random one."""
    rng = np.random.default_rng(cells)
    probe = np.exp(rng.normal(0.0, 4.0, cells))
    return bool(np.float64(_pairwise(probe, 0, cells)).view(np.uint64)
                == np.add.reduce(probe, axis=None).view(np.uint64))


class CompiledPass:
    """The compiled HUGIN pass of one junction tree (see the module docstring). Build with
    :meth:`for_tree`, which gives None where the numpy path must stay."""

    def __init__(self, tree) -> None:
        shapes = tree.node_shapes
        sizes = [math.prod(s) for s in shapes]
        node_at = np.cumsum([0] + sizes)
        self.cells = int(node_at[-1])
        self.node_views = [(int(a), s) for a, s in zip(node_at[:-1], shapes)]
        self.nodes = np.array([[int(a), n] for a, n in zip(node_at[:-1], sizes)],
                              dtype=np.int64).reshape(-1, 2)
        index_parts: list[np.ndarray] = []
        index_at = 0

        def add_index(part: np.ndarray) -> int:
            nonlocal index_at
            index_parts.append(part)
            index_at += part.size
            return index_at - part.size

        clique_sizes = [math.prod(tree.domain.project(c).shape) for c in tree.cliques]
        theta_at = np.cumsum([0] + clique_sizes)
        rows = []
        for k, home in enumerate(tree.home):
            at, width, kind = embedding(tree.embed[k], shapes[home])
            rows.append([int(node_at[home]), sizes[home], int(theta_at[k]), add_index(at),
                         width, kind])
        self.cliques = np.array(rows, dtype=np.int64).reshape(-1, 6)
        self.theta_cells = int(theta_at[-1])

        work_at = 0
        plan, sent = [], {}
        for m in tree.messages:
            sep_n = math.prod(m.shape_in_target)
            src_rows, src_width, src_kind = embedding(m.shape_in_source, shapes[m.source])
            tgt_rows, tgt_width, tgt_kind = embedding(m.shape_in_target, shapes[m.target])
            sum_rows, sum_width, sum_kind = embedding(m.shape_in_source, shapes[m.source],
                                                      for_sum=True)
            msg, peak = work_at, work_at + sep_n
            work_at += 2 * sep_n
            plan.append([int(node_at[m.source]), sizes[m.source], int(node_at[m.target]),
                         sizes[m.target], sep_n, msg, peak, add_index(src_rows),
                         src_width, src_kind, add_index(tgt_rows), tgt_width,
                         tgt_kind, sent.get((m.target, m.source), -1),
                         add_index(sum_rows), sum_width, sum_kind])
            sent[(m.source, m.target)] = msg
        self.plan = np.array(plan, dtype=np.int64).reshape(-1, 17)
        self.index = (np.concatenate(index_parts) if index_parts
                      else np.zeros(0, dtype=np.int64))
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
