"""Federation of a central table into K clients, as in the FLAIM paper's experiments.

Owns the :class:`Federation` value (a table plus a partition of its rows into non-empty
clients), the partitioners (IID, Dirichlet label skew, cluster, given rows for SynthFS), the
``federate`` dispatcher and a heterogeneity report (total-variation distance of the clients'
one-way marginals from the global ones).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flaimsim.datasets.store import cache_root
from flaimsim.mechanisms.data import Table

METHODS = ("iid", "dirichlet", "cluster")
EMBEDDINGS = ("umap", "pca")
DIRICHLET_MAX_TRIES = 100
CLUSTER_EMBEDDING_DIMS = 10
# The authors' cluster split (synth_fl/utils/dataloaders/sharders.py): UMAP of the records'
# integer codes with n_neighbors 15, min_dist 0.1 (2 components, umap-learn's default).
UMAP_NEIGHBORS, UMAP_MIN_DIST, UMAP_COMPONENTS = 15, 0.1, 2


class FederationError(ValueError):
    """A partition that cannot be made or is not a valid federation."""


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class Federation:
    """K clients' row sets: non-empty, disjoint and covering all rows of ``table``.

    ``method`` and ``params`` record how the partition was made (for the saved configuration).
    """

    table: Table
    client_rows: tuple[np.ndarray, ...]
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rows = tuple(np.asarray(r) for r in self.client_rows)
        if not rows:
            raise FederationError("a federation needs at least one client")
        for k, r in enumerate(rows):
            if r.ndim != 1 or not (r.size == 0 or np.issubdtype(r.dtype, np.integer)):
                raise FederationError(f"client {k}: rows must be a 1-D integer array")
        empty = [k for k, r in enumerate(rows) if r.size == 0]
        if empty:
            raise FederationError(f"client(s) {_short_list(empty)} are empty "
                                  f"({len(empty)} of {len(rows)})")
        frozen = []
        for r in rows:
            r = np.array(r, dtype=np.int64)  # a private copy that nobody can mutate
            r.setflags(write=False)
            frozen.append(r)
        everything = np.sort(np.concatenate(frozen))
        if everything.size != self.table.n or not np.array_equal(
                everything, np.arange(self.table.n)):
            raise FederationError(
                f"client rows must partition the table's {self.table.n} rows exactly once; got "
                f"{everything.size} row indices ({np.unique(everything).size} distinct)")
        object.__setattr__(self, "client_rows", tuple(frozen))
        object.__setattr__(self, "params", dict(self.params))

    @property
    def n_clients(self) -> int:
        return len(self.client_rows)

    def client(self, k: int) -> Table:
        """Client k's local data D_k."""
        return self.table.subset(self.client_rows[k])

    def client_sizes(self) -> np.ndarray:
        """n_k for k = 0..K-1 (int64)."""
        return np.array([r.size for r in self.client_rows], dtype=np.int64)

    def client_of_row(self) -> np.ndarray:
        """For each row of the table, the client holding it (int64, length N)."""
        owner = np.empty(self.table.n, dtype=np.int64)
        for k, r in enumerate(self.client_rows):
            owner[r] = k
        return owner


def _short_list(items: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def _check_n_clients(table: Table, n_clients: int) -> int:
    if isinstance(n_clients, bool) or not isinstance(n_clients, (int, np.integer)) \
            or n_clients < 1:
        raise FederationError(f"n_clients must be an integer >= 1, got {n_clients!r}")
    if n_clients > table.n:
        raise FederationError(f"cannot split {table.n} record(s) into {n_clients} non-empty "
                              f"clients: use at most {table.n} clients")
    return int(n_clients)


def _rows_from_owner(owner: np.ndarray, n_clients: int) -> tuple[np.ndarray, ...]:
    """Client k's rows = the (sorted) rows whose owner is k."""
    order = np.argsort(owner, kind="stable")
    cuts = np.searchsorted(owner[order], np.arange(1, n_clients))
    return tuple(np.split(order, cuts))


def from_client_rows(table: Table, rows: tuple[np.ndarray, ...] | list[np.ndarray],
                     method: str = "given", params: dict[str, Any] | None = None) -> Federation:
    """A federation with the given client rows (e.g. SynthFS, whose clients are generated)."""
    return Federation(table, tuple(rows), method, dict(params or {}))


def partition_iid(table: Table, n_clients: int, rng: np.random.Generator) -> Federation:
    """Random equal split: a seeded permutation cut into K parts whose sizes differ by <= 1."""
    k = _check_n_clients(table, n_clients)
    parts = np.array_split(np.random.default_rng(rng).permutation(table.n), k)
    return Federation(table, tuple(np.sort(p) for p in parts), "iid", {"n_clients": k})


def _dirichlet_counts(n_value: int, proportions: np.ndarray, floor: int) -> np.ndarray:
    """Split n_value records: ``floor`` each, the rest by cumulative-floor of the proportions."""
    rest = n_value - floor * proportions.size
    cuts = np.floor(np.cumsum(proportions)[:-1] * rest).astype(np.int64)
    cuts = np.clip(cuts, 0, rest)  # cumsum can exceed 1 by rounding
    return np.diff(np.concatenate([[0], cuts, [rest]])) + floor


def partition_dirichlet(table: Table, n_clients: int, beta: float, label: str,
                        rng: np.random.Generator, min_per_label: int = 0,
                        max_tries: int = DIRICHLET_MAX_TRIES) -> Federation:
    """Label skew: for each label value v, shuffle its records and give client k a share
    p_k of them, p ~ Dirichlet(beta, ..., beta) drawn afresh per v; small beta = strong skew.

    Client k gets ``min_per_label`` records of every label value plus a cumulative-floor share
    of the rest. With min_per_label = 0 (the textbook rule) a client can end up empty: the whole
    draw is then repeated, up to ``max_tries`` times. ``min_per_label = 1`` mirrors the authors'
    code (every client holds every label) and always succeeds when each value has >= K records.
    """
    k = _check_n_clients(table, n_clients)
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating)) \
            or not np.isfinite(beta) or beta <= 0:
        raise FederationError(f"beta must be a finite number > 0, got {beta!r}")
    if label not in table.columns:
        raise FederationError(f"label {label!r} is not a column; columns: {list(table.columns)}")
    if min_per_label < 0:
        raise FederationError(f"min_per_label must be >= 0, got {min_per_label}")
    rng = np.random.default_rng(rng)  # a Generator passes through; an int seeds a new one
    labels = table.column(label)
    values = np.unique(labels)
    too_small = [int(v) for v in values if np.count_nonzero(labels == v) < k * min_per_label]
    if too_small:
        raise FederationError(f"label {label!r} value(s) {too_small} have fewer than "
                              f"{k} x {min_per_label} records; lower min_per_label or n_clients")
    params = {"n_clients": k, "beta": float(beta), "label": label,
              "min_per_label": int(min_per_label)}
    for attempt in range(1, max_tries + 1):
        owner = np.empty(table.n, dtype=np.int64)
        for v in values:
            idx = rng.permutation(np.flatnonzero(labels == v))
            counts = _dirichlet_counts(idx.size, rng.dirichlet(np.full(k, float(beta))),
                                       int(min_per_label))
            owner[idx] = np.repeat(np.arange(k), counts)
        sizes = np.bincount(owner, minlength=k)
        if sizes.min() > 0:
            return Federation(table, _rows_from_owner(owner, k), "dirichlet",
                              {**params, "tries": attempt})
    raise FederationError(
        f"Dirichlet(beta={beta}) label skew on {label!r} left some of the {k} clients empty in "
        f"all {max_tries} draws (last draw: {int(np.sum(sizes == 0))} empty); use a larger "
        f"beta, fewer clients, or min_per_label=1")


def cluster_embedding(table: Table, dims: int = CLUSTER_EMBEDDING_DIMS,
                      seed: int = 0) -> np.ndarray:
    """One-hot encode every attribute (sum_a |Omega_a| indicator columns, sparse) and project
    onto the top ``dims`` principal components (sklearn PCA, centred implicitly; arpack).

    The fast option; the paper's split uses :func:`umap_embedding`."""
    from scipy import sparse
    from sklearn.decomposition import PCA

    offsets = np.concatenate([[0], np.cumsum(table.sizes)[:-1]])
    cols = (table.values + offsets).ravel()
    rows = np.repeat(np.arange(table.n), len(table.columns))
    onehot = sparse.csr_matrix((np.ones(cols.size), (rows, cols)),
                               shape=(table.n, int(sum(table.sizes))))
    dims = min(dims, onehot.shape[1] - 1, table.n - 1)
    if dims < 1:
        return onehot.toarray()
    return PCA(n_components=dims, svd_solver="arpack", random_state=seed).fit_transform(onehot)


def umap_embedding(table: Table, seed: int = 0) -> np.ndarray:
    """The paper's embedding: UMAP (n_neighbors 15, min_dist 0.1, 2 components) of the
    records' integer codes, as the authors' code does. Seeded (``random_state``), which makes
    umap-learn run single-threaded. The result is cached under ``$FLAIMSIM_CACHE/embeddings``
    keyed by the codes, the domain and the seed, since it takes minutes on large tables."""
    cache = cache_root()
    path = _cached_path("embeddings", "umap", table.values,
                        (table.columns, table.sizes, seed, UMAP_NEIGHBORS, UMAP_MIN_DIST,
                         UMAP_COMPONENTS))
    if path.is_file():
        return np.load(path)
    # umap-learn and pynndescent compile their numba functions on first use in a process
    # (~15 s); a cache folder that outlives the process keeps them compiled for later runs
    # from the same installation (numba keys its cache by the source file's path, so a new
    # virtual environment compiles once more).
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache / "numba"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap-learn's n_jobs/random_state and numba notes
        import umap

        embedding = umap.UMAP(n_neighbors=min(UMAP_NEIGHBORS, table.n - 1),
                              min_dist=UMAP_MIN_DIST, n_components=UMAP_COMPONENTS,
                              random_state=seed).fit_transform(table.values.astype(float))
    _store(path, embedding)
    return embedding


def _cached_path(folder: str, kind: str, values: np.ndarray, key: Any) -> Path:
    """Where a result computed from ``values`` and ``key`` is cached."""
    digest = hashlib.sha1(np.ascontiguousarray(values).tobytes())
    digest.update(repr(key).encode())
    return cache_root() / folder / f"{kind}-{digest.hexdigest()[:16]}.npy"


def _store(path: Path, value: np.ndarray) -> None:
    """Save ``value`` at ``path`` whole or not at all (a reader never sees half a file); a
    cache that cannot be written is skipped (the value is computed again next time)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npy")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp, value)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def kmeans_clusters(points: np.ndarray, k: int, n_init: int, seed: int) -> np.ndarray:
    """Each point's k-means cluster (sklearn ``KMeans``, ``n_init`` restarts, seeded). Cached
    under ``$FLAIMSIM_CACHE/partitions`` keyed by the points, k, n_init, the seed and
    scikit-learn's version: every cell of a sweep splits the same data with the same seed,
    and the fit took ~1 s of each (Adult, K = 100)."""
    from importlib.metadata import version

    path = _cached_path("partitions", "kmeans", points,
                        (points.shape, points.dtype.str, k, n_init, seed,
                         version("scikit-learn")))
    if path.is_file():
        return np.load(path)
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # Fewer distinct points than K: the empty clusters are reported by the caller.
        warnings.simplefilter("ignore", ConvergenceWarning)
        owner = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(points)
    owner = owner.astype(np.int64)
    _store(path, owner)
    return owner


def partition_cluster(table: Table, n_clients: int, rng: np.random.Generator,
                      dims: int = CLUSTER_EMBEDDING_DIMS, n_init: int = 3,
                      embedding: str = "pca") -> Federation:
    """Cluster skew: k-means (K clusters, seeded from ``rng``, ``n_init`` restarts) on an
    embedding of the records (``"umap"``: :func:`umap_embedding`, the paper's; ``"pca"``:
    :func:`cluster_embedding`, faster); client k = cluster k. Sizes are uneven."""
    k = _check_n_clients(table, n_clients)
    if embedding not in EMBEDDINGS:
        raise FederationError(f"unknown embedding {embedding!r}; choose one of {EMBEDDINGS}")
    seed = int(np.random.default_rng(rng).integers(2**31 - 1))
    distinct = np.unique(table.values, axis=0).shape[0]
    if distinct < k:
        # k-means cannot make more non-empty clusters than distinct points (and how it
        # breaks ties among duplicates varies with threading): refuse up front.
        raise FederationError(f"only {distinct} distinct records for {k} clients: k-means "
                              f"would leave clients empty")
    points = (umap_embedding(table, seed) if embedding == "umap"
              else cluster_embedding(table, dims, seed))
    owner = kmeans_clusters(points, k, n_init, seed)
    sizes = np.bincount(owner, minlength=k)
    if sizes.min() == 0:
        empty = np.flatnonzero(sizes == 0).tolist()
        raise FederationError(f"k-means left cluster(s) {_short_list(empty)} empty "
                              f"({len(empty)} of {k}); the data has too few distinct records "
                              f"for {k} clients")
    return Federation(table, _rows_from_owner(owner, k), "cluster",
                      {"n_clients": k, "n_init": n_init,
                       "embedding": (f"umap(n_neighbors={UMAP_NEIGHBORS}, min_dist="
                                     f"{UMAP_MIN_DIST}, {UMAP_COMPONENTS}d)"
                                     if embedding == "umap" else f"onehot+pca{dims}"),
                       "kmeans_seed": seed})


def federate(table: Table, method: str, n_clients: int, rng: np.random.Generator,
             beta: float | None = None, label: str | None = None,
             min_per_label: int = 0, embedding: str = "pca") -> Federation:
    """Partition ``table`` with ``method`` in {"iid", "dirichlet", "cluster"}."""
    _check_n_clients(table, n_clients)
    if method == "iid":
        return partition_iid(table, n_clients, rng)
    if method == "dirichlet":
        if beta is None or label is None:
            raise FederationError("method 'dirichlet' needs beta and label")
        return partition_dirichlet(table, n_clients, beta, label, rng, min_per_label)
    if method == "cluster":
        return partition_cluster(table, n_clients, rng, embedding=embedding)
    raise FederationError(f"unknown federation method {method!r}; choose one of {METHODS}")


def heterogeneity_report(fed: Federation) -> dict[str, Any]:
    """How far clients' one-way marginals are from the global ones.

    tv(k, a) = 0.5 * || M_a(D_k)/n_k - M_a(D)/N ||_1; reports the mean over clients and
    attributes (``mean_tv``), the mean over clients per attribute (``per_attribute_tv``) and
    the min/mean/max client size.
    """
    table, owner, sizes = fed.table, fed.client_of_row(), fed.client_sizes()
    per_attribute: dict[str, float] = {}
    for j, (column, size) in enumerate(zip(table.columns, table.sizes)):
        counts = np.bincount(owner * size + table.values[:, j],
                             minlength=fed.n_clients * size).reshape(fed.n_clients, size)
        local = counts / sizes[:, None]
        overall = counts.sum(axis=0) / table.n
        per_attribute[column] = float(np.mean(0.5 * np.abs(local - overall).sum(axis=1)))
    return {
        "method": fed.method,
        "n_clients": fed.n_clients,
        "mean_tv": float(np.mean(list(per_attribute.values()))),
        "per_attribute_tv": per_attribute,
        "client_size_min": int(sizes.min()),
        "client_size_mean": float(sizes.mean()),
        "client_size_max": int(sizes.max()),
    }
