"""FLAIM clients: local data, local marginals and the local exponential-mechanism selection.

A sampled client k holds D_k (n_k records) and the model the aggregator broadcast. It scores
each candidate r it may choose with

    u_k(r) = w_r · (‖M_r(D_k) − n_k·p̂_r‖₁ − sqrt(2/π)·σ·n_r + c_k(r))

(p̂_r: the model's marginal distribution) through the shared
:func:`~flaimsim.mechanisms.scores.aim_score_from_l1`, and samples r_k with the exponential
mechanism P(r) ∝ exp(ε_t·u_k(r) / (2Δ_local)). The corrections c_k(r):

- ``naive``: c = 0.
- ``oracle``: c = −n_k·τ_k(r), τ_k(r) = ‖M_r(D_k)/n_k − M_r(D)/N‖₁: the client's true
  heterogeneity, computed from the union of every client's data. NOT private; a reference.
- ``private``: c = −n_k·τ̃_k(r), τ̃_k(r) = mean_{a∈r} ‖ŷ_a − M_a(D_k)/n_k‖₁ with ŷ_a the
  aggregator's noisy one-way estimate projected on the simplex (negatives clipped, then
  normalised: post-processing, and it keeps ‖ŷ_a‖₁ = 1, which the sensitivity bound needs).

Local sensitivity (neighbours: D_k and D_k plus or minus one record, so n_k moves by 1 too).
With x = M_r(D_k) and p̂ a distribution, adding a record changes one cell of x by 1 and
n_k·p̂ by p̂ (L1 norm 1), so ‖x − n_k·p̂‖₁ moves by up to 2, not 1. The private term
n_k·τ̃ = mean_a ‖n_k·ŷ_a − M_a(D_k)‖₁ moves by up to 2 more (each summand by ≤ 2). Hence

    Δ_naive = 2·max_r w_r,   Δ_private = 4·max_r w_r,
    Δ_oracle = 2·max_r w_r   treating the oracle's c_k(r) as a given constant.

(If τ_k is recomputed from the neighbouring D_k with M_r(D)/N held fixed, the oracle score
moves by up to 4·w_r; the oracle is not private in any case.) ``tests/test_flaim.py`` checks
the bounds by brute force over every added and removed record on tiny data.

Scores are computed from the client's sparse counts: with Σ p̂ = 1,
‖x − n·p̂‖₁ = n·Σp̂ + Σ_{i: x_i > 0} (|x_i − n·p̂_i| − n·p̂_i), which costs O(n_k), not O(n_r),
per candidate (Adult's 3-way marginals have up to ~850k cells).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np

from flaimsim.mechanisms import memo
from flaimsim.mechanisms.data import Table
from flaimsim.mechanisms.dp import exponential_mechanism
from flaimsim.mechanisms.scores import aim_score_from_l1

_add = np.add.reduce  # what np.sum calls, without its Python wrapper (the same sums)

Clique = tuple[str, ...]
Variant = Literal["naive", "oracle", "private"]
VARIANTS: tuple[str, ...] = ("naive", "oracle", "private")


class LocalSelectionError(ValueError):
    """A client cannot run its local selection (no candidates, bad variant or inputs)."""


def local_sensitivity(variant: str, max_weight: float) -> float:
    """Δ_local of the variant's local score (module docstring): 2·max w, or 4·max w (private)."""
    if variant not in VARIANTS:
        raise LocalSelectionError(f"unknown FLAIM variant {variant!r}; choose one of {VARIANTS}")
    if max_weight <= 0:
        raise LocalSelectionError(f"max weight must be positive, got {max_weight}")
    return (4.0 if variant == "private" else 2.0) * float(max_weight)


def sparse_marginal(table: Table, clique: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """M_q(D) as (flat C-order cell indices with a non-zero count, their counts)."""
    idx = [table.columns.index(a) for a in clique]
    shape = tuple(table.sizes[i] for i in idx)
    flat = np.ravel_multi_index(tuple(table.values[:, i] for i in idx), shape)
    cells, counts = np.unique(flat, return_counts=True)
    return cells, counts.astype(np.int64)


def l1_to_scaled(cells: np.ndarray, counts: np.ndarray, n: float, dist: np.ndarray,
                 dist_sum: float | None = None) -> float:
    """‖x − n·dist‖₁ for a sparse x (cells, counts) and a dense non-negative ``dist``;
    ``dist_sum``: ``dist.sum()`` if the caller has it (it is the same for every client)."""
    scaled = n * dist[cells]
    total = dist.sum() if dist_sum is None else dist_sum
    return float(n * total + _add(np.abs(counts - scaled) - scaled))


def mean_in_order(values: Sequence[float]) -> float:
    """``float(np.mean(values))`` for fewer than 8 values, without the array: numpy adds
    so few one by one (from −0.0, which changes no sum) and divides by the count."""
    if not 0 < len(values) < 8:
        return float(np.mean(values))
    total = float(values[0])
    for v in values[1:]:
        total += float(v)
    return total / len(values)


def simplex_projection(y: np.ndarray) -> np.ndarray:
    """A noisy count vector as a distribution: clip negatives, normalise (uniform if all ≤ 0)."""
    clipped = np.clip(np.asarray(y, dtype=float), 0.0, None)
    total = clipped.sum()
    return clipped / total if total > 0 else np.full(clipped.size, 1.0 / clipped.size)


@dataclass
class FLClient:
    """Client k: its local data D_k and the computations it runs on it."""

    cid: int
    data: Table
    _one_way: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # memo (:mod:`~flaimsim.mechanisms.memo`): sparse local counts per candidate, int32
    # (cell indices < 2^31, counts ≤ n_k); the client's data do not change
    _sparse: dict[Clique, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict,
                                                                repr=False)

    @property
    def n(self) -> int:
        return self.data.n

    def marginal(self, clique: Sequence[str]) -> np.ndarray:
        """M_q(D_k) as a dense int64 vector (the input to secure aggregation)."""
        return self.data.marginal(clique)

    def one_way(self, attribute: str) -> np.ndarray:
        if attribute not in self._one_way:
            self._one_way[attribute] = self.data.marginal((attribute,))
        return self._one_way[attribute]

    def one_ways_vector(self, one_ways: Sequence[Clique]) -> np.ndarray:
        """The concatenation of M_a(D_k) over ``one_ways`` (AugFLAIM's proxy submission)."""
        return np.concatenate([self.one_way(c[0]) for c in one_ways])

    def sparse(self, clique: Clique) -> tuple[np.ndarray, np.ndarray]:
        """:func:`sparse_marginal` of the local data, computed once per clique."""
        if not memo.enabled():
            return sparse_marginal(self.data, clique)
        return memo.remember(self._sparse, clique, self._sparse_int32)

    def _sparse_int32(self, clique: Clique) -> tuple[np.ndarray, np.ndarray]:
        cells, counts = sparse_marginal(self.data, clique)
        return cells.astype(np.int32), counts.astype(np.int32)

    # ---- local scores ------------------------------------------------------------------
    def attribute_tau(self, attribute: str, proxy: Mapping[str, np.ndarray]) -> float:
        """‖ŷ_a − M_a(D_k)/n_k‖₁ for one attribute a."""
        return np.abs(proxy[attribute] - self.one_way(attribute) / self.n).sum()

    def private_tau(self, clique: Clique, proxy: Mapping[str, np.ndarray],
                    per_attribute: Mapping[str, float] | None = None) -> float:
        """τ̃_k(r) = mean_{a∈r} ‖ŷ_a − M_a(D_k)/n_k‖₁ (ŷ_a already on the simplex);
        ``per_attribute``: those norms, computed once for all candidates."""
        if per_attribute is None:
            return float(np.mean([self.attribute_tau(a, proxy) for a in clique]))
        return mean_in_order([per_attribute[a] for a in clique])

    def scores(self, candidates: Sequence[Clique], model_dists: Mapping[Clique, np.ndarray],
               sigma: float, weights: Sequence[float], sizes: Sequence[int], variant: str,
               reference: Mapping[Clique, np.ndarray] | None = None,
               proxy: Mapping[str, np.ndarray] | None = None,
               sums: Mapping[Clique, tuple[float, float | None]] | None = None
               ) -> np.ndarray:
        """u_k(r) for every candidate (module docstring).

        ``model_dists[r]``: p̂_r (sums to 1). ``reference[r]``: M_r(D)/N (oracle only).
        ``proxy[a]``: ŷ_a on the simplex (private only). ``sums[r]``: (p̂_r.sum(),
        reference[r].sum() or None), the same for every client of a round: given, a
        client's score costs its own cells only (else two sums over all of r's cells).
        """
        if variant not in VARIANTS:
            raise LocalSelectionError(f"unknown FLAIM variant {variant!r}")
        n = float(self.n)
        l1 = np.empty(len(candidates))
        per_attribute = None
        if variant == "private" and proxy is not None and memo.enabled():
            per_attribute = {a: self.attribute_tau(a, proxy) for a in proxy}
        for i, r in enumerate(candidates):
            cells, counts = self.sparse(r)
            model_sum, reference_sum = sums[r] if sums is not None else (None, None)
            l1[i] = l1_to_scaled(cells, counts, n, model_dists[r], model_sum)
            if variant == "oracle":
                if reference is None:
                    raise LocalSelectionError("the oracle variant needs the true marginals")
                # n·τ = ‖x − n·M_r(D)/N‖₁
                l1[i] -= l1_to_scaled(cells, counts, n, reference[r], reference_sum)
            elif variant == "private":
                if proxy is None:
                    raise LocalSelectionError("the private variant needs the one-way proxy")
                l1[i] -= n * self.private_tau(r, proxy, per_attribute)
        return np.asarray(aim_score_from_l1(l1, sigma, np.asarray(sizes, dtype=float),
                                            np.asarray(weights, dtype=float)), dtype=float)

    def choose(self, candidates: Sequence[Clique], scores: np.ndarray, epsilon: float,
               sensitivity: float, rng: np.random.Generator) -> int:
        """Index (into ``candidates``) drawn by the local exponential mechanism."""
        if not candidates:
            raise LocalSelectionError(f"client {self.cid}: no candidate marginal to choose from")
        return exponential_mechanism(scores, epsilon, sensitivity, rng)


__all__ = ["FLClient", "LocalSelectionError", "VARIANTS", "Variant", "l1_to_scaled",
           "local_sensitivity", "simplex_projection", "sparse_marginal"]
