"""The exact caches (:mod:`flaimsim.mechanisms.memo`) change no result: a small seeded run
selects the same marginals and ends with the same errors to the last digit with the caches
as on the plain path, and the caches are really used."""

from __future__ import annotations

import pytest

from flaimsim.mechanisms import memo
from flaimsim.protocols import runner
from flaimsim.protocols.config import RunConfig
from flaimsim.protocols.prepare import prepare

# 7 attributes, 12 random 3-way marginals: candidates span junction-tree nodes (spanning
# marginals) and a small model cap makes the size filter drop some.
SMALL = dict(dataset="synthfs", clients=10, synthfs_features=7, synthfs_records=60,
             synthfs_bins=5, workload_marginals=12, rounds=8, iters_round=30,
             iters_final=60, seed=5, participation=0.5, max_model_size_mb=0.004)
SAME = ("selected", "l1_workload_error", "l1_workload_error_3way", "nll")


@pytest.mark.parametrize("protocol", ["central", "aug-flaim-private", "naive-flaim",
                                      "aug-flaim-oracle"])
def test_fast_path_selects_the_same_as_the_plain_path(protocol: str) -> None:
    config = RunConfig(**{**SMALL, "protocol": protocol})
    data = prepare(config)
    fast = runner(protocol)(config, data=data, progress=None).record
    with memo.disabled():
        plain = runner(protocol)(config, data=data, progress=None).record
    assert len(fast["selected"]) >= config.rounds
    for field in SAME:
        assert fast[field] == plain[field], field


def test_caches_are_filled_only_when_enabled() -> None:
    from flaimsim.mechanisms.junction import _greedy_path
    from flaimsim.mechanisms.model import GraphicalModel, filter_by_size
    from flaimsim.protocols.central import CuratorBackend
    from flaimsim.protocols.config import stream

    config = RunConfig(**{**SMALL, "protocol": "central"})
    data = prepare(config)
    backend = CuratorBackend(data.train, data.workload, stream(0, "t"))
    model = GraphicalModel.for_table(data.train, 10, 10)
    model.fit(backend.measure_initial(data.workload.one_ways, 5.0, _ledger()))
    triple = next(c for c in data.workload.candidates if len(c) == 3)
    _greedy_path.cache_clear()
    with memo.disabled():
        backend.counts(triple)
        model.marginal(triple)
        filter_by_size(model, data.workload.candidates, 1.0, 1.0)
    assert triple not in backend._counts and _greedy_path.cache_info().currsize == 0
    assert not model.tree._steiner and not model._sizes[1]
    first = backend.counts(triple)
    assert backend.counts(triple) is first
    model.marginal(triple)  # one-way cliques only: a spanning marginal
    assert model.tree._steiner and _greedy_path.cache_info().currsize == 1
    filter_by_size(model, data.workload.candidates, 1.0, 1.0)
    assert len(model._sizes[1]) > 0
    # a new clique in the model: every remembered size is for the old clique set
    before = {r: model.size_with(r) for r in data.workload.candidates}
    model.fit(backend.measure_initial(data.workload.one_ways, 5.0, _ledger())
              + backend._measure(1, [triple], 5.0, _ledger()), iters=5)
    after = {r: model.size_with(r) for r in data.workload.candidates}
    assert after == {r: model.size_mb([r]) for r in data.workload.candidates}
    assert after != before


def _ledger():
    from flaimsim.mechanisms.accounting import PrivacyLedger

    return PrivacyLedger(1.0)


def test_model_size_depends_on_the_interaction_graph_only() -> None:
    """The size memo's key is the cliques' graph: clique lists with the same edges and
    attributes have the same size on the plain path (trees: mbi's branch; others: greedy)."""
    import itertools
    import random

    from flaimsim.mechanisms.junction import model_size_mb
    from flaimsim.mechanisms.mbi_setup import Domain

    domain = Domain(tuple("abcdefg"), (3, 5, 2, 7, 4, 6, 3))
    rng = random.Random(0)
    for _ in range(60):
        cliques = [tuple(rng.sample("abcdefg", rng.choice((1, 2, 3)))) for _ in range(
            rng.randint(1, 7))]
        # the same graph spelled as its edges and single attributes, shuffled
        edges = {tuple(sorted(e)) for c in cliques for e in itertools.combinations(c, 2)}
        spelled = list(edges) + [(a,) for c in cliques for a in c]
        rng.shuffle(spelled)
        with memo.disabled():
            assert model_size_mb(domain, cliques) == model_size_mb(domain, spelled), cliques
        assert model_size_mb(domain, spelled) == model_size_mb(domain, cliques)


def test_sweep_worker_keeps_a_few_prepared_data_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells of one T alternate seeds: each seed's data is prepared once per worker, not
    once per cell; past PREPARED_KEPT the oldest goes."""
    from flaimsim.bench import sweep
    from flaimsim.protocols import prepare as prepare_mod

    calls = []
    monkeypatch.setattr(prepare_mod, "prepare", lambda c: calls.append(c.seed) or c.seed)
    monkeypatch.setattr(sweep, "_PREPARED", {})
    base = RunConfig(**{**SMALL, "protocol": "central"})
    for _ in range(3):
        for seed in range(sweep.PREPARED_KEPT):
            assert sweep._prepared(base.replace(seed=seed)) == seed
    assert calls == list(range(sweep.PREPARED_KEPT))
    sweep._prepared(base.replace(seed=99))
    assert len(sweep._PREPARED) == sweep.PREPARED_KEPT
    sweep._prepared(base.replace(seed=0))  # the oldest was dropped
    assert calls[-2:] == [99, 0]
