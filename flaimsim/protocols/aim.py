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
from dataclasses import dataclass
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


def round_spend(sigma: float, epsilon: float) -> float:
    """Cost of one round: one exponential mechanism and one Gaussian measurement."""
    return epsilon ** 2 / 8 + 1 / (2 * sigma ** 2)


def one_round(t: int, config: RunConfig, workload: Workload, model: GraphicalModel,
              backend: SelectMeasure, privacy: PrivacyLedger, measurements: list[Measurement],
              sigma: float, epsilon: float, times: LoopTimes, keep_before: bool = False
              ) -> tuple[list[Clique], dict[Clique, np.ndarray]]:
    """Size filter, select, measure, re-fit (warm start). Appends to ``measurements``;
    returns the chosen marginals and, if ``keep_before`` (the adaptive schedule's test),
    the model's estimates of them before the re-fit (else an empty dict)."""
    planned = privacy.rho_spent + round_spend(sigma, epsilon)
    t0 = time.perf_counter()
    kept = filter_by_size(model, workload.candidates, config.max_model_size_mb,
                          min(planned / privacy.rho_budget, 1.0))
    chosen = list(backend.select(t, kept, model, sigma, epsilon, privacy))
    times.select_s += time.perf_counter() - t0
    before = {c: model.marginal(c) for c in chosen} if keep_before else {}
    measurements += backend.measure(t, chosen, sigma, privacy, model)
    harmonise = getattr(backend, "harmonise", None)  # optional: a growing population
    if harmonise is not None:
        measurements[:] = harmonise(measurements)
    t0 = time.perf_counter()
    model.fit(measurements, iters=config.iters_round, tol=config.fit_tol)
    times.estimate_s += time.perf_counter() - t0
    return chosen, before


def run_fixed(config: RunConfig, workload: Workload, model: GraphicalModel,
              backend: SelectMeasure, progress: Callable[[int], None] | None = None) -> LoopResult:
    """Fixed-T AIM (the paper's experiments)."""
    rho = cdp_rho(config.epsilon, config.delta)
    d1 = len(workload.one_ways)
    # A backend whose noise is a sum of shares reserves KLS21's slack up front.
    schedule = AimSchedule.reserving(rho, config.rounds,
                                     backend.n_measurements(config.rounds, d1), config.alpha,
                                     getattr(backend, "slack_reserve", None))
    privacy = PrivacyLedger(rho)
    times = LoopTimes()
    measurements = backend.measure_initial(workload.one_ways, schedule.sigma, privacy)
    t0 = time.perf_counter()
    model.fit(measurements, iters=config.iters_round * 2, tol=config.fit_tol)
    times.estimate_s += time.perf_counter() - t0
    selected: list[list[Clique]] = []
    for t in range(1, config.rounds + 1):
        chosen, _ = one_round(t, config, workload, model, backend, privacy, measurements,
                              schedule.sigma, schedule.epsilon_select, times)
        selected.append(chosen)
        if progress:
            progress(t)
    t0 = time.perf_counter()
    model.fit(measurements, iters=config.iters_final, tol=config.fit_tol)
    times.estimate_s += time.perf_counter() - t0
    privacy.check_order()
    return LoopResult(model, measurements, privacy, selected, schedule, times, config.rounds)


def run_adaptive(config: RunConfig, workload: Workload, model: GraphicalModel,
                 backend: SelectMeasure, progress: Callable[[int], None] | None = None
                 ) -> LoopResult:
    """Upstream AIM's adaptive schedule: start from 16·d rounds' worth of noise; halve σ and
    double ε_t when the selected marginal barely changed; spend what is left in a last round."""
    rho = cdp_rho(config.epsilon, config.delta)
    d = len(workload.sizes)
    planned_rounds = 16 * d
    sigma = math.sqrt(planned_rounds / (2 * config.alpha * rho))
    epsilon = math.sqrt(8 * (1 - config.alpha) * rho / planned_rounds)
    privacy = PrivacyLedger(rho)
    times = LoopTimes()
    measurements = backend.measure_initial(workload.one_ways, sigma, privacy)
    model.fit(measurements, iters=config.iters_round * 2, tol=config.fit_tol)
    selected: list[list[Clique]] = []
    t, terminate = 0, False
    while not terminate:
        t += 1
        remaining = privacy.rho_remaining
        if remaining < 2 * round_spend(sigma, epsilon):
            sigma = math.sqrt(1 / (2 * config.alpha * remaining))
            epsilon = math.sqrt(8 * (1 - config.alpha) * remaining)
            terminate = True
        chosen, before = one_round(t, config, workload, model, backend, privacy, measurements,
                                   sigma, epsilon, times, keep_before=True)
        selected.append(chosen)
        if progress:
            progress(t)
        changed = sum(np.abs(model.marginal(c) - before[c]).sum() for c in chosen)
        if changed <= sum(score_offset(sigma, len(before[c])) for c in chosen):
            sigma, epsilon = sigma / 2, epsilon * 2
    t0 = time.perf_counter()
    model.fit(measurements, iters=config.iters_final, tol=config.fit_tol)
    times.estimate_s += time.perf_counter() - t0
    privacy.check_order()
    return LoopResult(model, measurements, privacy, selected, None, times, t)
