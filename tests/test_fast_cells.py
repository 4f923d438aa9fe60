"""The large-T cells' faster paths (issue 26) give what the plain computations give: the
modelled DistAIM score step's bookkeeping (priced candidates, kept cells, comparison steps),
the lazy decomposition's claim, FLAIM's client scores with the round's sums; and reproduce
passes the approximate fit's options on."""

from __future__ import annotations

import numpy as np
import pytest

from flaimsim.parties.distaim.engines import score_step
from flaimsim.parties.distaim.plan import (DecomposedCells, comparison_plan,
                                           round_public_marginal)


@pytest.mark.parametrize("seed", range(6))
def test_score_step_counts_the_candidates_with_a_priced_cell(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=rng.integers(1, 12))
    # mostly zero (publicly false comparisons), some large, some in range
    c = rng.uniform(0, 300, int(lengths.sum())) * (rng.random(int(lengths.sum())) < 0.2)
    step = score_step(3, lengths, c, 1000, 2)
    plan = comparison_plan(round_public_marginal(c, 2), (1000).bit_length(), 2)
    segment_of = np.repeat(np.arange(len(lengths)), lengths)
    assert step.dots == np.unique(segment_of[plan.inside]).size   # the plain count
    assert (step.mults, step.steps) == (plan.mults, plan.steps)
    assert score_step(3, lengths, c, 1000, 2, round_public_marginal(c, 2)) == step


def test_score_step_without_priced_cells() -> None:
    assert score_step(1, [3, 4], np.zeros(7), 1000, 2).dots == 0


@pytest.mark.parametrize("ordered", [True, False])
def test_claim_takes_sorted_cells_as_they_are(ordered: bool) -> None:
    rng = np.random.default_rng(1)
    plain, fast = DecomposedCells.of(500), DecomposedCells.of(500)
    for _ in range(6):
        cells = np.unique(rng.integers(0, 500, 80))
        if not ordered:
            cells = rng.permutation(np.concatenate([cells, cells[:5]]))
        want = np.unique(cells)
        want = want[~plain.done[want]]
        plain.done[want] = True
        got = fast.claim(cells)
        assert np.array_equal(got, want) and np.array_equal(fast.done, plain.done)


@pytest.mark.parametrize("variant", ["naive", "oracle"])
def test_client_scores_with_the_rounds_sums_are_the_plain_scores(variant: str) -> None:
    """FLAIM's select hands every client p̂_r.sum() (and the oracle's reference sum) once per
    round; a client's scores are those it computes with its own sums, to the last digit."""
    from flaimsim.mechanisms.data import Table
    from flaimsim.parties.fl.clients import FLClient

    rng = np.random.default_rng(2)
    cols, sizes = ("a", "b", "c"), (4, 7, 3)
    client = FLClient(0, Table(cols, sizes, np.stack([rng.integers(0, s, 40) for s in sizes],
                                                     axis=1)))
    cands = [("a",), ("a", "b"), ("b", "c"), ("a", "b", "c")]

    def dist(c):
        p = rng.random(int(np.prod([sizes[cols.index(a)] for a in c])))
        return p / p.sum()

    dists = {c: dist(c) for c in cands}
    reference = {c: dist(c) for c in cands} if variant == "oracle" else None
    sums = {c: (dists[c].sum(), None if reference is None else reference[c].sum())
            for c in cands}
    args = (cands, dists, 3.0, [1.0] * 4, [dists[c].size for c in cands], variant, reference)
    assert np.array_equal(client.scores(*args, None, sums), client.scores(*args))


def test_reproduce_passes_the_fit_iterations_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """``reproduce --iters-round/--iters-final`` (the faster, approximate fit) reach the
    cells' configs; without them the cells keep RunConfig's defaults."""
    import argparse

    from flaimsim.bench import reproduce as rep

    seen = []
    monkeypatch.setattr(rep, "reproduce", lambda *a, **k: seen.append(k["overrides"]) or "")
    monkeypatch.setattr(rep, "available_datasets", lambda: ["adult"])
    parser = argparse.ArgumentParser()
    rep.add_parser(parser.add_subparsers())
    for argv in (["--iters-round", "50", "--iters-final", "500"], []):
        args = parser.parse_args(["reproduce", "--datasets", "adult", *argv])
        args.func(args)
    assert seen[0]["iters_round"] == 50 and seen[0]["iters_final"] == 500
    assert "iters_round" not in seen[1] and "iters_final" not in seen[1]
    assert rep.base_config("adult", **seen[0]).iters_round == 50


@pytest.mark.parametrize("seed", range(5))
def test_kept_cells_and_comparison_steps_match_their_plain_forms(seed: int) -> None:
    from flaimsim.parties.distaim.plan import kept_cells

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, size=rng.integers(1, 10))
    offsets = np.sort(rng.choice(1000, size=lengths.size, replace=False)) * 30
    plain = np.concatenate([np.arange(o, o + n) for o, n in zip(offsets, lengths)])
    assert np.array_equal(kept_cells(offsets, lengths), plain)
    c = rng.integers(0, 2 ** 20, int(lengths.sum())) * (rng.random(int(lengths.sum())) < 0.5)
    plan = comparison_plan(c, 18, 2)
    i = plan.inside
    lo, hi = np.maximum(plan.t0[i], 2), plan.h[i]
    used = np.zeros(int(hi.max()) + 1 if i.size else 1, dtype=bool)
    for a, b in set(zip(lo.tolist(), hi.tolist())):   # the plain form
        used[a:b] = True
    assert plan.steps == int(used.sum())
    assert kept_cells([], []).size == 0 and comparison_plan(np.zeros(4, np.int64), 8, 2).steps == 0


def test_setting_header_names_the_fit_iterations_the_cells_ran() -> None:
    """A grid run with the approximate fit is not labelled with the default iterations."""
    from flaimsim.bench.reproduce import base_config
    from flaimsim.bench.table import setting_header

    default = base_config("adult").to_dict()
    assert "fits of 200/1000 mirror-descent" in setting_header([default])
    fast = base_config("adult", iters_round=50, iters_final=500).to_dict()
    assert "fits of 50/500 mirror-descent" in setting_header([fast])
    assert "200/1000 and 50/500" in setting_header([default, fast])


def _plain_l1(x: np.ndarray, offsets, lengths, c: np.ndarray, f: int) -> np.ndarray:
    """The score's L1 as first written: every kept cell, |X·2^f − round(c·2^f)|, segment sums."""
    cells = np.concatenate([np.arange(o, o + n) for o, n in zip(offsets, lengths)])
    diffs = np.abs(x[cells] * (1 << f) - round_public_marginal(c, f))
    return np.add.reduceat(diffs, np.cumsum(lengths) - lengths) / float(1 << f)


@pytest.mark.parametrize("seed", range(4))
def test_ideal_score_over_priced_cells_is_the_plain_l1(seed: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The modelled score visits only the priced cells and keeps Σ X·2^f per candidate while
    the candidates and the aggregate are unchanged; its scores are those of the plain L1 over
    every kept cell, to the last bit, also after the aggregate grows (a new share) and the
    candidate set shrinks."""
    from flaimsim.mechanisms.scores import aim_score_from_l1
    from flaimsim.parties.distaim import engines
    from flaimsim.parties.distaim.engines import IdealEngine
    from flaimsim.parties.distaim.options import DistAimOptions
    from flaimsim.parties.ledger import Ledger

    monkeypatch.setattr(engines, "charge_step", lambda *a, **k: None)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=12)
    offsets = np.cumsum(lengths) - lengths
    n, f = int(lengths.sum()), 2
    engine = IdealEngine(Ledger(), None, rng, DistAimOptions(max_count=1000, frac_bits=f))

    def share(round: int) -> np.ndarray:
        new = rng.integers(0, 60, n) * (rng.random(n) < 0.7)
        engine.share(round, [0], None, lambda _: new)
        return new

    x = share(0)
    engine.decompose(0, lengths)
    for round, keep in enumerate([range(12), range(12), [0, 2, 3, 7, 11], [0, 2, 3, 7, 11]]):
        if round == 1:
            x = x + share(1)   # a new contributor, same candidates: the sums must follow
        keep = list(keep)
        o, n_r = offsets[keep], lengths[keep]
        # zeros (publicly false comparisons), cells beyond 2^(l+f), and ordinary ones
        c = rng.uniform(0, 90, int(n_r.sum())) * (rng.random(int(n_r.sum())) < 0.3)
        c[rng.random(c.size) < 0.05] = 3000.0
        engine.score(round, o, n_r, c, 2.0, [1.0] * len(keep), 1e4)
        want = aim_score_from_l1(_plain_l1(x, o, n_r, c, f), 2.0, n_r.astype(float),
                                 np.ones(len(keep)))
        assert np.array_equal(engine._scores.view(np.uint64), want.view(np.uint64))


def test_comparison_plan_reads_bit_lengths_exactly() -> None:
    """h and t0 of every inside cell are Python's bit lengths (also where float(c) rounds up
    to a power of two); cells with c = 0 or beyond 2^(l+f) are not inside."""
    from flaimsim.parties.distaim.plan import bit_lengths

    rng = np.random.default_rng(5)
    v = np.concatenate([np.arange(1, 3000), rng.integers(1, 2 ** 63 - 1, 3000),
                        (1 << np.arange(1, 63, dtype=np.int64)) - 1, [2 ** 63 - 1]])
    assert bit_lengths(v).tolist() == [int(x).bit_length() for x in v]
    c = np.concatenate([[0, 0, 1 << 20, (1 << 20) + 5], rng.integers(1, 1 << 20, 200)])
    plan = comparison_plan(c, 18, 2)
    assert plan.inside.tolist() == list(range(4, c.size))
    assert plan.above.tolist() == [False, False, True, True] + [False] * 200
    assert plan.h[plan.inside].tolist() == [int(x).bit_length() - 1 for x in c[4:]]
    assert plan.t0[plan.inside].tolist() == [(int(x) & -int(x)).bit_length() - 1 for x in c[4:]]


def test_mean_in_order_is_numpys_mean_bit_for_bit() -> None:
    """A private client's τ̃ averages 1–3 attribute norms without building an array: the
    same bits as np.mean (one by one below 8 values; np.mean itself from 8 on)."""
    from flaimsim.parties.fl.clients import mean_in_order

    rng = np.random.default_rng(8)
    for n in range(1, 12):
        for _ in range(200):
            v = list(rng.exponential(1.0, n) * 10.0 ** rng.integers(-8, 8, n))
            assert mean_in_order(v) == float(np.mean(v))


@pytest.mark.parametrize("frac_bits", [0, 2, 5])
def test_priced_cells_without_the_full_rounding_are_the_rounded_ones(frac_bits: int) -> None:
    """round(c·2^f) > 0 exactly where c > 2^−(f+1) (rint takes 0.5 to 0): the modelled score
    rounds only those cells, and gets the positions and values of the full rounding,
    at the boundary too; bad values are refused alike."""
    from flaimsim.parties.distaim.plan import (PricedMarginal, SecureScoringError,
                                               price_public_marginal)

    half = 2.0 ** -(frac_bits + 1)
    rng = np.random.default_rng(frac_bits)
    c = np.concatenate([rng.uniform(0, 4 * half, 3000), rng.uniform(0, 500, 300),
                        [0.0, -0.0, half, np.nextafter(half, 1), np.nextafter(half, 0),
                         3 * half, 5 * half]])
    got = price_public_marginal(c, frac_bits)
    want = PricedMarginal.of(round_public_marginal(c, frac_bits))
    assert got.n == want.n == c.size
    assert np.array_equal(got.cells, want.cells) and np.array_equal(got.values, want.values)
    for bad in ([1.0, np.nan], [np.inf], [-0.5]):
        with pytest.raises(SecureScoringError):
            price_public_marginal(np.array(bad), frac_bits)
