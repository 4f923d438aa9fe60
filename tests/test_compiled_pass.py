"""The compiled HUGIN pass gives the numpy path's node marginals bit for bit, and steps aside
where it cannot."""

from __future__ import annotations

import numpy as np
import pytest

from flaimsim.mechanisms import compiled, compiled_pass, junction
from flaimsim.mechanisms.junction import JunctionTree
from flaimsim.mechanisms.mbi_setup import mbi

pytestmark = pytest.mark.skipif(compiled_pass.njit is None, reason="numba not installed")


def bits(arrays):
    return [np.ascontiguousarray(a).view(np.uint64).copy() for a in arrays]


def same_bits(a, b) -> bool:
    """The same IEEE bit patterns, but for NaN payloads (NaN where the other has NaN)."""
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape or not np.array_equal(np.isnan(x), np.isnan(y)):
            return False
        keep = ~np.isnan(x)
        if not np.array_equal(*bits([x[keep], y[keep]])):
            return False
    return True


def random_tree(seed: int) -> tuple[mbi.Domain, JunctionTree]:
    """A random domain (some long axes: pairwise runs past 8 and past 128 cells) and clique
    set whose junction tree has no node over the pass's limit. Seed −1: a fixed tree whose
    message sums a 150-cell trailing run (pairwise_sum's halving past 128 cells)."""
    if seed == -1:
        domain = mbi.Domain(("a", "b", "c"), (3, 150, 2))
        return domain, JunctionTree(domain, [("a", "b"), ("a", "c"), ("c",)])
    rng = np.random.default_rng(seed)
    while True:
        k = int(rng.integers(4, 8))
        sizes = [int(rng.choice([2, 3, 5, 9, 16, 150])) for _ in range(k)]
        names = tuple(f"x{i}" for i in range(k))
        domain = mbi.Domain(names, sizes)
        cliques = []
        for _ in range(int(rng.integers(3, 8))):
            width = int(rng.integers(1, 4))
            cliques.append(tuple(rng.choice(names, size=width, replace=False)))
        tree = JunctionTree(domain, cliques)
        if max(np.prod(s) for s in tree.node_shapes) <= compiled_pass.MAX_NODE_CELLS:
            return domain, tree


def potentials(domain, tree, rng, corner: str) -> list[np.ndarray]:
    thetas = [rng.normal(0.0, 3.0, domain.project(c).shape) for c in tree.cliques]
    if corner == "structural-zero":     # −inf rows: peaks of −inf are shifted by 0
        thetas[0].reshape(-1)[: max(1, thetas[0].size // 3)] = -np.inf
    elif corner == "huge":              # exp overflows without the shift
        thetas[-1] *= 300.0
    elif corner == "signed-zeros":
        for t in thetas:
            t[np.abs(t) < 1.0] = -0.0
    elif corner == "nan":
        thetas[0].reshape(-1)[0] = np.nan
    return thetas


@pytest.mark.parametrize("seed", range(-1, 12))
@pytest.mark.parametrize("corner", ["plain", "structural-zero", "huge", "signed-zeros", "nan"])
def test_compiled_pass_gives_the_numpy_paths_node_marginals_bit_for_bit(seed, corner):
    domain, tree = random_tree(seed)
    rng = np.random.default_rng(101 + seed)
    thetas = potentials(domain, tree, rng, corner)
    flat = np.concatenate([t.ravel() for t in thetas])
    passed = tree.compiled_pass()
    assert passed is not None
    with np.errstate(all="ignore"):
        want = tree.node_marginals(thetas, 1234.5)
        got = passed.node_marginals(flat, 1234.5)
        again = tree.node_marginals(thetas, 1234.5, flat)   # the fitter's call
    assert same_bits(got, want)
    assert same_bits(again, want)


def test_the_pass_covers_every_kind_of_row():
    """The trees above reach each loop of the pass: rows FULL, BROADCAST and PATTERN (short
    rows joined into blocks) for the gathers and the peaks, and sums by cells and by runs of
    summed trailing cells below 8 cells, up to 128 and past 128."""
    cp = compiled   # the plan's columns and the kinds of rows
    kinds = set()
    for seed in range(-1, 12):
        _, tree = random_tree(seed)
        for row in tree.compiled_pass().plan:
            kinds.add(("source", int(row[cp._KIND_SRC])))
            kinds.add(("target", int(row[cp._KIND_TGT])))
            run = int(row[cp._RUN])
            kinds.add(("sum", 0 if run == 1 else 1 if run < 8 else 2 if run <= 128 else 3))
    every = {(end, kind) for end in ("source", "target")
             for kind in (cp.BROADCAST, cp.FULL, cp.PATTERN)}
    every |= {("sum", size) for size in range(4)}
    assert every <= kinds, every - kinds


def test_a_tree_with_a_large_node_keeps_the_numpy_path(monkeypatch):
    domain, tree = random_tree(0)
    monkeypatch.setattr(compiled_pass, "MAX_NODE_CELLS", 4)
    assert compiled_pass.CompiledPass.for_tree(tree) is None
    fresh = JunctionTree(domain, tree.cliques)
    assert fresh.compiled_pass() is None
    thetas = potentials(domain, fresh, np.random.default_rng(1), "plain")
    flat = np.concatenate([t.ravel() for t in thetas])
    assert same_bits(fresh.node_marginals(thetas, 10.0, flat),
                     fresh.node_marginals(thetas, 10.0))


def test_without_compiled_loops_the_numpy_path_stays(monkeypatch):
    domain, tree = random_tree(1)
    monkeypatch.setattr(junction, "_compiled", lambda: None)
    assert JunctionTree(domain, tree.cliques).compiled_pass() is None


def test_a_sum_in_another_order_than_numpys_keeps_the_numpy_path(monkeypatch):
    """The probe has teeth: a reduction that adds a run's cells one by one (not pairwise)
    differs from numpy's on a 40-cell run, so no pass is built for a tree that needs it."""
    def one_by_one(a, start, n, run, index, index_at, out, out_at, out_n):
        combos = n // (run * out_n)
        bases = index[index_at:index_at + combos]
        offsets = index[index_at + combos:index_at + combos + out_n]
        out[out_at:out_at + out_n] = -0.0
        for b in bases:
            for o in range(out_n):
                for k in range(run):
                    out[out_at + o] += a[start + b + offsets[o] + k]

    monkeypatch.setattr(compiled_pass, "_reduce_into", one_by_one)
    compiled_pass.sums_like_numpy.cache_clear()
    try:
        assert not compiled_pass.sums_like_numpy((3, 40), (1,))
        domain = mbi.Domain(("a", "b", "c"), (3, 40, 2))
        tree = JunctionTree(domain, [("a", "b"), ("a", "c")])
        assert compiled_pass.CompiledPass.for_tree(tree) is None
    finally:
        monkeypatch.undo()
        compiled_pass.sums_like_numpy.cache_clear()
    assert compiled_pass.sums_like_numpy((3, 40), (1,)) is True


def test_theta_of_the_wrong_size_is_refused():
    _, tree = random_tree(2)
    with pytest.raises(ValueError, match="cells"):
        tree.compiled_pass().node_marginals(np.zeros(3), 1.0)


def test_every_jitted_loop_lives_in_compiled_py():
    """numba caches a jitted function with the code of the jitted functions it calls, but
    checks only the caller's own file for changes: a loop calling one in another file would
    keep its old code. So every jitted function of the package is defined in compiled.py."""
    import importlib
    import pkgutil

    import flaimsim
    from numba.core.registry import CPUDispatcher

    elsewhere = []
    for info in pkgutil.walk_packages(flaimsim.__path__, "flaimsim."):
        if info.name.startswith("flaimsim.bench") or info.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:   # optional pieces (MPC, browsers) need not import here
            continue
        for name, value in vars(module).items():
            if (isinstance(value, CPUDispatcher)
                    and value.py_func.__module__ != "flaimsim.mechanisms.compiled"
                    and value.py_func.__module__.startswith("flaimsim")):
                elsewhere.append(f"{info.name}.{name}")
    assert not elsewhere, elsewhere
