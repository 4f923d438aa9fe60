"""FLAIM: federated AIM with local selection and secure aggregation (NaiveFLAIM, AugFLAIM
(Oracle), AugFLAIM (Private)); every message crosses a loopback socket and is counted there.

Round 0: a Poisson sample of clients submits all its one-way marginals (concatenated, one
SecAgg+ session); the aggregator adds N(0, σ²) to each one-way sum. Round t = 1..T:

1. the aggregator samples clients (Poisson rate p, at least 2) and sends each the serialised
   model (:mod:`flaimsim.parties.aggregator`);
2. each sampled client scores its candidates on its own data and draws r_k with the local
   exponential mechanism (:mod:`flaimsim.parties.fl_clients`: scores, corrections c_k and the
   local sensitivities 2·max w / 4·max w), and sends r_k in the clear (phase ``select``);
3. for each distinct chosen r, the choosing clients run SecAgg+ on M_r(D_k) and the
   aggregator adds N(0, σ² I) once to each sum: one :class:`Measurement` per distinct
   marginal. A one-client group gets a cover client contributing zeros, and then every
   client of the group adds an N_Z(0, σ²/n) share before masking (distributed noise,
   :mod:`flaimsim.parties.fl.distributed_noise`), so the aggregator never unmasks one
   client's exact vector. ``--flaim-noise distributed`` does that in every session (round 0
   and proxy included): the aggregator sees noisy sums only. Each Gaussian with shares is
   charged KLS21's slack (the round's worst group, by parallel composition), and the
   schedule reserves the worst case (:meth:`FlaimBackend.slack_reserve`);
4. AugFLAIM (Private), rounds 1..T−1: every sampled client also submits all its one-way
   marginals through SecAgg+ (ledger phase ``proxy``); the noisy sums refresh the running
   mean ỹ used by the next rounds' τ̃ and join the model's measurements.

Privacy (add/remove one record; each record lives in exactly one client): in a round a
record's client runs one exponential mechanism and its vector enters one chosen-marginal sum
(plus, in Private, each one-way sum once), so by parallel composition across clients the
accountant charges per round one exponential mechanism (ε_t) and one Gaussian (σ), plus d1
Gaussians for Private's proxy. Measurements paid: T + d1 (Naive, Oracle) and
T + d1 + d1·(T − 1) (Private); σ and ε_t come from :meth:`AimSchedule.fixed`. AugFLAIM
(Oracle) uses the true heterogeneity from the union of all clients' data: NOT private.

Charge before release: the round's exponential mechanism is charged before the clients run
their local EMs (their choices reach the aggregator in the clear), and the round's Gaussians
before the secure aggregations start. :mod:`flaimsim.protocols.flaim_sessions` owns the
sessions, the lone-chooser groups and their covers, the dropouts (a failed round is skipped
and its Gaussians refunded; round 0 is retried with a fresh sample) and the scaling of noisy
sums into measurements. A ConfigError when every later round failed; the record counts
``failed_rounds``. With central noise the aggregator learns the exact sums of
>= 2 choosers before adding noise, so DP protects what it releases, not what it sees
(docs/privacy.md). The noise is the discrete Gaussian N_Z(0, σ²); the model is fitted with
its exact variance. ``config.extra["flaim_scale"] = False`` passes raw sums.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from flaimsim.mechanisms import memo
from flaimsim.mechanisms.accounting import PrivacyLedger, worst_slack
from flaimsim.mechanisms.model import GraphicalModel, Measurement
from flaimsim.parties.fl.aggregator import (FlaimRoundError, broadcast_model, collect_choices,
                                            poisson_sample, send_choice)
from flaimsim.parties.fl.clients import LocalSelectionError, local_sensitivity, \
    simplex_projection
from flaimsim.parties import profile
from flaimsim.parties.ledger import Ledger
from flaimsim.protocols.aim import run_fixed
from flaimsim.protocols.config import ConfigError, RunConfig, stream
from flaimsim.protocols.flaim_sessions import (AggregateRecord, Clique, FlaimSessions,
                                               RoundInfo)
from flaimsim.protocols.prepare import PreparedData, prepare
from flaimsim.protocols.result import RunResult, build_record

VARIANT_OF_PROTOCOL = {"naive-flaim": "naive", "aug-flaim-oracle": "oracle",
                       "aug-flaim-private": "private"}
ORACLE_NOTE = ("aug-flaim-oracle uses each client's true heterogeneity tau_k, computed from "
               "the union of all clients' data: it is NOT differentially private and serves "
               "only as a reference point")


def model_distribution(model: GraphicalModel, clique: Clique) -> np.ndarray:
    """p̂_r, the model's marginal distribution."""
    m = model.marginal(clique)
    total = m.sum()
    if not (np.isfinite(total) and total > 0):
        raise FloatingPointError(f"the model's marginal on {clique} cannot be computed")
    return m / total


class FlaimBackend(FlaimSessions):
    """FLAIM's select and measure steps for :func:`run_fixed` (module docstring), over the
    secure-aggregation sessions of :class:`FlaimSessions`."""

    def __init__(self, config: RunConfig, data: PreparedData, variant: str, ledger: Ledger,
                 audit: bool = False) -> None:
        if variant not in ("naive", "oracle", "private"):
            raise ConfigError(f"unknown FLAIM variant {variant!r}")
        super().__init__(config, data, variant, ledger, audit)
        self.index = {c: i for i, c in enumerate(self.workload.candidates)}
        self.weights = dict(zip(self.workload.candidates, self.workload.weights))
        self.delta_local = local_sensitivity(variant, max(self.workload.weights))
        self.rng_select = stream(config.seed, "local-selection")
        self._pending: tuple[RoundInfo, float, float] | None = None
        self._reference: dict[Clique, np.ndarray] = {}

    # ---- schedule -------------------------------------------------------------------------
    def n_measurements(self, rounds: int, d1: int) -> int:
        if self.variant == "private":
            return rounds + d1 + d1 * (rounds - 1)
        return rounds + d1

    def slack_reserve(self, sigma: float) -> float:
        """The most KLS21 slack the run can charge at σ (reserved by the schedule): per round
        one noise-share group of the largest candidate (a lone chooser's min_group clients,
        or with distributed noise up to all K), and with distributed noise the one-way sums
        of round 0 and of Private's proxy rounds."""
        K, T = len(self.clients), self.config.rounds
        n = K if self.distributed else self.min_group
        biggest = max(self.workload.n_cells(c) for c in self.workload.candidates)
        total = T * worst_slack(sigma, n, biggest)
        if self.distributed:
            one_way_rounds = 1 + (T - 1 if self.variant == "private" else 0)
            total += one_way_rounds * sum(worst_slack(sigma, K, self.workload.n_cells(c))
                                          for c in self.workload.one_ways)
        return total

    # ---- local selection ------------------------------------------------------------------
    def proxy_estimates(self) -> dict[str, np.ndarray]:
        """ŷ_a: the running mean of the noisy one-way sums, projected on the simplex."""
        return {a: simplex_projection(s / self.proxy_count) for a, s in self.proxy_sum.items()}

    def _reference_dist(self, clique: Clique) -> np.ndarray:
        if clique not in self._reference:
            m = self.data.train.marginal(clique)
            self._reference[clique] = m / m.sum()
        return self._reference[clique]


    # ---- SelectMeasure -------------------------------------------------------------------
    def select(self, round: int, candidates: Sequence[Clique], model: GraphicalModel,
               sigma: float, epsilon: float, privacy: PrivacyLedger) -> list[Clique]:
        """Sample, broadcast, run every sampled client's local EM; collect the choices.
        The round's EM is charged (parallel composition over clients) before any choice
        is sent."""
        self.privacy = privacy
        t0 = time.perf_counter()
        sampled = poisson_sample(len(self.clients), self.config.participation,
                                 self.rng_sampling)
        em_charge = privacy.spend_exponential(round, epsilon,
                                              f"{len(sampled)} local EMs (parallel)")
        info = RoundInfo(round, tuple(int(k) for k in sampled))
        info.broadcast_bytes = broadcast_model(model, sampled, self.network, round)
        cands = [c for c in candidates if len(c) > 1] if self.variant == "private" \
            else list(candidates)
        if not cands:
            raise LocalSelectionError(f"round {round}: no candidate left for local selection "
                                      "(raise max_model_size_mb)")
        dists = {c: model_distribution(model, c) for c in cands}
        reference = {c: self._reference_dist(c) for c in cands} \
            if self.variant == "oracle" else None
        proxy = self.proxy_estimates() if self.variant == "private" else None
        weights = [self.weights[c] for c in cands]
        sizes = [self.workload.n_cells(c) for c in cands]
        sums = {c: (dists[c].sum(), None if reference is None else reference[c].sum())
                for c in cands} if memo.enabled() else None
        with profile.star_step(self.network.sent, round, "select", "local EM and choice"):
            for k in sampled:
                cl = self.clients[k]
                scores = cl.scores(cands, dists, sigma, weights, sizes, self.variant,
                                   reference, proxy, sums)
                idx = cl.choose(cands, scores, epsilon, self.delta_local, self.rng_select)
                send_choice(int(k), self.index[cands[idx]], self.network, round)
        arrived = collect_choices(self.network, round)
        self.network.flush_to_ledger(self.ledger)
        for k in sampled:  # what the aggregator read off its sockets
            privacy.release(em_charge, f"client {int(k)}'s choice")
            info.choices[int(k)] = self.workload.candidates[arrived[int(k)]]
        info.seconds = time.perf_counter() - t0
        self._pending = (info, epsilon, sigma)
        chosen = set(info.choices.values())
        return [c for c in self.workload.candidates if c in chosen]

    def measure(self, round: int, cliques: Sequence[Clique], sigma: float,
                privacy: PrivacyLedger, model: GraphicalModel) -> list[Measurement]:
        """Secure sums of the chosen marginals (and Private's proxy), then charge and noise
        (:meth:`FlaimSessions.aggregate_round`)."""
        if self._pending is None or self._pending[0].round != round:
            raise RuntimeError(f"measure({round}) without a matching select")
        info = self._pending[0]
        self._pending = None
        return self.aggregate_round(info, cliques, sigma, privacy)


def simulate_flaim(config: RunConfig, data: PreparedData | None = None,
                   progress: Callable[[int], None] | None = None, audit: bool = False
                   ) -> tuple[RunResult, FlaimBackend]:
    """Run a FLAIM variant and also return its backend (aggregates, rounds, transcripts when
    ``audit``)."""
    if config.protocol not in VARIANT_OF_PROTOCOL:
        raise ConfigError(f"{config.protocol!r} is not a FLAIM protocol; choose one of "
                          f"{tuple(VARIANT_OF_PROTOCOL)}")
    start = time.perf_counter()
    data = data or prepare(config)
    variant = VARIANT_OF_PROTOCOL[config.protocol]
    ledger = Ledger(run=f"{config.protocol}-s{config.seed}", protocol=config.protocol)
    model = GraphicalModel.for_table(data.train, config.iters_round, config.iters_final)
    backend = FlaimBackend(config, data, variant, ledger, audit)
    openings_checked = None
    try:
        with profile.collecting() as prof:
            loop = run_fixed(config, data.workload, model, backend, progress)
        if backend.servers is not None:  # what the servers' runtimes opened, from outside
            openings_checked = backend.servers.check_openings()
    finally:
        backend.network.flush_to_ledger(ledger)
        backend.network.close()
        if backend.servers is not None:
            backend.servers.close()
    rounds = [r for r in backend.rounds if r.round > 0]
    failed = [r.round for r in rounds if r.failed]
    if failed and len(failed) == config.rounds:
        raise ConfigError(f"all {config.rounds} FLAIM rounds failed at secure aggregation "
                          f"(--dropout {config.dropout:g}; their EM charges were spent, their "
                          "Gaussians refunded): lower --dropout, or raise --participation or "
                          "--clients")
    choice_records = [r for r in backend.records if r.phase == "choice"]
    extra = {
        "flaim_variant": variant, "private": variant != "oracle",
        "local_sensitivity": backend.delta_local,
        "population_estimate": backend.population, "measurements_scaled": backend.scale,
        "sampled_clients_mean": float(np.mean([len(r.sampled) for r in backend.rounds])),
        "distinct_choices_mean": float(np.mean([len(set(r.choices.values()))
                                                for r in rounds])) if rounds else None,
        "aggregation": config.aggregation,
        "server_openings_checked": openings_checked,
        "secagg_sessions": backend.sessions,
        "cover_sessions": sum(1 for r in choice_records if r.covers),
        "cover_contributions": sum(len(r.covers) for r in choice_records),
        "flaim_noise": config.flaim_noise,
        # sessions whose clients added noise shares (every one if distributed; else the
        # lone choosers' groups)
        "noise_share_sessions": backend.noisy_sessions,
        "late_dropouts": sum(len(r.late_dropped) for r in backend.rounds),
        "failed_rounds": len(failed), "round0_attempts": backend.round0_attempts,
        "model_broadcast_bytes_mean": float(np.mean([r.broadcast_bytes for r in rounds]))
        if rounds else None,
        "round_seconds_mean": float(np.mean([r.seconds for r in rounds])) if rounds else None,
        "secagg_seconds": float(sum(r.secagg_seconds for r in backend.rounds)),
        **{f"bytes_phase_{p}": b for p, b in sorted(ledger.by_phase().items())},
    }
    n_servers = config.servers if backend.servers is not None else 0
    extra["profile"] = profile.profile_table(prof.ops, ledger)
    record, synth = build_record(config, data, loop, ledger, n_servers, 0.0, extra)
    loop.times.generate_s = record["generate_s"]
    record["wall_seconds"] = time.perf_counter() - start
    notes = [ORACLE_NOTE] if variant == "oracle" else []
    if failed or backend.round0_attempts > 1:
        notes.append(f"{len(failed)} of {config.rounds} rounds failed at secure aggregation "
                     f"(too many dropouts) and were skipped: their Gaussians refunded, their "
                     f"EM charges kept; round 0 took {backend.round0_attempts} sample(s)")
    if backend.servers is not None and backend.servers.privacy_note:
        notes.append(backend.servers.privacy_note)
        record["privacy_note"] = backend.servers.privacy_note
        record["private"] = False
    if notes:
        record["note"] = "; ".join(notes)
    return RunResult(record, synth, ledger, loop, notes), backend


def run_flaim(config: RunConfig, data: PreparedData | None = None,
              progress: Callable[[int], None] | None = None) -> RunResult:
    """Run NaiveFLAIM, AugFLAIM (Oracle) or AugFLAIM (Private) per ``config.protocol``."""
    return simulate_flaim(config, data, progress)[0]


__all__ = ["AggregateRecord", "FlaimBackend", "FlaimRoundError", "ORACLE_NOTE", "RoundInfo",
           "VARIANT_OF_PROTOCOL", "run_flaim", "simulate_flaim"]
