"""Central AIM: a trusted curator holds the union of the clients' data (the baseline).

No communication: the ledger stays empty and every communication field is null.
Selection is the plain exponential mechanism over the shared AIM score
(:mod:`flaimsim.mechanisms.scores`, Δ = max_r w_r under add/remove), measurement the plain
discrete Gaussian mechanism N_Z(0, σ²) (L2 sensitivity 1 per marginal; exact sampler driven by
the seeded ``mechanisms`` stream, so a run is reproducible from its seed). The model is fitted
with the variance of the law actually sampled (≤ σ²). Each mechanism charges the privacy
ledger before its output is released.

Also the reference figures on the real data (:func:`reference_record`): the one-way-only
baseline at the same (ε, δ) and the classifier trained on the real training split.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from flaimsim.mechanisms import memo
from flaimsim.mechanisms.accounting import PrivacyLedger, cdp_rho
from flaimsim.mechanisms.data import Table
from flaimsim.mechanisms.dp import (exponential_mechanism, gaussian_mechanism,
                                    gaussian_noise_variance)
from flaimsim.mechanisms.evaluation import downstream_auc, label_coverage, workload_error
from flaimsim.mechanisms.model import GraphicalModel, Measurement
from flaimsim.mechanisms.scores import aim_score_from_l1, score_sensitivity
from flaimsim.mechanisms.workload import Workload
from flaimsim.parties.ledger import Ledger
from flaimsim.protocols.aim import run_adaptive, run_fixed
from flaimsim.protocols.config import LoopMode, RunConfig, stream
from flaimsim.protocols.prepare import PreparedData, prepare
from flaimsim.protocols.result import RunResult, build_record, finite_record

Clique = tuple[str, ...]


def l1_distances(table: Table, cliques: Sequence[Clique], model: GraphicalModel,
                 counts: Callable[[Clique], np.ndarray] | None = None) -> np.ndarray:
    """‖M_r(D) − M̂_r‖₁ for each clique (``counts``: M_r(D), default ``table.marginal``)."""
    counts = counts or table.marginal
    return np.array([np.abs(counts(c) - model.marginal(c)).sum() for c in cliques])


class CuratorBackend:
    """Select and measure on the curator's data in the clear."""

    def __init__(self, table: Table, workload: Workload, rng: np.random.Generator) -> None:
        self.table, self.workload, self.rng = table, workload, rng
        self._counts: dict[Clique, np.ndarray] = {}  # memo: the data do not change

    def counts(self, clique: Clique) -> np.ndarray:
        """M_r(D), computed once per clique (:mod:`~flaimsim.mechanisms.memo`)."""
        return memo.remember(self._counts, clique, self.table.marginal)

    def n_measurements(self, rounds: int, d1: int) -> int:
        return rounds + d1

    def _measure(self, round: int, cliques: Sequence[Clique], sigma: float,
                 privacy: PrivacyLedger) -> list[Measurement]:
        out = []
        std = float(np.sqrt(gaussian_noise_variance(sigma)))
        for c in cliques:
            charge = privacy.spend_gaussian(round, sigma, "|".join(c))
            noisy = gaussian_mechanism(self.counts(c), sigma, self.rng)
            privacy.release(charge, f"noisy marginal {'|'.join(c)}")
            out.append(Measurement(c, noisy.astype(float), std))
        return out

    def measure_initial(self, one_ways, sigma, privacy):
        return self._measure(0, one_ways, sigma, privacy)

    def select(self, round, candidates, model, sigma, epsilon, privacy):
        weights = np.array([self.workload.weight(c) for c in candidates])
        sizes = np.array([self.workload.n_cells(c) for c in candidates])
        scores = aim_score_from_l1(l1_distances(self.table, candidates, model, self.counts),
                                   sigma, sizes, weights)
        charge = privacy.spend_exponential(round, epsilon, f"{len(candidates)} candidates")
        # Δ over the whole candidate set (public), not only the kept ones.
        idx = exponential_mechanism(scores, epsilon, score_sensitivity(self.workload.weights),
                                    self.rng)
        privacy.release(charge, "selected index")
        return [candidates[idx]]

    def measure(self, round, cliques, sigma, privacy, model):
        return self._measure(round, cliques, sigma, privacy)


def run_central(config: RunConfig, data: PreparedData | None = None,
                progress: Callable[[int], None] | None = None) -> RunResult:
    """Run central AIM on the union of the clients' training data."""
    start = time.perf_counter()
    data = data or prepare(config)
    model = GraphicalModel.for_table(data.train, config.iters_round, config.iters_final)
    backend = CuratorBackend(data.train, data.workload, stream(config.seed, "mechanisms"))
    loop_fn = run_adaptive if config.mode is LoopMode.ADAPTIVE else run_fixed
    loop = loop_fn(config, data.workload, model, backend, progress)
    ledger = Ledger(run=f"central-s{config.seed}", protocol="central")
    record, synth = build_record(config, data, loop, ledger, 0, 0.0)
    loop.times.generate_s = record["generate_s"]
    record["wall_seconds"] = time.perf_counter() - start
    return RunResult(record, synth, ledger, loop)


def run_oneway_baseline(config: RunConfig, data: PreparedData | None = None
                        ) -> dict[str, float | None]:
    """Reference point: a model fitted to the noisy one-way marginals alone, spending the
    whole budget on them (σ = sqrt(d1 / (2ρ))). Returns its workload errors, test NLL and
    downstream AUC (attributes independent under it: AUC near 0.5)."""
    data = data or prepare(config)
    rho = cdp_rho(config.epsilon, config.delta)
    privacy = PrivacyLedger(rho)
    backend = CuratorBackend(data.train, data.workload, stream(config.seed, "baseline"))
    sigma = float(np.sqrt(len(data.workload.one_ways) / (2 * rho)))
    measurements = backend.measure_initial(data.workload.one_ways, sigma, privacy)
    model = GraphicalModel.for_table(data.train).fit(measurements, iters=config.iters_final)
    synth = model.synthetic(data.train.n, int(stream(config.seed, "synthetic").integers(2**31)))
    three = [c for c in data.workload.candidates if len(c) == config.workload_degree]
    return {"oneway_l1_workload_error": workload_error(data.train, synth,
                                                       data.workload.candidates),
            "oneway_l1_workload_error_3way": workload_error(data.train, synth, three),
            "oneway_nll": model.nll(data.test),
            "oneway_auc": downstream_auc(synth, data.test, data.label, seed=config.seed),
            "oneway_rho_spent": privacy.rho_spent}


def reference_record(config: RunConfig, data: PreparedData) -> dict[str, Any]:
    """Figures on the real training data that let a reader judge the protocols' metrics,
    computed once per prepared data set:

    - ``auc_real_data``: the downstream classifier trained on the real training split;
    - ``label_in_workload``: how many of the ``workload_marginals`` contain the label;
    - ``oneway_*``: the one-way-only baseline at the same (ε, δ)
      (:func:`run_oneway_baseline`).

    Not differentially private: they read the real data, for the data holder's eyes.
    """
    return finite_record({
        "label": data.label,
        "label_in_workload": label_coverage(data.workload.marginals, data.label),
        "workload_marginals": len(data.workload.marginals),
        "auc_real_data": downstream_auc(data.train, data.test, data.label, seed=config.seed),
        **run_oneway_baseline(config, data)})
