"""AIM's quality score: one definition shared by the plain and the secure implementations.

Two scores (``--score``): ``l1`` (AIM's) and ``l2``, both below.

For a candidate marginal r with weight w_r, data counts x_r = M_r(D) and model estimate
M̂_r (a public, post-processed quantity):

    u_r = w_r · (‖x_r − M̂_r‖₁ − sqrt(2/π) · σ · n_r)

Sensitivity (add/remove one record): the record changes exactly one cell of x_r by 1, so
‖x_r − M̂_r‖₁ changes by at most 1 and u_r by at most w_r; the exponential mechanism over all
candidates therefore uses Δ = max_r w_r. The offset term is public (σ and n_r are public).

:func:`aim_score_from_l1` only adds and multiplies by public numbers, so it applies unchanged
to numpy arrays and to MPyC secure values: the secure servers compute ‖x_r − M̂_r‖₁ under MPC
and finish with this same function.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def score_offset(sigma: float, n_cells: Any) -> Any:
    """Expected L1 norm of Gaussian noise N(0, σ² I) over n_r cells: sqrt(2/π)·σ·n_r."""
    return math.sqrt(2.0 / math.pi) * sigma * n_cells


def aim_score_from_l1(l1: T, sigma: float, n_cells: Any, weight: Any) -> T:
    """u_r = w_r · (l1 − sqrt(2/π)·σ·n_r); elementwise on arrays, works on secure values."""
    return weight * (l1 - score_offset(sigma, n_cells))


def aim_score(x: np.ndarray, model_marginal: np.ndarray, sigma: float, weight: float) -> float:
    """Plain AIM score of one candidate from its counts and the model's marginal."""
    l1 = float(np.abs(np.asarray(x, dtype=float) - np.asarray(model_marginal, dtype=float)).sum())
    return float(aim_score_from_l1(l1, sigma, np.size(x), weight))


def aim_scores(xs: Sequence[np.ndarray], model_marginals: Sequence[np.ndarray], sigma: float,
               weights: Sequence[float]) -> np.ndarray:
    """Scores of many candidates (same order as the inputs)."""
    return np.array([aim_score(x, m, sigma, w)
                     for x, m, w in zip(xs, model_marginals, weights)], dtype=float)


def score_sensitivity(weights: Sequence[float]) -> float:
    """Δ = max_r w_r: the scores' sensitivity under add/remove-one-record neighbours."""
    if len(weights) == 0:
        raise ValueError("no candidates: cannot compute score sensitivity")
    return float(max(weights))


# ---- the L2 score (option ``--score l2``) ------------------------------------------------------
#
#     u_r = w_r · (‖x_r − M̂_r‖₂ − E‖N(0, σ² I_{n_r})‖₂)
#
# Sensitivity under add/remove: one record changes x_r by a unit vector e, and
# |‖x − M̂ + e‖₂ − ‖x − M̂‖₂| ≤ ‖e‖₂ = 1 (triangle inequality), so Δ = max_r w_r as for L1.
# Its secure form needs no per-cell comparison: ‖x − c‖₂² = Σx² − 2Σxc + Σc², with Σx² once
# per contributor set and Σxc local (c public).

class Score(StrEnum):
    """``--score``: the norm of x_r − M̂_r that the quality score takes (its p)."""

    L1 = "l1"
    L2 = "l2"

    @property
    def order(self) -> int:
        return {Score.L1: 1, Score.L2: 2}[self]


SCORES = tuple(s.value for s in Score)


def score_offset_l2(sigma: float, n_cells: Any) -> Any:
    """E‖N(0, σ² I_n)‖₂ = σ·sqrt(2)·Γ((n+1)/2)/Γ(n/2) (chi distribution mean), elementwise."""
    n = np.asarray(n_cells, dtype=float)
    from scipy.special import gammaln

    return sigma * math.sqrt(2.0) * np.exp(gammaln((n + 1) / 2) - gammaln(n / 2))


def aim_score_from_l2(l2: T, sigma: float, n_cells: Any, weight: Any) -> T:
    """u_r = w_r · (l2 − E‖N(0, σ² I)‖₂); elementwise, works on secure values."""
    return weight * (l2 - score_offset_l2(sigma, n_cells))


def score_from_distance(kind: str, distance: T, sigma: float, n_cells: Any, weight: Any) -> T:
    """The ``kind`` score (``l1`` or ``l2``) from the matching distance ‖x_r − M̂_r‖."""
    if kind == Score.L1:
        return aim_score_from_l1(distance, sigma, n_cells, weight)
    if kind == Score.L2:
        return aim_score_from_l2(distance, sigma, n_cells, weight)
    raise ValueError(f"unknown score {kind!r}; choose one of {SCORES}")


def distances(kind: str, xs: Sequence[np.ndarray], model_marginals: Sequence[np.ndarray]
              ) -> np.ndarray:
    """‖x_r − M̂_r‖₁ or ‖x_r − M̂_r‖₂ per candidate (plain)."""
    if kind not in SCORES:
        raise ValueError(f"unknown score {kind!r}; choose one of {SCORES}")
    order = Score(kind).order
    return np.array([float(np.linalg.norm(np.asarray(x, float).ravel()
                                          - np.asarray(m, float).ravel(), ord=order))
                     for x, m in zip(xs, model_marginals)], dtype=float)
