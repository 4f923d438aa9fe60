"""SynthFS generation, the partitioners, Federation validation and the heterogeneity report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flaimsim.mechanisms.data import Table, load_dataset
from flaimsim.mechanisms.federation import (
    Federation, FederationError, federate, from_client_rows, heterogeneity_report,
    partition_cluster, partition_dirichlet, partition_iid)
from flaimsim.mechanisms.synthfs import generate_synthfs, zipf_pmf

LABEL = "income>50K"


@pytest.fixture(scope="module")
def adult(adult_dir: Path) -> Table:
    return load_dataset("adult", adult_dir)


def _toy(n: int = 60, distinct: int | None = None) -> Table:
    codes = np.arange(n) % (distinct or n)
    values = np.stack([codes % 5, (codes // 5) % 4, codes % 2], axis=1).astype(np.int64)
    return Table(("x", "y", "label"), (5, 4, 2), values)


def _assert_partition(fed: Federation, k: int) -> None:
    assert fed.n_clients == k
    assert fed.client_sizes().min() >= 1
    assert fed.client_sizes().sum() == fed.table.n
    assert np.array_equal(np.sort(np.concatenate(fed.client_rows)), np.arange(fed.table.n))
    assert np.array_equal(fed.client(0).values, fed.table.values[fed.client_rows[0]])


# ---------------------------------------------------------------- SynthFS

def test_zipf_pmf_is_truncated_power_law() -> None:
    p = zipf_pmf(2.0, 40)
    assert p.shape == (40,) and np.isclose(p.sum(), 1.0)
    assert np.isclose(p[0] / p[1], 4.0) and np.isclose(p[1] / p[3], 4.0)
    assert np.allclose(zipf_pmf(0.0, 5), 0.2)


def test_synthfs_shapes_range_and_reproducibility() -> None:
    table, rows = generate_synthfs(clients=7, features=4, records_per_client=30, seed=3)
    assert table.columns == ("0", "1", "2", "3") and table.sizes == (40,) * 4
    assert table.n == 210 and table.values.dtype == np.int64
    assert table.values.min() >= 0 and table.values.max() <= 39
    assert len(rows) == 7 and all(r.size == 30 for r in rows)
    fed = from_client_rows(table, rows)
    _assert_partition(fed, 7)
    again, _ = generate_synthfs(clients=7, features=4, records_per_client=30, seed=3)
    other, _ = generate_synthfs(clients=7, features=4, records_per_client=30, seed=4)
    assert np.array_equal(table.values, again.values)
    assert not np.array_equal(table.values, other.values)


def test_synthfs_client_feature_is_digitised_normal_around_integer_centre() -> None:
    # floor(mu + Z) with integer mu has mean mu - 1/2 and sd sqrt(1 + 1/12) (Sheppard).
    table, _ = generate_synthfs(clients=3, features=4, records_per_client=4000, bins=40,
                                alpha=0.0, seed=5)
    checked = 0
    for k in range(3):
        block = table.values[k * 4000:(k + 1) * 4000]
        for j in range(4):
            centre = block[:, j].mean() + 0.5
            if not 4 <= centre <= 36:
                continue  # near the edges, clipping shifts the mean
            checked += 1
            assert abs(centre - round(centre)) < 0.1
            assert abs(block[:, j].std() - np.sqrt(13 / 12)) < 0.06
    assert checked >= 4


def test_synthfs_smaller_alpha_means_more_skew() -> None:
    tv = {a: heterogeneity_report(from_client_rows(
        *generate_synthfs(clients=30, features=4, records_per_client=200, alpha=a, seed=1)
    ))["mean_tv"] for a in (1.0, 2.0, 5.0)}
    assert tv[1.0] > tv[2.0] > tv[5.0]
    assert tv[1.0] > 0.5 and tv[5.0] < 0.2


@pytest.mark.parametrize("kwargs", [
    {"clients": 0}, {"features": 1}, {"records_per_client": 0}, {"bins": 1},
    {"alpha": -1.0}, {"alpha": float("nan")}, {"clients": 2.5}, {"seed": "x"},
])
def test_synthfs_rejects_bad_parameters(kwargs) -> None:
    with pytest.raises(ValueError, match="SynthFS"):
        generate_synthfs(**kwargs)


# ---------------------------------------------------------------- Federation value

def test_federation_rejects_empty_clients_and_non_partitions() -> None:
    t = _toy(6)
    with pytest.raises(FederationError, match=r"client\(s\) 1 are empty"):
        Federation(t, (np.arange(6), np.array([], dtype=np.int64)), "given", {})
    with pytest.raises(FederationError, match="partition"):
        Federation(t, (np.arange(4), np.arange(3, 6)), "given", {})  # row 3 twice
    with pytest.raises(FederationError, match="partition"):
        Federation(t, (np.arange(3), np.arange(3, 5)), "given", {})  # row 5 missing
    fed = Federation(t, (np.array([5, 0]), np.array([1, 2, 3, 4])), "given", {})
    assert fed.client_sizes().tolist() == [2, 4]
    assert fed.client_of_row().tolist() == [0, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError):
        fed.client_rows[0][0] = 3  # read-only: a federation is a value


# ---------------------------------------------------------------- partitioners

@pytest.mark.parametrize("k", [1, 7, 100])
def test_iid_sizes_are_exact(adult: Table, k: int) -> None:
    fed = partition_iid(adult, k, np.random.default_rng(0))
    _assert_partition(fed, k)
    sizes = fed.client_sizes()
    assert sizes.max() - sizes.min() <= (0 if adult.n % k == 0 else 1)
    assert sorted(sizes.tolist()) == sorted(len(p) for p in np.array_split(np.arange(adult.n), k))
    again = partition_iid(adult, k, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(fed.client_rows, again.client_rows))


def test_dirichlet_skew_grows_as_beta_shrinks(adult: Table) -> None:
    reports = {}
    for beta in (0.1, 10.0):
        fed = partition_dirichlet(adult, 10, beta, LABEL, np.random.default_rng(123))
        _assert_partition(fed, 10)
        reports[beta] = heterogeneity_report(fed)
    iid = heterogeneity_report(partition_iid(adult, 10, np.random.default_rng(123)))
    label_tv = {b: r["per_attribute_tv"][LABEL] for b, r in reports.items()}
    assert label_tv[0.1] > 3 * label_tv[10.0] > 3 * iid["per_attribute_tv"][LABEL]
    assert reports[0.1]["mean_tv"] > reports[10.0]["mean_tv"] > iid["mean_tv"]


def test_dirichlet_label_mix_follows_beta(adult: Table) -> None:
    # Small beta: most clients are dominated by one label value.
    fed = partition_dirichlet(adult, 10, 0.05, LABEL, np.random.default_rng(1))
    share = np.array([fed.client(k).column(LABEL).mean() for k in range(10)])
    assert np.mean((share < 0.05) | (share > 0.95)) >= 0.5


def test_dirichlet_impossible_request_raises_with_advice(adult: Table) -> None:
    with pytest.raises(FederationError, match=r"empty.*larger beta, fewer clients"):
        partition_dirichlet(adult, 100, 0.1, LABEL, np.random.default_rng(0), max_tries=5)


def test_dirichlet_min_per_label_fills_every_client(adult: Table) -> None:
    fed = partition_dirichlet(adult, 100, 0.1, LABEL, np.random.default_rng(0),
                              min_per_label=1)
    _assert_partition(fed, 100)
    for k in range(0, 100, 9):
        assert set(np.unique(fed.client(k).column(LABEL))) == {0, 1}
    with pytest.raises(FederationError, match="fewer than"):
        partition_dirichlet(_toy(10), 4, 1.0, "label", np.random.default_rng(0),
                            min_per_label=2)


def test_cluster_partition_is_non_empty_and_skewed(adult: Table) -> None:
    fed = partition_cluster(adult, 20, np.random.default_rng(0))
    _assert_partition(fed, 20)
    iid = partition_iid(adult, 20, np.random.default_rng(0))
    assert heterogeneity_report(fed)["mean_tv"] > 2 * heterogeneity_report(iid)["mean_tv"]


def test_cluster_with_too_few_distinct_records_raises() -> None:
    with pytest.raises(FederationError, match="empty"):
        partition_cluster(_toy(40, distinct=3), 5, np.random.default_rng(0))


@pytest.mark.parametrize("method, kwargs", [
    ("iid", {}), ("dirichlet", {"beta": 1.0, "label": "label"}), ("cluster", {}),
])
def test_federate_dispatches_and_rejects_too_many_clients(method, kwargs) -> None:
    t = _toy(60)
    fed = federate(t, method, 4, np.random.default_rng(2), **kwargs)
    _assert_partition(fed, 4)
    assert fed.method == method
    again = federate(t, method, 4, np.random.default_rng(2), **kwargs)
    assert all(np.array_equal(a, b) for a, b in zip(fed.client_rows, again.client_rows))
    with pytest.raises(FederationError, match="at most 60 clients"):
        federate(t, method, 61, np.random.default_rng(2), **kwargs)


@pytest.mark.parametrize("method, n_clients, kwargs, pattern", [
    ("umap", 3, {}, "unknown federation method"),
    ("dirichlet", 3, {"label": "label"}, "needs beta and label"),
    ("dirichlet", 3, {"beta": 1.0, "label": "nope"}, "label 'nope'"),
    ("dirichlet", 3, {"beta": 0.0, "label": "label"}, "beta must be"),
    ("iid", 0, {}, "n_clients"),
])
def test_federate_bad_arguments(method, n_clients, kwargs, pattern) -> None:
    with pytest.raises(FederationError, match=pattern):
        federate(_toy(), method, n_clients, np.random.default_rng(0), **kwargs)


def test_heterogeneity_report_by_hand() -> None:
    # Two clients, one binary attribute: client 0 all zeros, client 1 = (0, 1, 1).
    t = Table(("a",), (2,), np.array([[0], [0], [0], [1], [1]], dtype=np.int64))
    fed = Federation(t, (np.array([0, 1]), np.array([2, 3, 4])), "given", {})
    report = heterogeneity_report(fed)
    # global (0.6, 0.4); client 0 (1, 0): tv 0.4; client 1 (1/3, 2/3): tv 4/15
    assert np.isclose(report["mean_tv"], (0.4 + 4 / 15) / 2)
    assert np.isclose(report["per_attribute_tv"]["a"], report["mean_tv"])
    assert (report["client_size_min"], report["client_size_max"]) == (2, 3)
    assert report["client_size_mean"] == 2.5 and report["n_clients"] == 2


def test_kmeans_clusters_are_cached_and_a_read_only_cache_is_skipped(tmp_path, monkeypatch
                                                                      ) -> None:
    """A sweep's cells split the same data with the same seed: the second asks the cache,
    not k-means (which is made to fail here), and gets the same clusters; a cache that
    cannot be written leaves the clusters computed."""
    import sklearn.cluster

    from flaimsim.mechanisms.federation import kmeans_clusters

    points = np.random.default_rng(0).normal(size=(200, 2))
    monkeypatch.setenv("FLAIMSIM_CACHE", str(tmp_path / "cache"))
    first = kmeans_clusters(points, 5, 2, seed=7)
    assert len(list((tmp_path / "cache" / "partitions").glob("kmeans-*.npy"))) == 1

    class Broken:
        def __init__(self, *args, **kwargs):
            raise AssertionError("k-means ran although its result was cached")

    with monkeypatch.context() as patch:
        patch.setattr(sklearn.cluster, "KMeans", Broken)
        assert np.array_equal(kmeans_clusters(points, 5, 2, seed=7), first)
        with pytest.raises(AssertionError, match="ran although"):
            kmeans_clusters(points, 5, 2, seed=8)      # another seed: not the cached one
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("FLAIMSIM_CACHE", str(blocked))
    assert np.array_equal(kmeans_clusters(points, 5, 2, seed=7), first)
