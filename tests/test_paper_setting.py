"""The paper's setting: DistAIM's cumulative participation with a noisy contributor count,
the UMAP cluster split, and the sweep/table defaults."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flaimsim.protocols.config import PRESETS, RunConfig
from flaimsim.protocols.distaim import run_distaim, scale_to_contributors
from flaimsim.protocols.prepare import prepare

TINY = dict(protocol="distaim", dataset="synthfs", clients=10, synthfs_features=4,
            synthfs_records=40, max_bins=5, workload_marginals=3, rounds=4, iters_round=20,
            iters_final=40, seed=3, mpc="model", participation=0.3)


@pytest.fixture(scope="module")
def poisson_run():
    cfg = RunConfig(distaim_participation="poisson", **TINY)
    return cfg, run_distaim(cfg)


def test_cumulative_mode_releases_t_plus_one_counts_within_the_budget(poisson_run):
    cfg, res = poisson_run
    rec = res.record
    assert rec["rho_spent"] <= rec["rho_budget"] * (1 + 1e-9)
    spends = res.loop.privacy.to_records()
    counts = [s for s in spends if s["detail"] == "contributor count"
              and s["mechanism"] == "gaussian"]
    assert [s["round"] for s in counts] == list(range(cfg.rounds + 1))
    sigma = res.loop.schedule.sigma
    # all T + 1 releases together cost exactly one Gaussian measurement at σ
    assert math.fsum(s["rho"] for s in counts) == pytest.approx(1 / (2 * sigma ** 2))
    assert res.loop.schedule.n_measurements == cfg.rounds + 4 + 1


def test_noisy_count_tracks_the_contributors_records(poisson_run):
    cfg, res = poisson_run
    history = res.record["contributor_count"]
    assert len(history) == cfg.rounds + 1
    data = prepare(cfg)
    total = data.train.n  # the final estimate is of at most every record
    last = history[-1]["estimate"]
    sigma_c = res.loop.schedule.sigma * math.sqrt(cfg.rounds + 1)
    shared = res.record["contributing_clients"]
    sizes = data.federation.client_sizes()
    assert shared <= cfg.clients and last <= total + 8 * sigma_c * math.sqrt(2)
    assert abs(last) > 0 and np.isfinite(last)
    assert sizes.sum() == total


def test_all_mode_releases_no_count():
    res = run_distaim(RunConfig(distaim_participation="all", **{**TINY, "rounds": 2}))
    assert res.record["contributor_count"] is None
    assert not [s for s in res.loop.privacy.to_records()
                if s["detail"] == "contributor count"]


def test_scale_to_contributors_rescales_the_model_total():
    c = np.array([1.0, 3.0])
    assert scale_to_contributors(c, 4.0, 10.0).tolist() == [2.5, 7.5]
    assert scale_to_contributors(c, 0.0, 10.0).tolist() == [1.0, 3.0]


def test_paper_preset_is_the_authors_setting():
    p = PRESETS["paper"]
    assert (p["clients"], p["participation"], p["delta"], p["workload_marginals"],
            p["workload_seed"], p["max_model_size_mb"], p["partition"],
            p["distaim_participation"]) == (100, 0.1, 1e-5, 64, 123, 80.0, "cluster",
                                            "poisson")


def test_umap_cluster_split_is_seeded_cached_and_skewed(tmp_path, monkeypatch):
    from flaimsim.mechanisms.federation import heterogeneity_report, partition_cluster
    from flaimsim.mechanisms.synthfs import generate_synthfs

    monkeypatch.setenv("FLAIMSIM_CACHE", str(tmp_path))
    table, _ = generate_synthfs(clients=6, features=4, records_per_client=60, alpha=1.0,
                                bins=8, seed=1)
    fed = partition_cluster(table, 6, np.random.default_rng(4), embedding="umap")
    assert fed.params["embedding"].startswith("umap(n_neighbors=15, min_dist=0.1")
    assert len(list((tmp_path / "embeddings").glob("umap-*.npy"))) == 1
    again = partition_cluster(table, 6, np.random.default_rng(4), embedding="umap")
    assert all(np.array_equal(a, b) for a, b in zip(fed.client_rows, again.client_rows))
    from flaimsim.mechanisms.federation import partition_iid

    iid = heterogeneity_report(partition_iid(table, 6, np.random.default_rng(4)))
    assert heterogeneity_report(fed)["mean_tv"] > 2 * iid["mean_tv"]


def test_cumulative_measurements_are_rescaled_to_the_current_count(poisson_run):
    """Every measurement is refitted at the contributor count in force at the end, so the
    model's total follows that count, not a mix of the sets each one was taken over."""
    cfg, res = poisson_run
    backend_scale = min(max(res.record["contributor_count"][-1]["estimate"], 1.0),
                        res.record["public_record_bound"])
    totals = [float(np.sum(m.values)) for m in res.loop.measurements]
    # each measurement's total is a noisy estimate of the same (current) count
    spread = 8 * max(m.sigma for m in res.loop.measurements) * math.sqrt(
        max(m.values.size for m in res.loop.measurements))
    assert all(abs(t - backend_scale) <= spread + 0.05 * backend_scale for t in totals)
    assert res.loop.model.total == pytest.approx(backend_scale, rel=0.1)
