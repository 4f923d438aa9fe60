"""Exact fast paths for the fitter's operations on multi-dimensional node tables.

The junction tree's nodes are 5–6-dimensional tables in domain order (Census: up to ~10⁶
cells, axes of 2–17 values). numpy walks an operation over such a table with its innermost
loop on the last axis; when that axis is short (2 values) and a broadcast operand or a
reduction breaks the coalescing of axes, each inner loop touches two cells and the call
costs ~15 ns a cell instead of ~1 (measured: adding a (7,1,1,1,5,1) message into a
(7,8,8,9,5,2) node takes 152 µs, a same-shape add 9 µs).

The kernels here reach the same values another way, and only where the order of the work
cannot change a bit:

- :func:`broadcast_apply`: x ∘ s for an elementwise ``+``/``−`` (each output cell is one
  IEEE operation on the same two inputs, whatever the loop order), with ``s`` first expanded
  over x's trailing axes into a small contiguous block so the inner loop is long;
- :func:`sum_over`: a sum over some axes in numpy's own order of additions, with long loops;
- :func:`peak_over`: the max over some axes by the same steps (a maximum is exact in any
  order).

A floating-point sum depends on its order, so :func:`sum_over` keeps numpy's. For a
C-contiguous table ``np.add.reduce`` walks the cells in C order with its adjacent reduced
(or kept) axes joined: when the last axes are reduced, each run of them is summed pairwise
(``pairwise_sum``: one by one from −0.0 below 8 cells) and the runs are added into the
output one after another; when the last axes are kept, each output cell adds its cells one
by one in C order of the reduced indices. :func:`sum_over` takes the same two steps with
long loops: a run under 8 cells is added as a few strided whole-table adds, one of 8 to 15
cells the same way in pairwise_sum's unrolled order (((c0 + c1) + (c2 + c3)) + ((c4 + c5) +
(c6 + c7)), then the rest one by one; a longer one by numpy's own sum), and the one-by-one
fold runs over a transposed copy, reduced along its first axis (a copy moves bits, so it
cannot change a value), or onto at most 4 cells as a running sum down each column
(``accumulate``: the same additions). Where
numpy's own inner loop is long (≥ 32 cells) its call is kept. Each plan is checked against
numpy on a random table on first use and numpy's own call is kept if they differ by one bit
(a numpy that orders its sums otherwise); `tests/test_fit_kernels.py` checks them on random
shapes. The two steps of a sum whose numpy form is a short loop per row (a run's pairwise sum,
the fold's row after row) run as compiled loops of the same additions
(:mod:`~flaimsim.mechanisms.compiled`, numba) where numba is installed; ``FLAIMSIM_COMPILED=0``
keeps numpy's calls.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import warnings
from typing import Sequence

import numpy as np

Axes = tuple[int, ...]

_max = np.maximum.reduce
_add = np.add.reduce  # what ndarray.sum calls, without its Python wrapper

# Below these sizes numpy's own call is the faster: its per-call overhead rules.
_GATHERED_MAX_CELLS = 8192
_EXPANDED_CELLS = 4096
# The expanded block's length: long enough that a loop's overhead is spread over many cells.
_INNER_TARGET = 512
# numpy's own loop this long or longer runs near memory speed.
_LONG_LOOP = 32
# The slice plan's most calls (~1 µs of overhead each).
_MAX_SLICES = 24
# Below this many cells numpy's own sum is as fast.
_SUM_MIN_CELLS = 1024
# Below this many cells logsumexp's peak and shift run as one compiled call (measured: a
# 3,240-cell table 23.8 → 10.1 µs; at 56,700 cells numpy's calls are twice as fast).
_COMPILED_SHIFT_CELLS = 4096
# numpy's pairwise_sum adds a run shorter than this one cell at a time.
_PAIRWISE_BLOCK = 8
# A fold onto this few cells runs as an accumulate down the columns (long loops) instead of
# numpy's reduce, whose inner loop would be this short (measured: 1620 × 2, 18 → 8 µs).
_FEW_KEPT = 4


def peak_over(x: np.ndarray, axes: Axes) -> np.ndarray:
    """max of ``x`` over ``axes`` with the dimensions kept: the values of ``np.max``.

    A maximum is exact in any order, so this takes :func:`sum_over`'s steps with
    ``np.maximum`` (no check needed) where numpy's inner loop would be short, and gathers the
    reduced axes into one contiguous block where it is long. A ±0 tie may come out with
    either sign; where the fitter uses the peak (x − peak, then log Σ exp + peak) both give
    the same values."""
    if x.size < _SUM_MIN_CELLS:
        return _max(x, axis=axes, keepdims=True)
    keep = _kept_shape(x.shape, tuple(axes))
    plan = _reduce_plan(x.shape, tuple(axes))
    if plan is not None and x.flags.c_contiguous and x.dtype == np.float64:
        return _run_reduce_plan(np.maximum, x, plan).reshape(keep)
    if x.size < _GATHERED_MAX_CELLS:
        return _max(x, axis=axes, keepdims=True)
    # numpy's inner loop is long but a max reduce along it still pays per loop: gather the
    # reduced axes into one contiguous block (R × K or K × R, the longer side inside)
    kept_axes, reduced, kept = _gather_plan(x.shape, axes)
    if reduced >= kept:
        block = np.ascontiguousarray(x.transpose(kept_axes + axes)).reshape(kept, reduced)
        peak = _max(block, axis=1)
    else:
        block = np.ascontiguousarray(x.transpose(axes + kept_axes)).reshape(reduced, kept)
        peak = _max(block, axis=0)
    return peak.reshape(keep)


@functools.lru_cache(maxsize=4096)
def _kept_shape(shape: tuple[int, ...], axes: Axes) -> tuple[int, ...]:
    """``shape`` with the reduced ``axes`` set to 1 (keepdims)."""
    return tuple(1 if a in axes else n for a, n in enumerate(shape))


@functools.lru_cache(maxsize=4096)
def _gather_plan(shape: tuple[int, ...], axes: Axes) -> tuple[Axes, int, int]:
    """The kept axes, and the numbers of reduced and kept cells, of a max over ``axes``."""
    kept_axes = tuple(a for a in range(len(shape)) if a not in axes)
    reduced = math.prod(shape[a] for a in axes)
    return kept_axes, reduced, math.prod(shape) // reduced


def broadcast_apply(op: np.ufunc, x: np.ndarray, small: np.ndarray,
                    out: np.ndarray | None = None) -> np.ndarray:
    """``op(x, small, out=out)`` for ``small`` broadcast to x's shape (same number of axes),
    ``op`` one of ``np.add`` / ``np.subtract``: the same values, cell for cell.

    When numpy's own inner loop would be short, one of two plans makes it long:
    - expand: x viewed as (outer axes …, inner block of ≥ 512 cells), ``small`` copied over
      the block (at most a quarter of x's size);
    - slice: a few calls, one per index of x's short trailing axes, each over the leading
      axes, which join into one long strided loop."""
    if (x.size < _EXPANDED_CELLS or not x.flags.c_contiguous
            or (out is not None and not out.flags.c_contiguous) or small.ndim != x.ndim):
        return op(x, small, out=out)
    plan = _broadcast_plan(x.shape, small.shape)
    if plan is None:
        return op(x, small, out=out)
    if plan[0] == "expand":
        _, x_view_shape, small_expanded_shape, small_view_shape, grouped = plan
        loops = None if grouped is None else _compiled()
        if loops is not None:   # the same copy, without numpy's short inner loops
            expanded = loops.expand4(np.ascontiguousarray(small).reshape(grouped[1]),
                                     grouped[0])
        else:
            expanded = np.ascontiguousarray(np.broadcast_to(small, small_expanded_shape))
        target = None if out is None else out.reshape(x_view_shape)
        result = op(x.reshape(x_view_shape), expanded.reshape(small_view_shape), out=target)
        return result.reshape(x.shape) if out is None else out
    _, x_indices, small_indices = plan
    if out is None:
        out = np.empty_like(x)
    for xi, si in zip(x_indices, small_indices):
        op(x[xi], small[si], out=out[xi])
    return out


@functools.lru_cache(maxsize=4096)
def _broadcast_plan(shape: tuple[int, ...], small: tuple[int, ...]) -> tuple | None:
    """The plan of :func:`broadcast_apply` for these shapes, or None for numpy's own call."""
    if any(s not in (1, n) for s, n in zip(small, shape)):
        return None
    if _numpy_inner_loop(shape, small) >= _LONG_LOOP:
        return None
    size = math.prod(shape)
    split, inner = len(shape), 1
    while split > 0 and inner < _INNER_TARGET:
        split -= 1
        inner *= shape[split]
    outer_small = small[:split]
    if math.prod(outer_small) * inner * 4 <= size:
        expanded = outer_small + shape[split:]
        return ("expand", shape[:split] + (inner,), expanded, outer_small + (inner,),
                _grouped_copy(expanded, small))
    fixed, calls = len(shape), 1
    while fixed > 1 and calls * shape[fixed - 1] <= _MAX_SLICES:
        fixed -= 1
        calls *= shape[fixed]
        if _numpy_inner_loop(shape[:fixed], small[:fixed]) >= _LONG_LOOP:
            break
    if fixed == len(shape) or _numpy_inner_loop(shape[:fixed], small[:fixed]) < _LONG_LOOP:
        return None
    x_indices, small_indices = [], []
    for index in itertools.product(*(range(n) for n in shape[fixed:])):
        x_indices.append((Ellipsis,) + index)
        small_indices.append((Ellipsis,) + tuple(i if s > 1 else 0
                                                 for i, s in zip(index, small[fixed:])))
    return ("slice", tuple(x_indices), tuple(small_indices))


def _joined_axes(shape: tuple[int, ...], flags: Sequence[bool]) -> list[list]:
    """``shape``'s axes as numpy joins them: adjacent axes with the same flag (reduced, kept,
    broadcast …) become one group [cells, flag]; 1-value axes vanish."""
    groups: list[list] = []
    for n, flag in zip(shape, flags):
        if n == 1:
            continue
        if groups and groups[-1][1] == flag:
            groups[-1][0] *= n
        else:
            groups.append([n, flag])
    return groups


def _four_groups(shape: tuple[int, ...], flags: Sequence[bool]) -> list[list] | None:
    """:func:`_joined_axes` padded in front to exactly 4 groups (of 1 cell, flag True) for
    the compiled 4-D loops, or None beyond 4 groups."""
    groups = _joined_axes(shape, flags)
    return None if len(groups) > 4 else [[1, True]] * (4 - len(groups)) + groups


def _grouped_copy(shape: tuple[int, ...], small: tuple[int, ...]
                  ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """``small`` broadcast to ``shape`` as a copy over at most 4 groups of adjacent axes, all
    full or all broadcast in ``small``: (the copy's 4-D shape, ``small``'s 4-D shape), or None
    beyond 4 groups."""
    groups = _four_groups(shape, [m == n for n, m in zip(shape, small)])
    if groups is None:
        return None
    return (tuple(n for n, _ in groups), tuple(n if full else 1 for n, full in groups))


def _numpy_inner_loop(shape: tuple[int, ...], small: tuple[int, ...]) -> int:
    """Cells in numpy's innermost loop: x's trailing axes over which ``small`` is all
    broadcast or all full, joined (axes of one value join either)."""
    inner, kind = 1, None
    for n, s in zip(reversed(shape), reversed(small)):
        if n == 1:
            continue
        this = s == n
        if kind is not None and this != kind:
            break
        kind, inner = this, inner * n
    return inner


def sum_over(x: np.ndarray, axes: Axes) -> np.ndarray:
    """``np.add.reduce(x, axis=axes)``, the same bits, faster where numpy's inner loops are
    short (see the module docstring for the order of additions it keeps)."""
    if (x.size < _SUM_MIN_CELLS or not x.flags.c_contiguous or not axes
            or x.dtype != np.float64):
        return _add(x, axis=axes)
    plan = _checked_sum_plan(x.shape, tuple(axes))
    return _add(x, axis=axes) if plan is None else _run_reduce_plan(np.add, x, plan)


@functools.lru_cache(maxsize=4096)
def _checked_sum_plan(shape: tuple[int, ...], axes: Axes) -> tuple | None:
    """The plan of :func:`sum_over`, kept only if it gives numpy's bits on a random table."""
    plan = _reduce_plan(shape, axes)
    if plan is None:
        return None
    probe = np.exp(np.random.default_rng(len(shape)).normal(0.0, 4.0, shape))
    if not np.array_equal(_run_reduce_plan(np.add, probe, plan).view(np.uint64),
                          _add(probe, axis=axes).view(np.uint64)):
        warnings.warn(f"numpy {np.__version__} sums a {shape} table over {axes} in another "
                      "order than flaimsim's kernel expects: using numpy's own sum",
                      RuntimeWarning, stacklevel=3)
        return None
    return plan


@functools.lru_cache(maxsize=4096)
def _reduce_plan(shape: tuple[int, ...], axes: Axes) -> tuple | None:
    """(steps, output shape) of a reduction over ``axes``, or None where numpy's own call is
    as good (its inner loop, the last group of axes, is long). The axes are first joined as
    numpy joins them: adjacent axes both reduced or both kept (1-value axes vanish)."""
    groups = _joined_axes(shape, [a in axes for a in range(len(shape))])  # [cells, reduced]
    if (len(groups) < 2 or not any(reduced for _, reduced in groups)
            or groups[-1][0] >= _LONG_LOOP):  # numpy's inner loop is long already
        return None
    steps: list[tuple] = []
    if groups[-1][1]:  # the last axes are reduced: sum each run of them
        run = groups.pop()[0]
        view = tuple(n for n, _ in groups) + (run,)
        steps.append(("runs", view, run))
    if any(reduced for _, reduced in groups):  # then add the runs (or cells) one by one
        sizes = tuple(n for n, _ in groups)
        order = (tuple(i for i, (_, r) in enumerate(groups) if r)
                 + tuple(i for i, (_, r) in enumerate(groups) if not r))
        reduced = math.prod(n for n, r in groups if r)
        steps.append(("fold", sizes, order, (reduced, math.prod(sizes) // reduced)))
    return tuple(steps), tuple(n for a, n in enumerate(shape) if a not in axes)


def _run_reduce_plan(op: np.ufunc, x: np.ndarray, plan: tuple) -> np.ndarray:
    """The reduction of ``x`` by ``op`` (``np.add`` or ``np.maximum``) along ``plan``."""
    steps, out_shape = plan
    loops = _compiled() if op is np.add else None   # compiled sums; a max stays numpy's
    y = x
    for step in steps:
        if step[0] == "runs":
            _, view, run = step
            cells = y.reshape(view)
            if loops is not None:
                y = loops.pairwise_rows(cells.reshape(-1, run)).reshape(view[:-1])
            elif run >= 2 * _PAIRWISE_BLOCK:
                y = op.reduce(cells, axis=-1)
            elif run >= _PAIRWISE_BLOCK:  # pairwise_sum's unrolled branch, 8 runs at once
                y = op(op(cells[..., 0], cells[..., 1]), op(cells[..., 2], cells[..., 3]))
                op(y, op(op(cells[..., 4], cells[..., 5]), op(cells[..., 6], cells[..., 7])),
                   out=y)
                for i in range(_PAIRWISE_BLOCK, run):
                    op(y, cells[..., i], out=y)
            else:  # pairwise_sum's short branch: −0.0 + a + b + … (−0.0 + a = a exactly)
                y = op(cells[..., 0], cells[..., 1])
                for i in range(2, run):
                    op(y, cells[..., i], out=y)
        else:  # fold: the last kept axes move as one element of their bytes (long copies)
            _, sizes, order, matrix = step
            item = _void(sizes[-1] * y.itemsize)
            cells = np.ascontiguousarray(y).reshape(sizes).view(item)[..., 0]
            moved = np.ascontiguousarray(cells.transpose(order[:-1]))
            rows = moved.view(x.dtype).reshape(matrix)
            if loops is not None:
                y = loops.fold_rows(rows)
            elif matrix[1] <= _FEW_KEPT:  # a running sum down each column: the same additions
                y = op.accumulate(rows, axis=0)[-1]
            else:
                y = op.reduce(rows, axis=0)
    return y.reshape(out_shape)


def peak_and_shift(x: np.ndarray, axes: Axes) -> tuple[np.ndarray, np.ndarray] | None:
    """(x − peak, peak) for logsumexp, peak = max over ``axes`` (dims kept) with a
    non-finite peak set to 0, in one compiled call for tables below ``_COMPILED_SHIFT_CELLS``
    (numpy's three calls and a finiteness check cost more there); None where it does not
    apply (larger tables, more than 4 groups of axes, no compiled loops). The same values:
    a maximum is exact in any order and the shift is one subtraction a cell."""
    if x.size >= _COMPILED_SHIFT_CELLS or x.dtype != np.float64:
        return None
    groups = _peak_groups(x.shape, tuple(axes))
    loops = _compiled() if groups is not None else None
    if loops is None:
        return None
    shifted, peak = loops.peak_shift4(np.ascontiguousarray(x).reshape(groups[0]), groups[1])
    return shifted.reshape(x.shape), peak.reshape(_kept_shape(x.shape, tuple(axes)))


@functools.lru_cache(maxsize=4096)
def _peak_groups(shape: tuple[int, ...], axes: Axes
                 ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """``shape`` as at most 4 groups of adjacent axes, all reduced or all kept: (the 4-D
    shape, 1 for a kept group and 0 for a reduced one), or None beyond 4 groups."""
    groups = _four_groups(shape, [a not in axes for a in range(len(shape))])  # [cells, kept]
    if groups is None:
        return None
    return tuple(n for n, _ in groups), tuple(int(k) for _, k in groups)


@functools.cache
def _compiled():
    """The compiled loops (:mod:`~flaimsim.mechanisms.compiled`), or None: without numba,
    or with ``FLAIMSIM_COMPILED=0`` (numpy's calls only; the same values)."""
    if os.environ.get("FLAIMSIM_COMPILED", "1") == "0":
        return None
    from flaimsim.mechanisms import compiled

    return compiled if compiled.AVAILABLE else None


@functools.lru_cache(maxsize=256)
def _void(nbytes: int) -> np.dtype:
    """The dtype of ``nbytes`` raw bytes (built once: numpy's constructor is slow)."""
    return np.dtype((np.void, nbytes))
