"""The AIM loop's state travels as one value, and a fixed schedule is computed once: DistAIM's
wire widths and its loop use the same one, and a schedule that does not pay for the backend's
measurements is refused."""

from __future__ import annotations

import pytest

from flaimsim.mechanisms.model import GraphicalModel
from flaimsim.protocols.aim import fixed_schedule, run_fixed
from flaimsim.protocols.central import CuratorBackend
from flaimsim.protocols.config import RunConfig, stream
from flaimsim.parties.distaim.plan import select_bits
from flaimsim.protocols import distaim
from flaimsim.protocols.distaim import cost_setting, distaim_schedule, run_distaim
from flaimsim.protocols.prepare import prepare

TINY = dict(dataset="synthfs", clients=5, synthfs_features=4, synthfs_records=40, max_bins=5,
            workload_marginals=3, rounds=2, iters_round=30, iters_final=60, seed=11)


@pytest.fixture(scope="module")
def central_setup():
    config = RunConfig(protocol="central", **TINY)
    data = prepare(config)
    return config, data


def _backend(config, data):
    model = GraphicalModel.for_table(data.train, config.iters_round, config.iters_final)
    return model, CuratorBackend(data.train, data.workload, stream(config.seed, "mechanisms"))


def test_given_schedule_is_the_loops(central_setup) -> None:
    config, data = central_setup
    model, backend = _backend(config, data)
    n = backend.n_measurements(config.rounds, len(data.workload.one_ways))
    schedule = fixed_schedule(config, n)
    loop = run_fixed(config, data.workload, model, backend, schedule=schedule)
    assert loop.schedule is schedule and loop.rounds_run == config.rounds
    assert len(loop.selected) == config.rounds
    assert loop.privacy.rho_spent == pytest.approx(schedule.total_cost)


@pytest.mark.parametrize("extra_measurements, extra_rounds", [(1, 0), (0, 1)])
def test_schedule_that_does_not_fit_the_backend_is_refused(central_setup, extra_measurements,
                                                           extra_rounds) -> None:
    config, data = central_setup
    model, backend = _backend(config, data)
    n = backend.n_measurements(config.rounds, len(data.workload.one_ways))
    other = RunConfig(protocol="central", **{**TINY, "rounds": config.rounds + extra_rounds})
    with pytest.raises(ValueError, match="the schedule pays for"):
        run_fixed(config, data.workload, model, backend,
                  schedule=fixed_schedule(other, n + extra_measurements))
    assert not backend_measured(backend)


def backend_measured(backend: CuratorBackend) -> bool:
    """Whether the backend's seeded stream has been drawn from (a measurement was taken)."""
    fresh = stream(11, "mechanisms")
    return backend.rng.bit_generator.state != fresh.bit_generator.state


class _FreeTable:
    """A cost table that charges nothing, for the widths it was asked for (no calibration)."""

    def __init__(self, options, score_bound: float, select_epsilon: float) -> None:
        self.options, self.score_bound = options, score_bound
        self.select_bits = select_bits(score_bound, select_epsilon)

    def upload_bytes_per_server(self, sharing, cells):
        return []

    def charge(self, ledger, *args, **kwargs):
        pass


@pytest.mark.parametrize("participation", ["all", "poisson"])
def test_distaim_sizes_its_widths_with_the_loops_schedule(participation: str,
                                                          monkeypatch) -> None:
    tables: list[_FreeTable] = []

    def free_table(options, score_bound, select_epsilon=1.0):
        tables.append(_FreeTable(options, score_bound, select_epsilon))
        return tables[-1], False

    monkeypatch.setattr(distaim, "load_or_calibrate", free_table)
    config = RunConfig(protocol="distaim", mpc="model", distaim_participation=participation,
                       **TINY)
    data = prepare(config)
    result = run_distaim(config, data)
    schedule = distaim_schedule(config, data)
    assert result.loop.schedule == schedule
    setting = cost_setting(config, data)
    assert setting.sigma == schedule.sigma == result.record["sigma"]
    assert [t.score_bound for t in tables] == [setting.score_bound]   # one table, this setting
    n = len(data.workload.one_ways) + config.rounds + (participation == "poisson")
    assert schedule.n_measurements == n
