"""The fitter's exact kernels (flaimsim.mechanisms.kernels) give numpy's values bit for bit,
on every plan they choose, and a junction tree with Census-sized nodes (where they run)
still gives the plain expressions' marginals bit for bit (issue 26: a faster fit may not
move a single result)."""

from __future__ import annotations

import numpy as np
import pytest

from flaimsim.mechanisms import kernels
from flaimsim.mechanisms.junction import JunctionTree
from flaimsim.mechanisms.mbi_setup import mbi

from test_fit_step_exact import plain_logsumexp, plain_node_marginals


def bits(a: np.ndarray) -> np.ndarray:
    """The IEEE bit patterns: −0.0 and 0.0 differ here, NaNs compare by payload."""
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


@pytest.fixture(params=["compiled", "numpy"])
def loops(request, monkeypatch):
    """Each kernel test twice: with the compiled loops (numba) and with numpy's calls only
    (``FLAIMSIM_COMPILED=0``, also what runs without numba)."""
    monkeypatch.setenv("FLAIMSIM_COMPILED", "1" if request.param == "compiled" else "0")
    kernels._compiled.cache_clear()
    kernels._checked_sum_plan.cache_clear()
    if request.param == "compiled":
        assert kernels._compiled() is not None, "numba is installed with umap-learn"
    yield request.param
    kernels._compiled.cache_clear()
    kernels._checked_sum_plan.cache_clear()


def table(shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 5, shape)
    x.flat[rng.choice(x.size, max(1, x.size // 50), replace=False)] = -np.inf
    x.flat[rng.choice(x.size, max(1, x.size // 100), replace=False)] = 0.0
    x.flat[rng.choice(x.size, max(1, x.size // 100), replace=False)] = -0.0
    return x


@pytest.mark.parametrize("shape, small, plan", [
    ((7, 8, 8, 9, 5, 2), (7, 1, 1, 1, 5, 1), "expand"),
    ((7, 8, 6, 8, 9, 5), (1, 8, 6, 8, 1, 5), "expand"),
    ((9, 7, 15, 6, 5, 2), (1, 7, 15, 6, 1, 2), "expand"),   # the copy in 4 groups
    ((9, 7, 15, 6, 5, 2), (9, 1, 1, 1, 1, 2), "expand"),
    ((8, 4, 3, 4, 3, 4, 3), (1, 4, 1, 4, 1, 4, 1), "expand"),  # 6 groups: numpy's copy
    ((7, 8, 8, 9, 5, 2), (7, 8, 8, 9, 1, 2), "slice"),
    ((7, 8, 8, 9, 5, 2), (7, 8, 8, 9, 5, 1), "slice"),
    ((47, 7, 8, 2), (1, 7, 8, 1), "slice"),
    ((7, 8, 6, 8, 9, 5), (7, 8, 1, 8, 9, 5), None),   # numpy's loop is long already
    ((3, 4, 5), (3, 1, 5), None),                     # too small to pay
])
@pytest.mark.parametrize("op", [np.add, np.subtract])
def test_broadcast_apply_gives_numpys_bits_on_every_plan(shape, small, plan, op, loops):
    found = kernels._broadcast_plan(shape, small) if np.prod(shape) >= 4096 else None
    assert (found and found[0]) == plan
    x, s = table(shape, 1), table(small, 2)
    s.flat[0] = np.inf  # inf − inf = NaN must come out where numpy puts it
    expected = op(x, s)
    assert np.array_equal(bits(kernels.broadcast_apply(op, x, s)), bits(expected))
    out = x.copy()
    returned = kernels.broadcast_apply(op, out, s, out=out)
    assert returned is out
    assert np.array_equal(bits(out), bits(expected))


@pytest.mark.parametrize("shape, axes", [
    ((7, 8, 8, 9, 5, 2), (1, 2, 3, 5)),   # reduced block the longer side
    ((7, 8, 8, 9, 5, 2), (4,)),           # kept block the longer side
    ((7, 8, 6, 8, 9, 5), (0, 4)),
    ((32, 7, 6, 8), (1, 2)),
    ((3, 4, 5), (0, 2)),                  # numpy's own call
])
@pytest.mark.parametrize("corner", [None, 0, -1])
def test_peak_over_is_numpys_max(shape, axes, corner):
    x = table(shape, 3)
    if corner is not None:  # each max at the first / last cell of its block
        x = -np.abs(x)
        x[tuple(corner if a in axes else slice(None) for a in range(x.ndim))] = 1.0
    x[(0,) * x.ndim] = np.nan if shape[0] > 3 else x[(0,) * x.ndim]  # NaN propagates
    x[(1,) + (slice(None),) * (x.ndim - 1)] = -np.inf                # an all −inf slab
    expected = np.max(x, axis=axes, keepdims=True)
    got = kernels.peak_over(x, axes)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.isnan(got).sum() == np.isnan(expected).sum()


@pytest.mark.parametrize("structural_zero", [False, True])
def test_census_sized_junction_tree_gives_the_plain_marginals_bit_for_bit(structural_zero,
                                                                        loops):
    cols = ("a", "b", "c", "d", "e", "f", "g")
    domain = mbi.Domain(cols, (7, 8, 8, 9, 5, 2, 6))
    cliques = [("a", "b", "c", "d", "e"), ("a", "d", "e", "f"), ("b", "c", "f", "g"),
               ("e", "f", "g"), ("c", "d", "f")]
    tree = JunctionTree(domain, cliques)
    # the kernels' plans run on this tree (else the test would check numpy against itself)
    plans = {(kernels._broadcast_plan(tree.node_shapes[m.target], m.shape_in_target)
              or ("numpy",))[0] for m in tree.messages}
    plans |= {(kernels._broadcast_plan(tree.node_shapes[m.source], m.shape_in_source)
               or ("numpy",))[0] for m in tree.messages}
    assert max(np.prod(s) for s in tree.node_shapes) >= 8192
    assert plans & {"expand", "slice"}, plans
    rng = np.random.default_rng(5)
    thetas = [rng.normal(0, 3, domain.project(c).shape) for c in tree.cliques]
    if structural_zero:
        thetas[0][0] = -np.inf
    nodes = tree.node_marginals(thetas, 48_842.0)
    for got, want in zip(nodes, plain_node_marginals(tree, thetas, 48_842.0), strict=True):
        assert np.array_equal(bits(got), bits(want))


@pytest.mark.parametrize("shape, axes, steps", [
    ((9, 7, 15, 6, 5, 2), (1, 2, 3, 4), ("fold",)),        # kept axes at both ends
    ((9, 7, 15, 6, 5, 2), (0, 2, 3, 5), ("runs", "fold")),  # a short run of 2, then a fold
    ((9, 7, 15, 6, 5, 2), (1, 2, 4, 5), ("runs", "fold")),  # a run of 10: numpy's pairwise
    ((16, 7, 15, 6, 2), (1, 2, 3), ("fold",)),
    ((16, 2, 7, 15, 40), (1, 3), None),                      # the kept loop is long already
    ((40, 30, 3), (1, 2), None),                             # so is the reduced run
    ((2000, 5), (1,), ("runs",)),                            # one short run per output cell
    ((20, 9, 6, 5), (1, 3), ("runs", "fold")),               # a short run of 5
    ((5, 1, 300, 1, 3), (0, 2), ("fold",)),                  # 1-value axes vanish
    ((6000,), (0,), None),                                   # numpy's own call
])
@pytest.mark.parametrize("data", ["signed", "ieee"])
def test_sum_over_adds_in_numpys_order(shape, axes, steps, data, loops):
    plan = kernels._reduce_plan(shape, axes)
    assert (plan and tuple(s[0] for s in plan[0])) == steps
    assert kernels._checked_sum_plan(shape, axes) == plan  # it passed its check on numpy
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, shape) * np.exp(rng.normal(0, 6, shape)) if data == "signed" else \
        table(shape, 4)
    got = kernels.sum_over(x, axes)
    want = np.add.reduce(x, axis=axes)
    assert got.shape == want.shape
    assert np.array_equal(bits(got), bits(want))


def test_sum_over_matches_numpy_on_random_shapes(loops):
    rng = np.random.default_rng(12)
    planned = 0
    for _ in range(1500):
        shape = tuple(int(n) for n in rng.choice([1, 2, 2, 3, 5, 7, 9, 16, 42, 130],
                                                 size=rng.integers(2, 7)))
        if not 1024 <= np.prod(shape) <= 200_000:
            continue
        axes = tuple(sorted(rng.choice(len(shape), rng.integers(1, len(shape)),
                                       replace=False).tolist()))
        plan = kernels._reduce_plan(shape, axes)
        assert kernels._checked_sum_plan(shape, axes) == plan, (shape, axes)  # no fallback
        planned += plan is not None
        x = rng.normal(0, 1, shape) * np.exp(rng.normal(0, 6, shape))
        assert np.array_equal(bits(kernels.sum_over(x, axes)),
                              bits(np.add.reduce(x, axis=axes))), (shape, axes)
    assert planned >= 200  # the kernel ran, not numpy against itself


def test_a_plan_that_disagrees_with_numpy_falls_back_with_a_warning(monkeypatch, loops):
    # a wrong model of numpy's order: the runs summed one by one (numpy pairs them from 8)
    if loops == "compiled":
        from flaimsim.mechanisms import compiled
        monkeypatch.setattr(compiled, "pairwise_rows", lambda m: np.cumsum(m, axis=1)[:, -1])
    else:
        monkeypatch.setattr(kernels, "_PAIRWISE_BLOCK", 10**9)
    shape, axes = (50, 40, 2, 16), (1, 3)
    with pytest.warns(RuntimeWarning, match="another order"):
        assert kernels._checked_sum_plan(shape, axes) is None
    x = np.exp(np.random.default_rng(3).normal(0, 4, shape))
    assert np.array_equal(bits(kernels.sum_over(x, axes)), bits(np.add.reduce(x, axis=axes)))


def test_logsumexp_with_the_compiled_peak_and_shift_is_the_plain_one(loops):
    """Below 4,096 cells logsumexp's max, its finiteness check and the shift are one compiled
    call: the message is the plain expression's bit for bit (−inf rows, ±0, NaN included; a
    ±0 tie in the peak may keep either sign, which no message shows)."""
    from flaimsim.mechanisms.junction import logsumexp

    rng = np.random.default_rng(13)
    used = 0
    for _ in range(400):
        shape = tuple(int(n) for n in rng.choice([1, 2, 3, 5, 7, 9, 16],
                                                 size=rng.integers(2, 6)))
        if np.prod(shape) >= 4096:
            continue
        # a message keeps its separator: some axes stay
        axes = tuple(sorted(rng.choice(len(shape), rng.integers(1, len(shape)),
                                       replace=False).tolist()))
        x = table(shape, int(rng.integers(1 << 30)))
        if rng.random() < 0.1:
            x.flat[rng.integers(x.size)] = np.nan
        if rng.random() < 0.2:   # a whole slice of −inf: the shift by 0
            x[(slice(None),) * (x.ndim - 1) + (0,)] = -np.inf
        with np.errstate(invalid="ignore"):
            want = plain_logsumexp(x, axes)
            got = logsumexp(x.copy(), axes)
        assert np.array_equal(bits(got), bits(want)), (shape, axes)
        used += kernels.peak_and_shift(x, axes) is not None
    assert (used > 150) == (loops == "compiled")


def test_compiled_loops_work_where_numba_cannot_cache():
    """A read-only install and home leave numba no place for its cache: it refuses
    ``cache=True`` when the function is decorated; the loops are then compiled in memory and
    give the same values (a subprocess, so this process keeps its cached loops)."""
    import subprocess
    import sys

    code = (
        "import numpy as np, numba.core.caching as caching\n"
        "caching.CacheImpl._locator_classes = []   # no writable place anywhere\n"
        "from flaimsim.mechanisms import compiled\n"
        "m = np.exp(np.random.default_rng(0).normal(0, 4, (300, 7)))\n"
        "assert compiled.AVAILABLE and compiled.fold_rows._cache.__class__.__name__ == "
        "'NullCache'\n"
        "assert np.array_equal(compiled.fold_rows(m), np.add.reduce(m, axis=0))\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
