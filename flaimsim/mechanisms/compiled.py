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

PAIRWISE_MAX = 128   # numpy's PW_BLOCKSIZE: longer runs are split in two, not handled here


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
        out[r] = _pairwise_block(m[r])
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
    if n <= 128:
        return _pairwise_block(a[start:start + n])
    return _pairwise_walk(a, start, n, np.empty((_PAIRWISE_DEPTH, 3), dtype=np.int64),
                          np.empty(_PAIRWISE_DEPTH))


def _pairwise_walk(a: np.ndarray, start: int, n: int, stack: np.ndarray,
                   values: np.ndarray) -> float:
    # halves (each a multiple of 8 cells) down to blocks of ≤ 128, then left + right up the
    # tree, walked with a stack (``stack``, ``values``: scratch a caller may reuse), not by
    # recursion: numba's cache of a recursive function crashed the process once its source
    # changed
    if n <= 128:
        return _pairwise_block(a[start:start + n])
    top, count = 0, 0
    stack[0, 0], stack[0, 1], stack[0, 2] = start, n, 0
    while top >= 0:
        s, m = stack[top, 0], stack[top, 1]
        if m <= 128:
            values[count] = _pairwise_block(a[s:s + m])
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


def _jit(func):
    """``func`` compiled, its machine code cached on disk; where numba finds no writable
    place for the cache (a read-only install and home) it raises at this point, and the
    function is compiled in memory, once per process, instead."""
    try:
        return njit(cache=True, nogil=True)(func)
    except RuntimeError:
        return njit(cache=False, nogil=True)(func)


if njit is not None:
    pairwise_block = _pairwise_block = _jit(_pairwise_block)
    pairwise_walk = _pairwise_walk = _jit(_pairwise_walk)
    pairwise_sum = _jit(_pairwise_sum)
    lane_max = _jit(_lane_max)
    fold_rows = _jit(_fold_rows)
    peak_shift4 = _jit(_peak_shift4)
    pairwise_rows = _jit(_pairwise_rows)
    expand4 = _jit(_expand4)
    AVAILABLE = True
else:  # pragma: no cover
    fold_rows = pairwise_rows = expand4 = peak_shift4 = pairwise_sum = lane_max = None
    pairwise_block = pairwise_walk = None
    AVAILABLE = False

__all__ = ["AVAILABLE", "PAIRWISE_MAX", "expand4", "fold_rows", "lane_max", "pairwise_block",
           "pairwise_rows", "pairwise_sum", "pairwise_walk", "peak_shift4"]
