"""DistAIM: AIM with the trusted curator replaced by m MPC compute servers.

Steps per run (each a ledger phase):
1. share-inputs: a contributing client secret-shares all its W+ answers once, as one int64
   vector in candidate order (Shamir per server, or additive with PRG seeds).
   Participation: ``all`` clients in round 0 (the poster's distributed setting), or
   ``poisson``: a client shares when first sampled (rate p) and every shared client
   contributes from then on (the authors' code).
2. score: the servers bit-decompose the aggregate once per contributor set, then score the
   size-filtered candidates against the public model marginals, scaled by the model's total
   (a public DP estimate of the contributors' count, as upstream AIM uses). In ``poisson``
   mode that total lags behind a growing contributor set: it costs no budget but biases the
   score until the model catches up.
3. select: secure exponential mechanism; only the index is opened.
4. measure: every server inputs Gaussian noise; only the noisy marginal is opened. The model
   is fitted with the noise variance actually added (m σ²/(m − t) + m/12).

Budget: exactly central AIM's (σ, ε_t over T + d1 measurements), as if a curator held the
contributors' union. The secure EM is a fixed-point approximation whose bounded-range
parameter is ε_eff + 8η (η ≤ 1e−4, ``secure_em``); it runs with ε_t − 8η (rounded down
further by ``em_scale``), so the ε_t that the accountant charges covers it. ``--mpc real`` measures traffic on the wire; ``--mpc model`` runs the
ideal functionality with traffic from the calibrated cost model.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np

from flaimsim.mechanisms.accounting import PrivacyLedger
from flaimsim.mechanisms.model import GraphicalModel, Measurement
from flaimsim.mechanisms.scores import score_sensitivity
from flaimsim.mechanisms.workload import Workload
from flaimsim.parties.mpc.distaim_engine import IdealEngine, MpcEngine, SecureEngine
from flaimsim.parties.ledger import Ledger
from flaimsim.protocols.aim import run_fixed
from flaimsim.protocols.config import ConfigError, RunConfig, stream
from flaimsim.parties.mpc.openings import DISTAIM_RULES, verify_servers
from flaimsim.parties.mpc.wire import add_setup_rows
from flaimsim.protocols.prepare import PreparedData, prepare
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


def secure_em_epsilon(epsilon: float) -> float:
    """The ε to run the fixed-point secure EM with, so that its bounded-range parameter
    ε_eff + 8η (secure_em's analysis) stays within the ε_t that the accountant charges."""
    from flaimsim.parties.mpc.secure_em import STATED_ETA

    run = epsilon - 8 * STATED_ETA
    if run <= 0:
        raise ConfigError(f"ε_t = {epsilon:.3g} per selection is below the secure EM's "
                          f"fixed-point slack 8η = {8 * STATED_ETA:g}: use fewer rounds or a "
                          "larger ε")
    return run


def union_answers(data: PreparedData, clients: Sequence[int]) -> np.ndarray:
    """Σ_{k in clients} M_q(D_k) for every q in W+ (= the answers on the clients' union)."""
    rows = np.concatenate([data.federation.client_rows[k] for k in clients])
    union = data.federation.table.subset(rows)
    return np.concatenate([union.marginal(c) for c in data.workload.answered])


def score_bound(workload: Workload, max_count: int, sigma: float) -> float:
    """Public bound on |u_r|, which sizes the secure EM's fixed point: secure_scoring's rule
    with the model total bounded by the record count N (a larger total fails its check)."""
    from flaimsim.parties.mpc.secure_scoring import score_bound as bound

    biggest = max(workload.n_cells(c) for c in workload.answered)
    return bound(max(workload.weights), max_count, max_count, sigma, biggest)


class DistAimBackend:
    """Select and measure through a :class:`SecureEngine` (real MPC or its ideal model)."""

    def __init__(self, config: RunConfig, data: PreparedData, engine: SecureEngine,
                 max_count: int) -> None:
        self.config, self.data, self.engine = config, data, engine
        self.workload = data.workload
        self.offsets, self.lengths = candidate_layout(data.workload)
        self.index = {c: i for i, c in enumerate(data.workload.answered)}
        self.max_count = max_count
        self.shared: set[int] = set()
        self.sampling = stream(config.seed, "sampling")
        self.effective_epsilons: list[float] = []
        self.scored_cells = 0
        self.decompose_bytes = 0

    # -- participation ---------------------------------------------------------------------
    def _join(self, round: int) -> None:
        K = self.data.federation.n_clients
        if self.config.distaim_participation == "all":
            new = set(range(K)) - self.shared
        else:
            sampled = np.flatnonzero(self.sampling.random(K) < self.config.participation)
            new = set(int(k) for k in sampled) - self.shared
        if not new:
            return
        self.engine.share(round, sorted(new), lambda k: client_answers(self.data, k),
                          lambda ks: union_answers(self.data, ks))
        self.shared |= new
        ledger = self.engine.ledger
        before = ledger.by_phase().get("score", 0)
        self.engine.decompose(round)
        self.decompose_bytes += ledger.by_phase().get("score", 0) - before

    def n_measurements(self, rounds: int, d1: int) -> int:
        return rounds + d1

    def _measure(self, round: int, cliques: Sequence[Clique], sigma: float,
                 privacy: PrivacyLedger) -> list[Measurement]:
        out = []
        for c in cliques:
            i = self.index[c]
            values, variance = self.engine.measure(round, int(self.offsets[i]),
                                                   int(self.lengths[i]), sigma)
            privacy.spend_gaussian(round, sigma, "|".join(c))
            out.append(Measurement(c, values.astype(float), math.sqrt(variance)))
        return out

    def measure_initial(self, one_ways, sigma, privacy):
        self._join(0)
        while not self.shared:  # poisson: nobody sampled yet; the sample is redrawn
            self._join(0)
        return self._measure(0, one_ways, sigma, privacy)

    def select(self, round, candidates, model, sigma, epsilon, privacy):
        if self.config.distaim_participation == "poisson":
            self._join(round)
        idx = [self.index[c] for c in candidates]
        public_c = np.concatenate([model.marginal(c) for c in candidates])
        self.scored_cells += int(public_c.size)
        self.engine.score(round, self.offsets[idx], self.lengths[idx], public_c, sigma,
                          [self.workload.weights[i] for i in idx],
                          score_bound(self.workload, self.max_count, sigma))
        privacy.spend_exponential(round, epsilon, f"{len(candidates)} candidates (secure)")
        choice, eps_eff = self.engine.select(round, secure_em_epsilon(epsilon),
                                             score_sensitivity(self.workload.weights))
        self.effective_epsilons.append(eps_eff)
        return [candidates[choice]]

    def measure(self, round, cliques, sigma, privacy, model):
        return self._measure(round, cliques, sigma, privacy)


def make_engine(config: RunConfig, data: PreparedData, ledger: Ledger, max_count: int,
                sigma_hint: float) -> tuple[SecureEngine, list[str]]:
    notes: list[str] = []
    if config.mpc == "real":
        engine: SecureEngine = MpcEngine(ledger, m=config.servers, max_count=max_count,
                                         sharing=config.sharing,
                                         command_timeout=config.party_timeout_s)
    else:
        from flaimsim.parties.mpc.cost_model import load_or_calibrate

        table, fresh = load_or_calibrate(config.servers, max_count,
                                         score_bound(data.workload, max_count, sigma_hint))
        if fresh:
            notes.append("calibrated the MPC cost model for this setting (cached)")
        engine = IdealEngine(ledger, table, stream(config.seed, "mechanisms"), config.servers,
                             config.sharing)
    if engine.privacy_note:
        notes.append(engine.privacy_note)
    return engine, notes


def run_distaim(config: RunConfig, data: PreparedData | None = None,
                progress: Callable[[int], None] | None = None) -> RunResult:
    """DistAIM with ``config.servers`` compute servers (``--mpc real`` or ``model``)."""
    start = time.perf_counter()
    data = data or prepare(config)
    # A public upper bound on every aggregate count: the number of training records.
    max_count = data.train.n
    ledger = Ledger(run=f"distaim-{config.mpc}-T{config.rounds}-s{config.seed}",
                    protocol="distaim")
    from flaimsim.mechanisms.accounting import AimSchedule, cdp_rho

    sigma = AimSchedule.fixed(cdp_rho(config.epsilon, config.delta), config.rounds,
                              config.rounds + len(data.workload.one_ways), config.alpha).sigma
    engine, notes = make_engine(config, data, ledger, max_count, sigma)
    try:
        if isinstance(engine, MpcEngine):  # MPyC's connection handshakes (phase setup)
            add_setup_rows(ledger, engine.launcher.call("setup_counters"))
        backend = DistAimBackend(config, data, engine, max_count)
        model = GraphicalModel.for_table(data.train, config.iters_round, config.iters_final)
        loop = run_fixed(config, data.workload, model, backend, progress)
        reveals = engine.reveal_log()
        launcher = getattr(engine, "launcher", None)  # real MPC: check openings from outside
        opened = verify_servers(launcher.call, DISTAIM_RULES) if launcher else None
    finally:
        engine.close()
    extra = {"mpc": config.mpc, "servers": config.servers,
             "private": config.threshold >= 1,
             "privacy_note": engine.privacy_note or None,
             "contributing_clients": len(backend.shared),
             "scored_cells": backend.scored_cells,
             "epsilon_select_effective_min": min(backend.effective_epsilons),
             "opened": sorted({r["name"] for r in reveals}),
             "openings": len(reveals),
             "server_openings_checked": None if opened is None else len(opened),
             "server_opened_elements": None if opened is None
             else sum(o.elements for o in opened)}
    record, synth = build_record(config, data, loop, ledger, config.servers,
                                 time.perf_counter() - start, extra)
    # Bytes sent per server per scored cell and round; the one-off bit decomposition
    # (once per contributor set) is reported apart.
    scoring = ledger.by_phase().get("score", 0) - backend.decompose_bytes
    record["score_bytes_per_cell"] = (scoring / config.servers / backend.scored_cells
                                      if backend.scored_cells else None)
    record["decompose_bytes_per_cell"] = (
        backend.decompose_bytes / config.servers / int(backend.lengths.sum()))
    record["wall_seconds"] = time.perf_counter() - start
    return RunResult(record, synth, ledger, loop, notes,
                     {"reveals": reveals, "steps": list(engine.steps)})


__all__ = ["run_distaim", "DistAimBackend", "candidate_layout", "client_answers",
           "ConfigError"]
