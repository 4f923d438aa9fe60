"""``iters_budget``: the approximate per-T step budget (off by default). A run whose T the
budget never reaches is the default run, key included; above it each round fits
budget // T steps."""

from __future__ import annotations

import pytest

from flaimsim.bench.sweep_dir import cell_key
from flaimsim.mechanisms.model import GraphicalModel
from flaimsim.protocols import runner
from flaimsim.protocols.config import PRESETS, ConfigError, RunConfig


@pytest.mark.parametrize("rounds, budget, per_round", [(192, 10_000, 52), (50, 10_000, 200),
                                                       (10, 10_000, 200), (4, 1, 1)])
def test_steps_per_round_under_a_budget(rounds, budget, per_round):
    config = RunConfig(rounds=rounds, iters_budget=budget)
    assert config.iters_per_round == per_round
    assert RunConfig(rounds=rounds).iters_per_round == 200


def test_a_budget_the_run_never_reaches_is_the_default_run_and_key():
    """In a sweep the base (T = 10 by default) carries the budget to every cell: a cell it
    does not bite runs, and is keyed, as the default cell; one it bites is another cell."""
    from flaimsim.bench.sweep import SweepSpec

    spec = SweepSpec(RunConfig(iters_budget=10_000), protocols=("central",), rounds=(10, 192))
    big, small = spec.configs()
    assert (big.rounds, big.iters_budget, small.rounds, small.iters_budget) == (192, 10_000,
                                                                                 10, None)
    assert cell_key(small) == cell_key(RunConfig(protocol="central", rounds=10))
    assert cell_key(big) != cell_key(RunConfig(protocol="central", rounds=192))


def test_a_bad_budget_is_refused():
    with pytest.raises(ConfigError, match="iters_budget must be >= 1"):
        RunConfig(iters_budget=0)


def test_each_round_fits_budget_over_t_steps(monkeypatch):
    calls: list[int | None] = []
    plain = GraphicalModel.fit

    def counting(self, measurements, iters=None, known_total=None, tol=None):
        calls.append(iters)
        return plain(self, measurements, iters, known_total, tol)

    monkeypatch.setattr(GraphicalModel, "fit", counting)
    config = RunConfig(**{**PRESETS["synthfs-small"], "protocol": "central", "rounds": 4,
                          "iters_budget": 200})
    runner("central")(config, progress=None)
    # round 0: 2 x 50, rounds 1..4: 50 each, then the final fit (iters_final)
    assert calls[:5] == [100, 50, 50, 50, 50]
