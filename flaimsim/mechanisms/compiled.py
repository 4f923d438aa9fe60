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
    rows, n = m.shape
    out = np.empty(rows)
    for r in range(rows):
        if n < 8:
            res = -0.0
            for i in range(n):
                res += m[r, i]
        else:
            r0, r1, r2, r3 = m[r, 0], m[r, 1], m[r, 2], m[r, 3]
            r4, r5, r6, r7 = m[r, 4], m[r, 5], m[r, 6], m[r, 7]
            i = 8
            while i < n - (n % 8):
                r0 += m[r, i]
                r1 += m[r, i + 1]
                r2 += m[r, i + 2]
                r3 += m[r, i + 3]
                r4 += m[r, i + 4]
                r5 += m[r, i + 5]
                r6 += m[r, i + 6]
                r7 += m[r, i + 7]
                i += 8
            res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
            while i < n:
                res += m[r, i]
                i += 1
        out[r] = res
    return out


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
    fold_rows = _jit(_fold_rows)
    peak_shift4 = _jit(_peak_shift4)
    pairwise_rows = _jit(_pairwise_rows)
    expand4 = _jit(_expand4)
    AVAILABLE = True
else:  # pragma: no cover
    fold_rows = pairwise_rows = expand4 = peak_shift4 = None
    AVAILABLE = False

__all__ = ["AVAILABLE", "PAIRWISE_MAX", "expand4", "fold_rows", "pairwise_rows", "peak_shift4"]
