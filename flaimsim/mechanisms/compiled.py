"""Compiled loops (numba) for the steps of the fitter's kernels
(:mod:`~flaimsim.mechanisms.kernels`) whose numpy form pays per short inner loop: the same
IEEE additions in the same order, or the same copies.

- :func:`fold_rows`: ``np.add.reduce(m, axis=0)`` of a C-contiguous R × K matrix, i.e. each
  column summed top to bottom one by one (numpy's order when the reduced axes come first);
  numpy's inner loop is one row of K cells, ~10 ns of overhead a row (a 3150 × 18 fold:
  56 µs), here a compiled double loop (9 µs).
- :func:`pairwise_rows`: ``np.add.reduce(m, axis=-1)`` of an R × n matrix with n ≤ 128, each
  row by numpy's ``pairwise_sum``: below 8 cells one by one from −0.0, else eight running
  sums over the 8-cell blocks, joined ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then
  the remaining cells one by one.
- :func:`pairwise_block`: the same for one run of at most 128 cells; :func:`pairwise_walk`:
  :func:`pairwise_sum` with scratch the caller reuses over many runs.
- :func:`pairwise_sum`: ``np.add.reduce`` of a contiguous run of any length, numpy's
  pairwise_sum (halves of multiples of 8 cells down to blocks of ≤ 128), walked with a stack
  (numba's cache of a recursive function crashed the process once its source changed).
- :func:`lane_max`: the maximum of a run in eight independent lanes (exact in any order).
- :func:`expand4`: ``np.broadcast_to(small, shape)`` copied, for the broadcast kernel's
  expanded block, over 4 groups of axes (numpy's copy loops over the short last group).
- :func:`peak_shift4`: logsumexp's max over the reduced groups (a non-finite one set to 0)
  and x − max, in one call instead of numpy's three and a check (small tables, where the
  calls cost more than the cells: a 3,240-cell table 23.8 → 10.1 µs).

The loops of the junction tree's pass and the fitter's loss (built and called by
:mod:`~flaimsim.mechanisms.compiled_pass` and :mod:`~flaimsim.mechanisms.compiled_loss`)
live here too, with every loop they call: numba caches a function together with the jitted
functions it calls but checks only its own source file for changes, so a caller in another
file keeps a callee's old code after the callee changes (seen: a stale sum in the loss's
cache). `tests/test_compiled_pass.py` checks that no other module defines jitted functions.

Compiled without ``fastmath``: LLVM may not reassociate a floating-point sum, so each output
is the same chain of additions as numpy's (a loop across independent columns may be
vectorised, which changes no value). The kernels are checked against numpy by the plan check
of :mod:`~flaimsim.mechanisms.kernels` on first use, and by `tests/test_fit_kernels.py`.
Compiled code is cached on disk (numba's ``cache=True``); without numba the callers keep
numpy's calls.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except Exception:  # pragma: no cover - numba comes with umap-learn; numpy's calls remain
    njit = None

PAIRWISE_MAX = 128   # numpy's PW_BLOCKSIZE: longer runs are split in two


def _fold_rows(m: np.ndarray) -> np.ndarray:
    rows, cols = m.shape
    out = m[0].copy()          # −0.0 + m[0] = m[0]: numpy's identity changes nothing
    for r in range(1, rows):
        for k in range(cols):
            out[k] += m[r, k]
    return out


def _pairwise_rows(m: np.ndarray) -> np.ndarray:
    out = np.empty(m.shape[0])
    for r in range(m.shape[0]):
        out[r] = pairwise_block(m[r])
    return out


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


_PAIRWISE_DEPTH = 2 * 64   # the walk's deepest stack (n < 2**64)


def _pairwise_sum(a: np.ndarray, start: int, n: int) -> float:
    # numpy's pairwise_sum of a[start:start + n]
    if n <= PAIRWISE_MAX:
        return pairwise_block(a[start:start + n])
    return pairwise_walk(a, start, n, np.empty((_PAIRWISE_DEPTH, 3), dtype=np.int64),
                          np.empty(_PAIRWISE_DEPTH))


def _pairwise_walk(a: np.ndarray, start: int, n: int, stack: np.ndarray,
                   values: np.ndarray) -> float:
    # halves (each a multiple of 8 cells) down to blocks of ≤ 128, then left + right up the
    # tree, walked with a stack (``stack``, ``values``: scratch a caller may reuse), not by
    # recursion: numba's cache of a recursive function crashed the process once its source
    # changed
    if n <= PAIRWISE_MAX:
        return pairwise_block(a[start:start + n])
    top, count = 0, 0
    stack[0, 0], stack[0, 1], stack[0, 2] = start, n, 0
    while top >= 0:
        s, m = stack[top, 0], stack[top, 1]
        if m <= PAIRWISE_MAX:
            values[count] = pairwise_block(a[s:s + m])
            count += 1
            top -= 1
            continue
        half = m // 2
        half -= half % 8
        if stack[top, 2] == 0:
            stack[top, 2] = 1
            top += 1
            stack[top, 0], stack[top, 1], stack[top, 2] = s, half, 0
        elif stack[top, 2] == 1:
            stack[top, 2] = 2
            top += 1
            stack[top, 0], stack[top, 1], stack[top, 2] = s + half, m - half, 0
        else:
            values[count - 2] = values[count - 2] + values[count - 1]
            count -= 1
            top -= 1
    return values[0]


def _lane_max(x: np.ndarray) -> float:
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


def _expand4(small: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    out = np.empty(shape)
    a_on = 1 if small.shape[0] > 1 else 0   # 0: that group is broadcast
    b_on = 1 if small.shape[1] > 1 else 0
    c_on = 1 if small.shape[2] > 1 else 0
    d_on = 1 if small.shape[3] > 1 else 0
    for a in range(shape[0]):
        for b in range(shape[1]):
            for c in range(shape[2]):
                for d in range(shape[3]):
                    out[a, b, c, d] = small[a * a_on, b * b_on, c * c_on, d * d_on]
    return out


def _peak_shift4(x: np.ndarray, kept: tuple[int, int, int, int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    a_on, b_on, c_on, d_on = kept   # 1: that group is kept, 0: reduced
    A, B, C, D = x.shape
    peak = np.full((A if a_on else 1, B if b_on else 1, C if c_on else 1, D if d_on else 1),
                   -np.inf)
    for a in range(A):
        for b in range(B):
            for c in range(C):
                for d in range(D):
                    v = x[a, b, c, d]
                    p = peak[a * a_on, b * b_on, c * c_on, d * d_on]
                    if v > p or v != v:     # np.maximum's: a NaN wins, −inf stays −inf
                        peak[a * a_on, b * b_on, c * c_on, d * d_on] = v
    flat = peak.ravel()
    for i in range(flat.size):
        if not np.isfinite(flat[i]):   # a −inf (structural zero) or NaN peak: shift by 0
            flat[i] = 0.0
    shifted = np.empty_like(x)
    for a in range(A):
        for b in range(B):
            for c in range(C):
                for d in range(D):
                    shifted[a, b, c, d] = x[a, b, c, d] - peak[a * a_on, b * b_on, c * c_on,
                                                               d * d_on]
    return shifted, peak


# ---- the junction tree's pass and the fitter's loss (compiled_pass, compiled_loss) -------
# They live here, with every loop they call: numba caches a function with the code of the
# jitted functions it calls, but checks only its own file for changes, so a caller in
# another file would keep a callee's old code (seen: a stale sum in the loss's cache).

# columns of a message's row in a pass's plan; an embedding of a smaller table in a node is
# (index, row length, kind: see compiled_pass.embedding)
(_SRC, _SRC_N, _TGT, _TGT_N, _SEP_N, _MSG, _PEAK, _IDX_SRC, _L_SRC, _KIND_SRC, _IDX_TGT,
 _L_TGT, _KIND_TGT, _BACK, _IDX_SUM, _RUN) = range(16)
# how the cells of a node row take their small cells
BROADCAST, FULL, PATTERN = 0, 1, 2


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
    elif run < 16:   # pairwise_sum's eight sums of one cell each, then the rest in turn
        for j in range(combos):
            at = cells[bases[j]:]
            for o in range(out_n):
                x = at[offsets[o]:offsets[o] + run]
                res = ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]))
                for k in range(8, run):
                    res += x[k]
                target[o] += res
    elif run <= PAIRWISE_MAX:
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
    # out = a + small, a − small (sign ±1) or small (sign 0), small broadcast onto n cells,
    # row by row (out may be a); one IEEE operation a cell
    count = n // width
    _gather_rows(out[out_at:out_at + n], a[a_at:a_at + n], small[small_at:],
                 rows[rows_at:rows_at + count], rows[rows_at + count:rows_at + count + width],
                 width, kind, sign)


def _gather_rows(dst: np.ndarray, src: np.ndarray, tail: np.ndarray, starts: np.ndarray,
                 offsets: np.ndarray, width: int, kind: int, sign: int) -> None:
    # _gather on rows already cut: ``starts`` the rows' first small cells, ``offsets`` a
    # PATTERN block's offsets (unused by the other kinds)
    if kind == PATTERN:
        _gather_pattern(dst, src, tail, starts, offsets.view(np.uint64), sign)
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
                offsets_at = rows_at + n // width
                _gather_rows(cells, cells, theta[theta_at:],
                             index[rows_at + begin // width:rows_at + (begin + chunk) // width],
                             index[offsets_at:offsets_at + width], width, kind, 1)
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


def _marginals_and_residuals(beliefs: np.ndarray, mu: np.ndarray, residual: np.ndarray,
                             y: np.ndarray, index: np.ndarray, cliques: np.ndarray,
                             measured: np.ndarray) -> None:
    for c in range(cliques.shape[0]):
        node, n, at, cells = cliques[c, 0], cliques[c, 1], cliques[c, 2], cliques[c, 3]
        if cliques[c, 6]:
            _reduce_into(beliefs, node, n, cliques[c, 5], index, cliques[c, 4], mu, at, cells)
        else:
            mu[at:at + cells] = beliefs[node:node + n]
    for m in range(measured.shape[0]):
        at, n, out, cells, y_at = (measured[m, 0], measured[m, 1], measured[m, 2],
                                   measured[m, 3], measured[m, 4])
        if measured[m, 7]:
            _reduce_into(mu, at, n, measured[m, 6], index, measured[m, 5], residual, out, cells)
            for i in range(cells):
                residual[out + i] -= y[y_at + i]
        else:
            for i in range(cells):
                residual[out + i] = mu[at + i] - y[y_at + i]


def _gradient(residual: np.ndarray, grad: np.ndarray, weights: np.ndarray, index: np.ndarray,
              measured: np.ndarray) -> None:
    for m in range(measured.shape[0]):
        at, n, out, cells = measured[m, 0], measured[m, 1], measured[m, 2], measured[m, 3]
        for i in range(cells):
            residual[out + i] *= weights[m]
        # a clique's first term is copied, not added to zeros (0 + x = x: μ ≥ 0, no −0.0)
        _gather(grad, at, grad, at, n, residual, out, measured[m, 9], measured[m, 10], index,
                measured[m, 8], 0 if measured[m, 11] else 1)


def _jit(func):
    """``func`` compiled, its machine code cached on disk; where numba finds no writable
    place for the cache (a read-only install and home) it raises at this point, and the
    function is compiled in memory, once per process, instead."""
    try:
        return njit(cache=True, nogil=True)(func)
    except RuntimeError:
        return njit(cache=False, nogil=True)(func)


if njit is not None:
    pairwise_block = _jit(_pairwise_block)
    pairwise_walk = _jit(_pairwise_walk)
    pairwise_sum = _jit(_pairwise_sum)
    lane_max = _jit(_lane_max)
    fold_rows = _jit(_fold_rows)
    peak_shift4 = _jit(_peak_shift4)
    pairwise_rows = _jit(_pairwise_rows)
    expand4 = _jit(_expand4)
    _peak_pattern = _jit(_peak_pattern)
    _reduce_into = _jit(_reduce_into)
    _gather_pattern = _jit(_gather_pattern)
    _gather_full = _jit(_gather_full)
    _gather_broadcast = _jit(_gather_broadcast)
    _gather_rows = _jit(_gather_rows)
    _gather = _jit(_gather)
    _init_beliefs = _jit(_init_beliefs)
    _finish = _jit(_finish)
    _start = _jit(_start)
    _between = _jit(_between)
    _sum_message = _jit(_sum_message)
    _shift_nodes = _jit(_shift_nodes)
    _scale_nodes = _jit(_scale_nodes)
    _marginals_and_residuals = _jit(_marginals_and_residuals)
    _gradient = _jit(_gradient)
    AVAILABLE = True
else:  # pragma: no cover
    fold_rows = pairwise_rows = expand4 = peak_shift4 = pairwise_sum = lane_max = None
    pairwise_block = pairwise_walk = None
    AVAILABLE = False

__all__ = ["AVAILABLE", "PAIRWISE_MAX", "expand4", "fold_rows", "lane_max", "pairwise_block",
           "pairwise_rows", "pairwise_sum", "pairwise_walk", "peak_shift4"]
