"""DistAIM: AIM with the trusted curator replaced by m MPC compute servers.

Steps per run (each a ledger phase):
1. share-inputs: a contributing client secret-shares all its W+ answers once, as one int64
   vector in candidate order: compact additive shares mod 2^b (default; b = bitlen of the
   public record bound), Shamir per server, or additive mod p with PRG seeds.
   Participation: ``all`` clients in round 0 (the poster's distributed setting), or
   ``poisson``: a client shares when first sampled (rate p) and every shared client
   contributes from then on (the authors' code).
2. score: the servers bit-decompose the aggregate lazily (a cell at most once per contributor
   set, when a round first prices it or a measurement opens it), then score the
   size-filtered candidates against the public model marginals, scaled by the model's total
   (a public DP estimate of the contributors' count, as upstream AIM uses). In ``poisson``
   mode that total lags behind a growing contributor set, so the marginals are rescaled to a
   noisy count of the contributors' records released every round (:class:`ContributorCount`,
   charged to the budget: the schedule pays for one extra measurement).
   ``--score l2`` scores by ‖x_r − M̂_r‖₂ instead (secure_l2: no per-cell comparison). The
   score offset uses the std of the noise actually added (``offset_std``).
3. select: secure exponential mechanism (``--em gumbel``) or report-noisy-max
   (``--em rnm``, run at ε_t/2 so that its ε²/2 costs the EM's ε_t²/8); only the index is
   opened.
4. measure: every server inputs a discrete Gaussian share N_Z(0, σ²/(m − t)); only the noisy
   marginal is opened. The model is fitted with the noise variance actually added
   (m·Var N_Z(0, σ²/(m − t)), ``secure_noise.added_variance``). Each selection and
   measurement is charged to the privacy ledger before the servers open its output; the
   honest shares' sum is charged with KLS21's slack and the Gumbel cap's δ term is recorded.

Budget: exactly central AIM's (σ, ε_t over T + d1 measurements), as if a curator held the
contributors' union. The secure EM is a fixed-point approximation whose bounded-range
parameter is ε_eff + 8η (η ≤ 1e−4, ``secure_em``); it runs with ε_t − 8η (rounded down
further by ``em_scale``), so the ε_t that the accountant charges covers it. ``--mpc real`` measures traffic on the wire; ``--mpc model`` runs the
ideal functionality with traffic from the calibrated cost model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from flaimsim.mechanisms.accounting import AimSchedule, PrivacyLedger, gumbel_truncation_tv
from flaimsim.mechanisms.model import GraphicalModel, Measurement
from flaimsim.mechanisms.scores import Score, score_sensitivity
from flaimsim.mechanisms.workload import Workload
from flaimsim.parties.distaim.cost_model import load_or_calibrate
from flaimsim.parties.distaim.engines import (DISTAIM_RULES, IdealEngine, MpcEngine,
                                             SecureEngine, replay)
from flaimsim.parties.distaim.options import DistAimOptions, MpcMode, Participation, Selection
from flaimsim.parties.distaim.plan import (GEOMETRIC_BITS, STATED_ETA, STATED_TAU, added_variance,
                                          kept_cells)
from flaimsim.parties.distaim.plan import score_bound as public_score_bound
from flaimsim.parties import profile
from flaimsim.parties.ledger import Ledger
from flaimsim.protocols.aim import fixed_schedule, run_fixed
from flaimsim.protocols.config import ConfigError, RunConfig, stream
from flaimsim.parties.mpc.openings import MASKED_OPENINGS_NOTE, masked_openings, verify_servers
from flaimsim.parties.mpc.wire import add_setup_rows
from flaimsim.protocols.mpc_security import mpyc_option, resolve_kappa
from flaimsim.protocols.prepare import PreparedData, prepare, wire_record_bound
from flaimsim.protocols.result import RunResult, build_record

Clique = tuple[str, ...]


def candidate_layout(workload: Workload) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and lengths of each answered marginal in the concatenated answer vector."""
    lengths = np.array([workload.n_cells(c) for c in workload.answered], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths


def client_answers(data: PreparedData, k: int) -> np.ndarray:
    """Client k's answers M_q(D_k) for every q in W+ (and every one-way), concatenated."""
    local = data.federation.client(k)
    return np.concatenate([local.marginal(c) for c in data.workload.answered])


def secure_em_epsilon(epsilon: float, em: Selection = Selection.GUMBEL,
                      score: Score = Score.L1) -> float:
    """The ε to run the fixed-point secure mechanism with, so that its privacy parameter stays
    within the ε that the accountant charges: the EM's bounded-range parameter is
    ε_eff + 8η, report-noisy-max's pure-DP parameter ε_eff + 4η (secure_em's analysis; c = 8
    or 4 below). The L2 score's square root moves each scaled score by at most ε τ/2
    (``secure_l2.STATED_TAU``), which adds to η: run at (ε − cη)/(1 + cτ/2)."""
    c = Selection(em).fixed_point_factor
    run = epsilon - c * STATED_ETA
    if Score(score) is Score.L2:
        run /= 1 + c * STATED_TAU / 2
    if run <= 0:
        raise ConfigError(f"ε = {epsilon:.3g} per selection is below the secure mechanism's "
                          "fixed-point slack (8η EM, 4η rnm; η = "
                          f"{STATED_ETA:g}): use fewer rounds or a larger ε")
    return run


def union_answers(data: PreparedData, clients: Sequence[int]) -> np.ndarray:
    """Σ_{k in clients} M_q(D_k) for every q in W+ (= the answers on the clients' union)."""
    rows = np.concatenate([data.federation.client_rows[k] for k in clients])
    union = data.federation.table.subset(rows)
    return np.concatenate([union.marginal(c) for c in data.workload.answered])


def selection_epsilon(epsilon_t: float, em: Selection) -> tuple[float, float, str]:
    """(ε to run, zCDP ρ charged, mechanism name) for one selection of the round budget ε_t.

    ``gumbel``: the exponential mechanism at ε_t, ρ = ε_t²/8. ``rnm``: report-noisy-max costs
    ε²/2, so it runs at ε_t/2 for the same ρ = ε_t²/8 (the schedule is unchanged).
    """
    em = Selection(em)
    run = em.run_epsilon(epsilon_t)
    return run, em.rho(run), em.mechanism


def offset_std(sigma: float, m: int) -> float:
    """Std of the measurement noise actually added by the m servers (``added_variance``):
    the score offset's σ, as central AIM uses the std of its own noise."""
    return math.sqrt(added_variance(sigma, m, (m - 1) // 2))


def score_bound(workload: Workload, max_count: int, sigma: float) -> float:
    """Public bound on |u_r|, which sizes the secure EM's fixed point: secure_scoring's rule
    with the model total bounded by the record count N (a larger total fails its check)."""
    biggest = max(workload.n_cells(c) for c in workload.answered)
    return public_score_bound(max(workload.weights), max_count, max_count, sigma, biggest)


class ContributorCount:
    """A noisy count ñ of the contributors' records, for ``poisson`` (cumulative) mode.

    Released in round 0 and in every selection round (T + 1 releases, whether or not the
    contributor set changed, so the number of releases is public and fixed). Each release
    measures, inside MPC, the smallest one-way marginal of the contributors' aggregate with
    std σ_c = σ·sqrt(T + 1) and sums it: one record changes that histogram by 1 in L2
    (add/remove), so a release costs 1/(2σ_c²) = 1/(2σ²(T + 1)) zCDP and all T + 1 together
    cost exactly one Gaussian measurement at σ; the schedule pays for T + d1 + 1
    measurements. Releases for an unchanged set are averaged (inverse variance).
    """

    def __init__(self, workload: Workload, offsets: np.ndarray, lengths: np.ndarray,
                 rounds: int, max_count: int) -> None:
        one_ways = [i for i, c in enumerate(workload.answered) if len(c) == 1]
        self.which = min(one_ways, key=lambda i: (int(lengths[i]), i))
        self.offset, self.length = int(offsets[self.which]), int(lengths[self.which])
        self.releases, self.max_count = rounds + 1, max_count
        self.estimate: float | None = None
        self.variance = math.inf
        self.history: list[dict] = []

    def release(self, engine: SecureEngine, round: int, sigma: float, changed: bool,
                privacy: PrivacyLedger, honest: int) -> float:
        """Charge (with KLS21's slack for the ``honest`` servers' shares), open, log the
        release; returns the new scale."""
        sigma_c = sigma * math.sqrt(self.releases)
        charge = privacy.spend_gaussian(round, sigma_c, "contributor count",
                                        honest_shares=honest, cells=self.length)
        values, cell_variance = engine.measure(round, self.offset, self.length, sigma_c)
        privacy.release(charge, "noisy contributor count")
        total, variance = float(values.sum()), self.length * cell_variance
        if changed or self.estimate is None:
            self.estimate, self.variance = total, variance
        else:  # same contributors: average with the earlier releases
            weight = self.variance / (self.variance + variance)
            self.estimate = weight * total + (1 - weight) * self.estimate
            self.variance = 1 / (1 / self.variance + 1 / variance)
        self.history.append({"round": round, "noisy_count": total, "estimate": self.estimate,
                             "changed": changed})
        return self.scale

    @property
    def scale(self) -> float:
        """ñ clipped to the public range [1, N]."""
        return float(min(max(self.estimate or 1.0, 1.0), self.max_count))


def scale_to_contributors(public_c: np.ndarray, model_total: float, count: float,
                          out: np.ndarray | None = None) -> np.ndarray:
    """The model's marginals (at its own total) rescaled to the contributors' noisy count:
    M̂_q · ñ / total(M̂) (into ``out`` if given: select scales its fresh 2.87 M cells in place)."""
    if not model_total > 0:
        return public_c
    return np.multiply(public_c, count / model_total, out=out)


def slack_reserve(config: RunConfig, workload: Workload) -> Callable[[float], float]:
    """σ ↦ the most KLS21 slack a run can charge at σ: the d1 one-way measurements, T
    measurements of the largest candidate, and in ``poisson`` mode T + 1 contributor counts
    at σ·sqrt(T + 1) (:class:`ContributorCount`). The schedule reserves it up front."""
    from flaimsim.mechanisms.accounting import worst_slack

    honest, T = config.servers - config.threshold, config.rounds
    one_ways = [workload.n_cells(c) for c in workload.one_ways]
    biggest = max(workload.n_cells(c) for c in workload.candidates)
    count = min(one_ways) if config.distaim_participation.counted else None

    def reserve(sigma: float) -> float:
        total = math.fsum(worst_slack(sigma, honest, n) for n in one_ways)
        total += T * worst_slack(sigma, honest, biggest)
        if count is not None:
            total += (T + 1) * worst_slack(sigma * math.sqrt(T + 1), honest, count)
        return total
    return reserve


class DistAimBackend:
    """Select and measure through a :class:`SecureEngine` (real MPC or its ideal model)."""

    def __init__(self, config: RunConfig, data: PreparedData, engine: SecureEngine,
                 max_count: int) -> None:
        self.config, self.data, self.engine = config, data, engine
        self.workload = data.workload
        self.offsets, self.lengths = candidate_layout(data.workload)
        self.index = {c: i for i, c in enumerate(data.workload.answered)}
        self.max_count = max_count
        self.honest = config.servers - config.threshold   # servers whose noise shares count
        self.shared: set[int] = set()
        self.sampling = stream(config.seed, "sampling")
        self.effective_epsilons: list[float] = []
        self.scored_cells = 0
        self.contributor_sets = 0
        self.count = (ContributorCount(data.workload, self.offsets, self.lengths,
                                       config.rounds, max_count)
                      if config.distaim_participation.counted else None)
        self._reserve = slack_reserve(config, data.workload)
        # poisson: each measurement with the contributor count in force when it was taken
        self._measured: list[tuple[Measurement, float]] = []

    # -- participation ---------------------------------------------------------------------
    def _join(self, round: int) -> bool:
        """Share the newly sampled clients' answers; whether the contributor set grew."""
        K = self.data.federation.n_clients
        if self.config.distaim_participation is Participation.ALL:
            new = set(range(K)) - self.shared
        else:
            sampled = np.flatnonzero(self.sampling.random(K) < self.config.participation)
            new = set(int(k) for k in sampled) - self.shared
        if not new:
            return False
        self.engine.share(round, sorted(new), lambda k: client_answers(self.data, k),
                          lambda ks: union_answers(self.data, ks))
        self.shared |= new
        self.contributor_sets += 1
        self.engine.decompose(round, self.lengths)
        return True

    def n_measurements(self, rounds: int, d1: int) -> int:
        return measurements_paid(rounds, d1, self.count is not None)

    def slack_reserve(self, sigma: float) -> float:
        return self._reserve(sigma)

    def _measure(self, round: int, cliques: Sequence[Clique], sigma: float,
                 privacy: PrivacyLedger) -> list[Measurement]:
        out = []
        honest = self.honest
        if cliques:   # their bits in one call, not one per marginal
            idx = [self.index[c] for c in cliques]
            self.engine.prepare_measure(round, kept_cells(self.offsets[idx], self.lengths[idx]))
        for c in cliques:
            i = self.index[c]
            # Charge first (the servers open the noisy marginal inside engine.measure).
            charge = privacy.spend_gaussian(round, sigma, "|".join(c), honest_shares=honest,
                                            cells=int(self.lengths[i]))
            values, variance = self.engine.measure(round, int(self.offsets[i]),
                                                   int(self.lengths[i]), sigma)
            privacy.release(charge, f"noisy marginal {'|'.join(c)}")
            out.append(Measurement(c, values.astype(float), math.sqrt(variance)))
        if self.count is not None:
            self._measured += [(m, self.count.scale) for m in out]
        return out

    def harmonise(self, measurements: list[Measurement]) -> list[Measurement]:
        """In ``poisson`` mode, every measurement rescaled to the current contributor count.

        A marginal measured when the (noisy) count was n_then describes fewer records than
        one measured now; fitting both as they are gives the model no consistent total (on
        Adult, T = 10: L1 0.74, NLL 506). Each y is rescaled to y·n_now/n_then with its std
        scaled alike: post-processing of released values, so it costs no budget. It assumes
        the early contributors' marginals are representative, as any such scaling does."""
        if self.count is None:
            return measurements
        if [id(m) for m, _ in self._measured] != [id(m) for m in measurements]:
            raise ConfigError("DistAIM's measurements were changed outside its backend")
        now = self.count.scale
        out = [m if n == now else Measurement(m.clique, m.values * (now / n), m.sigma * now / n)
               for m, n in self._measured]
        self._measured = [(m, now) for m in out]
        return out

    def measure_initial(self, one_ways, sigma, privacy):
        self._join(0)
        while not self.shared:  # poisson: nobody sampled yet; the sample is redrawn
            self._join(0)
        if self.count is not None:
            self.count.release(self.engine, 0, sigma, True, privacy, self.honest)
        return self._measure(0, one_ways, sigma, privacy)

    def select(self, round, candidates, model, sigma, epsilon, privacy):
        public_c = np.concatenate([model.marginal(c) for c in candidates])
        if self.count is not None:  # the model's total lags a growing contributor set
            changed = self._join(round)
            public_c = scale_to_contributors(
                public_c, model.total, self.count.release(self.engine, round, sigma, changed,
                                                          privacy, self.honest), out=public_c)
        idx = [self.index[c] for c in candidates]
        self.scored_cells += int(public_c.size)
        std = offset_std(sigma, self.config.servers)
        self.engine.score(round, self.offsets[idx], self.lengths[idx], public_c, std,
                          [self.workload.weights[i] for i in idx],
                          score_bound(self.workload, self.max_count, std))
        eps_run, rho, mechanism = selection_epsilon(epsilon, self.config.em)
        charge = privacy.spend(round, mechanism, rho, f"{len(candidates)} candidates (secure)")
        privacy.add_deviation(round, "gumbel-truncation",
                              gumbel_truncation_tv(len(candidates), GEOMETRIC_BITS),
                              f"{len(candidates)} candidates, B = {GEOMETRIC_BITS} bits")
        choice, eps_eff = self.engine.select(round, secure_em_epsilon(eps_run, self.config.em,
                                                                      self.config.score),
                                             score_sensitivity(self.workload.weights))
        privacy.release(charge, "selected index")
        self.effective_epsilons.append(eps_eff)
        return [candidates[choice]]

    def measure(self, round, cliques, sigma, privacy, model):
        return self._measure(round, cliques, sigma, privacy)


@dataclass(frozen=True)
class CostSetting:
    """What fixes DistAIM's wire widths for a run, known before any data is touched: the public
    record bound, the fixed schedule's σ, the scores' public bound and the ε the secure argmax
    runs at per unit of sensitivity (it fixes the argmax's width, ``secure_em.comparison_bits``).
    The cost table's key."""

    max_count: int
    sigma: float
    score_bound: float
    select_epsilon: float       # ε_run/Δ: the calibration's ε at Δ = 1 (the same scale)
    kappa: int = 30             # MPyC's statistical security parameter (mpc_security)


def measurements_paid(rounds: int, d1: int, counted: bool) -> int:
    """Gaussian measurements DistAIM's schedule pays for: T + d1, and one more when the
    contributors are counted (``poisson``: T + 1 count releases, together one measurement's
    cost)."""
    return rounds + d1 + counted


def distaim_schedule(config: RunConfig, data: PreparedData) -> AimSchedule:
    """The run's fixed schedule, computed once: it sizes the wire widths (:func:`cost_setting`)
    and drives the loop (``run_fixed`` checks that it pays for the backend's measurements)."""
    return fixed_schedule(config, measurements_paid(config.rounds, len(data.workload.one_ways),
                                                    config.distaim_participation.counted),
                          slack_reserve(config, data.workload))


def cost_setting(config: RunConfig, data: PreparedData,
                 schedule: AimSchedule | None = None) -> CostSetting:
    max_count = wire_record_bound(data)
    schedule = schedule or distaim_schedule(config, data)
    eps_run = secure_em_epsilon(selection_epsilon(schedule.epsilon_select, config.em)[0],
                                config.em, config.score)
    bound = score_bound(data.workload, max_count, offset_std(schedule.sigma, config.servers))
    return CostSetting(max_count, schedule.sigma, bound,
                       eps_run / score_sensitivity(data.workload.weights),
                       resolve_kappa(config, data.workload, max_count))


def cost_table(config: RunConfig, setting: CostSetting) -> tuple[Any, bool]:
    """The calibrated MPC cost table for this run's setting (cached) and whether it was
    calibrated now."""
    return load_or_calibrate(DistAimOptions.of(config, setting.max_count,
                                               mpyc_option(setting.kappa)),
                             setting.score_bound, setting.select_epsilon)


def make_engine(config: RunConfig, ledger: Ledger, setting: CostSetting
                ) -> tuple[SecureEngine, list[str]]:
    notes: list[str] = []
    options = DistAimOptions.of(config, setting.max_count, mpyc_option(setting.kappa))
    if config.mpc == MpcMode.REAL:
        engine: SecureEngine = MpcEngine(ledger, options, command_timeout=config.party_timeout_s,
                                         servers_at=config.server_addresses,
                                         network=config.network_spec,
                                         connect_timeout=config.connect_timeout_s,
                                         ports=config.server_ports())
    else:
        table, fresh = cost_table(config, setting)
        if fresh:
            notes.append("calibrated the MPC cost model for this setting (cached)")
        engine = IdealEngine(ledger, table, stream(config.seed, "mechanisms"), options)
    if engine.privacy_note:
        notes.append(engine.privacy_note)
    return engine, notes


def check_against_model(config: RunConfig, data: PreparedData, steps: Sequence[Any],
                        measured: Ledger, setting: CostSetting | None = None) -> dict[str, Any]:
    """Bytes per phase of a real run beside the cost table's price for the same steps
    (``replay``); the one-off connection handshakes (phase setup) are not in the table."""
    table, fresh = cost_table(config, setting or cost_setting(config, data))
    priced = replay(steps, table, config.sharing)
    modelled = priced.by_phase()
    wire = {p: b for p, b in measured.by_phase().items() if p != "setup"}
    phases = sorted(set(modelled) | set(wire))
    rel = {p: (modelled.get(p, 0) - wire.get(p, 0)) / max(wire.get(p, 0), 1) for p in phases}
    rounds_wire, rounds_model = measured.rounds_by_phase(), priced.rounds_by_phase()
    return {"table": table.key, "calibrated_now": fresh,
            "measured_bytes": {p: int(wire.get(p, 0)) for p in phases},
            "modelled_bytes": {p: int(round(modelled.get(p, 0))) for p in phases},
            "relative_error": rel, "max_abs_relative_error": max(abs(v) for v in rel.values()),
            "measured_rounds": {p: int(rounds_wire.get(p, 0)) for p in phases},
            "modelled_rounds": {p: int(rounds_model.get(p, 0)) for p in phases}}


def model_check_notes(check: dict[str, Any]) -> list[str]:
    rows = [f"{p} wire {check['measured_bytes'][p]:,} B, modelled {check['modelled_bytes'][p]:,} B "
            f"({100 * check['relative_error'][p]:+.2f}%)" for p in check["measured_bytes"]]
    rounds = [f"{p} wire {check['measured_rounds'][p]}, modelled {check['modelled_rounds'][p]}"
              for p in check.get("measured_rounds", {})]
    return ["model check (bytes sent by all servers and clients per phase): " + "; ".join(rows),
            "model check (communication rounds per phase): " + "; ".join(rounds)]


def run_distaim(config: RunConfig, data: PreparedData | None = None,
                progress: Callable[[int], None] | None = None) -> RunResult:
    """DistAIM with ``config.servers`` compute servers (``--mpc real`` or ``model``)."""
    start = time.perf_counter()
    data = data or prepare(config)
    # The public bound on every aggregate count and the schedule set the wire-visible widths.
    schedule = distaim_schedule(config, data)
    setting = cost_setting(config, data, schedule)
    max_count = setting.max_count
    ledger = Ledger(run=f"distaim-{config.mpc}-T{config.rounds}-s{config.seed}",
                    protocol="distaim")
    engine, notes = make_engine(config, ledger, setting)
    launcher = getattr(engine, "launcher", None)
    try:
        if isinstance(engine, MpcEngine):  # MPyC's connection handshakes (phase setup)
            add_setup_rows(ledger, engine.launcher.call("setup_counters"))
        backend = DistAimBackend(config, data, engine, max_count)
        model = GraphicalModel.for_table(data.train, config.iters_round, config.iters_final)
        with profile.collecting() as prof:
            loop = run_fixed(config, data.workload, model, backend, progress, schedule)
        reveals = engine.reveal_log()
        # real MPC: check openings from outside
        opened = verify_servers(launcher.call, DISTAIM_RULES) if launcher else None
        masked = masked_openings(launcher.call) if launcher else None
    finally:
        engine.close()
    extra = {"mpc": config.mpc, "servers": config.servers,
             # where server:i of the ledger ran (its counters are that host's own)
             "servers_at": config.servers_at if config.mpc == MpcMode.REAL else None,
             "private": config.threshold >= 1,
             # seconds the servers took to start ahead of DistAIM (warm_start), if they did
             "servers_prestarted_s": getattr(launcher, "prestart_ready_s", None),
             "privacy_note": engine.privacy_note or None,
             "contributing_clients": len(backend.shared),
             "contributor_count": (None if backend.count is None
                                   else backend.count.history),
             "scored_cells": backend.scored_cells,
             "epsilon_select_effective_min": min(backend.effective_epsilons),
             "sharing": config.sharing, "score": config.score, "em": config.em,
             "score_frac_bits": config.score_frac_bits, "public_record_bound": max_count,
             "opened": sorted({r["name"] for r in reveals}),
             "openings": len(reveals),
             "server_openings_checked": None if opened is None else len(opened),
             "server_opened_elements": None if opened is None
             else sum(o.elements for o in opened),
             # counted at server 0 with --mpc real; the modelled run executes none
             "masked_openings": masked, "masked_openings_note": MASKED_OPENINGS_NOTE,
             # per phase, its secure operations (wire: their own sections; modelled: none)
             "profile": profile.profile_table(prof.ops, ledger)}
    record, synth = build_record(config, data, loop, ledger, config.servers,
                                 time.perf_counter() - start, extra)
    # Bytes sent per server per scored cell and round; the bit decompositions (each cell at
    # most once per contributor set, when first priced or measured) are reported apart.
    decompose_bytes = getattr(engine, "decompose_bytes", 0)
    decomposed = getattr(engine, "decomposed_cells", 0)
    scoring = ledger.by_phase().get("score", 0) - decompose_bytes
    record["score_bytes_per_cell"] = (scoring / config.servers / backend.scored_cells
                                      if backend.scored_cells else None)
    record["decomposed_cells"] = decomposed
    record["decomposed_cells_per_set"] = decomposed / max(1, backend.contributor_sets)
    record["decompose_bytes_per_cell"] = (decompose_bytes / config.servers / decomposed
                                          if decomposed else None)
    record["wall_seconds"] = time.perf_counter() - start
    if config.check_model:
        record["model_check"] = check_against_model(config, data, engine.steps, ledger, setting)
        notes.extend(model_check_notes(record["model_check"]))
    return RunResult(record, synth, ledger, loop, notes,
                     {"reveals": reveals, "steps": list(engine.steps)})


__all__ = ["run_distaim", "DistAimBackend", "ContributorCount", "scale_to_contributors",
           "candidate_layout", "client_answers",
           "ConfigError"]
