"""AIM's select-measure-generate loop, written once for every protocol.

A protocol supplies a :class:`SelectMeasure` backend: how a candidate is selected (plain
exponential mechanism on the curator's data, secure EM under MPC, clients' local EMs) and how
marginals are measured (Gaussian on the curator's data, noise inside MPC, secure aggregation
plus central noise). The loop owns what every protocol shares: the budget schedule, the
privacy ledger, the size filter, model fitting and generation.

Fixed-T schedule (the paper's): σ = sqrt(n_meas / (2αρ)), ε_t = sqrt(8(1−α)ρ/T), with
n_meas = T + d1 for AIM and DistAIM (backends may count more, e.g. AugFLAIM's proxy).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from flaimsim.mechanisms.accounting import AimSchedule, PrivacyLedger, cdp_rho
from flaimsim.mechanisms.model import GraphicalModel, Measurement, filter_by_size
from flaimsim.mechanisms.scores import score_offset
from flaimsim.mechanisms.workload import Workload
from flaimsim.protocols.config import RunConfig

Clique = tuple[str, ...]


class SelectMeasure(Protocol):
    """The pluggable half of a round: selection and measurement with their own privacy.

    Every method charges ``privacy`` BEFORE its output is released and then calls
    ``privacy.release(charge, what)``; a release without its charge raises
    ``PrivacyOrderError``, and the loop re-checks the order log at the end. A backend whose
    measured population grows may also offer ``harmonise(measurements) -> measurements``,
    which the loop applies before every re-fit (DistAIM in cumulative participation)."""

    def n_measurements(self, rounds: int, d1: int) -> int:
        """Gaussian measurements of σ that the schedule must pay for."""

    def measure_initial(self, one_ways: Sequence[Clique], sigma: float,
                        privacy: PrivacyLedger) -> list[Measurement]:
        """Round 0: the one-way marginals (spends their cost on ``privacy``)."""

    def select(self, round: int, candidates: Sequence[Clique], model: GraphicalModel,
               sigma: float, epsilon: float, privacy: PrivacyLedger) -> list[Clique]:
        """Choose marginals to measure this round (spends the selection's cost)."""

    def measure(self, round: int, cliques: Sequence[Clique], sigma: float,
                privacy: PrivacyLedger, model: GraphicalModel) -> list[Measurement]:
        """Measure the chosen marginals (spends their cost)."""


@dataclass
class LoopTimes:
    select_s: float = 0.0
    estimate_s: float = 0.0
    generate_s: float = 0.0


@dataclass
class LoopResult:
    model: GraphicalModel
    measurements: list[Measurement]
    privacy: PrivacyLedger
    selected: list[list[Clique]]
    schedule: AimSchedule | None
    times: LoopTimes
    rounds_run: int


@dataclass
class LoopState:
    """What the loop carries from round to round (mutable: rounds update it in place):
    the model being fitted, the privacy ledger, the measurements so far, the time spent, the
    current σ and ε_t (the fixed schedule's, or the adaptive schedule's of this round) and
    the marginals chosen per round."""

    model: GraphicalModel
    privacy: PrivacyLedger
    measurements: list[Measurement]
    times: LoopTimes
    sigma: float
    epsilon: float
    selected: list[list[Clique]] = field(default_factory=list)


def fixed_schedule(config: RunConfig, n_measurements: int,
                   slack: Callable[[float], float] | None = None) -> AimSchedule:
    """The fixed-T schedule of a run whose backend pays for ``n_measurements`` Gaussian
    measurements (``SelectMeasure.n_measurements``): σ and ε_t from the budget ρ(ε, δ), less
    ``slack(σ)``, the most KLS21 slack the backend's summed noise shares can charge
    (``SelectMeasure.slack_reserve``; :meth:`AimSchedule.reserving`)."""
    return AimSchedule.reserving(cdp_rho(config.epsilon, config.delta), config.rounds,
                                 n_measurements, config.alpha, slack)


def round_spend(sigma: float, epsilon: float) -> float:
    """Cost of one round: one exponential mechanism and one Gaussian measurement."""
    return epsilon ** 2 / 8 + 1 / (2 * sigma ** 2)


def one_round(t: int, state: LoopState, config: RunConfig, workload: Workload,
              backend: SelectMeasure, keep_before: bool = False
              ) -> tuple[list[Clique], dict[Clique, np.ndarray]]:
    """Size filter, select, measure, re-fit (warm start) at the state's σ and ε_t. Appends
    to the state's measurements and selections; returns the chosen marginals and, if
    ``keep_before`` (the adaptive schedule's test), the model's estimates of them before the
    re-fit (else an empty dict)."""
    model, privacy, times = state.model, state.privacy, state.times
    sigma, epsilon = state.sigma, state.epsilon
    planned = privacy.rho_spent + round_spend(sigma, epsilon)
    t0 = time.perf_counter()
    kept = filter_by_size(model, workload.candidates, config.max_model_size_mb,
                          min(planned / privacy.rho_budget, 1.0))
    chosen = list(backend.select(t, kept, model, sigma, epsilon, privacy))
    times.select_s += time.perf_counter() - t0
    before = {c: model.marginal(c) for c in chosen} if keep_before else {}
    state.measurements += backend.measure(t, chosen, sigma, privacy, model)
    harmonise = getattr(backend, "harmonise", None)  # optional: a growing population
    if harmonise is not None:
        state.measurements[:] = harmonise(state.measurements)
    t0 = time.perf_counter()
    model.fit(state.measurements, iters=config.iters_per_round, tol=config.fit_tol)
    times.estimate_s += time.perf_counter() - t0
    state.selected.append(chosen)
    return chosen, before


def _start(config: RunConfig, workload: Workload, model: GraphicalModel,
           backend: SelectMeasure, rho: float, sigma: float, epsilon: float) -> LoopState:
    """Round 0: the one-way marginals at σ, and a first fit."""
    state = LoopState(model, PrivacyLedger(rho), [], LoopTimes(), sigma, epsilon)
    state.measurements = backend.measure_initial(workload.one_ways, sigma, state.privacy)
    t0 = time.perf_counter()
    model.fit(state.measurements, iters=config.iters_per_round * 2, tol=config.fit_tol)
    state.times.estimate_s += time.perf_counter() - t0
    return state


def _finish(config: RunConfig, state: LoopState, schedule: AimSchedule | None,
            rounds_run: int) -> LoopResult:
    """The final fit; the privacy ledger's order re-checked."""
    t0 = time.perf_counter()
    state.model.fit(state.measurements, iters=config.iters_final, tol=config.fit_tol)
    state.times.estimate_s += time.perf_counter() - t0
    state.privacy.check_order()
    return LoopResult(state.model, state.measurements, state.privacy, state.selected,
                      schedule, state.times, rounds_run)


def run_fixed(config: RunConfig, workload: Workload, model: GraphicalModel,
              backend: SelectMeasure, progress: Callable[[int], None] | None = None,
              schedule: AimSchedule | None = None) -> LoopResult:
    """Fixed-T AIM (the paper's experiments). ``schedule``: the run's schedule if the caller
    has computed it already (:func:`fixed_schedule`; DistAIM sizes its wire widths from it),
    else computed here; either way it must pay for the backend's measurements."""
    d1 = len(workload.one_ways)
    n_measurements = backend.n_measurements(config.rounds, d1)
    if schedule is None:   # a backend whose noise is a sum of shares reserves KLS21's slack
        schedule = fixed_schedule(config, n_measurements,
                                  getattr(backend, "slack_reserve", None))
    elif (schedule.n_measurements, schedule.rounds) != (n_measurements, config.rounds):
        raise ValueError(f"the schedule pays for {schedule.n_measurements} measurements in "
                         f"{schedule.rounds} rounds; the backend takes {n_measurements} in "
                         f"{config.rounds}")
    state = _start(config, workload, model, backend, schedule.rho, schedule.sigma,
                   schedule.epsilon_select)
    for t in range(1, config.rounds + 1):
        one_round(t, state, config, workload, backend)
        if progress:
            progress(t)
    return _finish(config, state, schedule, config.rounds)


def run_adaptive(config: RunConfig, workload: Workload, model: GraphicalModel,
                 backend: SelectMeasure, progress: Callable[[int], None] | None = None
                 ) -> LoopResult:
    """Upstream AIM's adaptive schedule: start from 16·d rounds' worth of noise; halve σ and
    double ε_t when the selected marginal barely changed; spend what is left in a last round."""
    rho = cdp_rho(config.epsilon, config.delta)
    planned_rounds = 16 * len(workload.sizes)
    state = _start(config, workload, model, backend, rho,
                   math.sqrt(planned_rounds / (2 * config.alpha * rho)),
                   math.sqrt(8 * (1 - config.alpha) * rho / planned_rounds))
    t, terminate = 0, False
    while not terminate:
        t += 1
        remaining = state.privacy.rho_remaining
        if remaining < 2 * round_spend(state.sigma, state.epsilon):
            state.sigma = math.sqrt(1 / (2 * config.alpha * remaining))
            state.epsilon = math.sqrt(8 * (1 - config.alpha) * remaining)
            terminate = True
        chosen, before = one_round(t, state, config, workload, backend, keep_before=True)
        if progress:
            progress(t)
        changed = sum(np.abs(state.model.marginal(c) - before[c]).sum() for c in chosen)
        if changed <= sum(score_offset(state.sigma, len(before[c])) for c in chosen):
            state.sigma, state.epsilon = state.sigma / 2, state.epsilon * 2
    return _finish(config, state, None, t)
