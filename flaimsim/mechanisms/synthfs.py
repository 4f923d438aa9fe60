"""SynthFS: the FLAIM paper's synthetic federated data set with feature skew between clients.

Generative process (ALGORITHMS.md, "Federation of a central data set"), for every client k and
feature j independently:

    mu_kj ~ Zipf(alpha) on {1, ..., bins},  P(mu = m) = m^-alpha / sum_{i=1..bins} i^-alpha
    x_kij ~ Normal(mu_kj, 1)                for the client's records i = 1..n
    code_kij = clip(floor(x_kij), 0, bins - 1),

i.e. x is digitised into ``bins`` equal bins of [0, bins] (width 1; values outside the range
are clipped into the first or last bin). Columns are named "0" .. str(d-1); the last feature
is the label.

Skew: a large alpha puts almost all mass on mu = 1, so every client looks alike; a small alpha
spreads the centres over 1..bins, so clients differ: smaller alpha = more skew between clients.
The paper sweeps alpha from 1 to 5 (authors' sweep files: ``a=1 .. a=5``); the default here is
alpha = 1.0, the most skewed setting of that sweep.
"""

from __future__ import annotations

import math

import numpy as np

from flaimsim.mechanisms.data import Table

DEFAULT_ALPHA = 1.0


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"SynthFS: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def zipf_pmf(alpha: float, support: int) -> np.ndarray:
    """P(m) proportional to m^-alpha on m = 1..support (a truncated Zipf law; any alpha >= 0)."""
    ranks = np.arange(1, support + 1, dtype=np.float64)
    weights = ranks ** -float(alpha)
    return weights / weights.sum()


def generate_synthfs(clients: int = 100, features: int = 10, records_per_client: int = 500,
                     alpha: float = DEFAULT_ALPHA, bins: int = 40,
                     seed: int = 0) -> tuple[Table, tuple[np.ndarray, ...]]:
    """Generate SynthFS; returns the table over all clients' records (client k's records are
    rows ``k*n .. (k+1)*n - 1``) and the per-client row-index arrays.

    Reproducible from ``seed``: one numpy Generator draws all centres (clients x features),
    then all values (clients x records x features).
    """
    clients = _check_count("clients", clients, 1)
    features = _check_count("features", features, 2)
    n = _check_count("records_per_client", records_per_client, 1)
    bins = _check_count("bins", bins, 2)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) \
            or not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"SynthFS: alpha must be a finite number >= 0, got {alpha!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"SynthFS: seed must be an integer, got {seed!r}")

    rng = np.random.default_rng(int(seed))
    centres = rng.choice(np.arange(1, bins + 1), size=(clients, features),
                         p=zipf_pmf(alpha, bins))
    raw = rng.normal(loc=centres[:, None, :], scale=1.0, size=(clients, n, features))
    # Equal bins of [0, bins]: width 1, so the bin index is floor(x); clip the tails.
    codes = np.clip(np.floor(raw), 0, bins - 1).astype(np.int64)
    table = Table(tuple(str(j) for j in range(features)), (bins,) * features,
                  codes.reshape(clients * n, features))
    client_rows = tuple(np.arange(k * n, (k + 1) * n, dtype=np.int64) for k in range(clients))
    return table, client_rows
