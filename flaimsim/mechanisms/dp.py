"""Plain reference DP mechanisms: the (discrete) Gaussian and the exponential mechanism
(the secure versions under MPC sample from the same distributions; see ``parties/mpc``).

Neighbouring relation everywhere: add/remove one record. Costs in zCDP are in
:mod:`flaimsim.mechanisms.accounting`. The Gaussian noise of every protocol is the discrete
Gaussian N_Z(0, σ²) of :mod:`flaimsim.mechanisms.discrete_gaussian` (exact sampler).
"""

from __future__ import annotations

import numpy as np

from flaimsim.mechanisms.discrete_gaussian import (UniformSource, discrete_gaussian_variance,
                                                   sample_discrete_gaussian)


def gaussian_mechanism(x: np.ndarray, sigma: float,
                       rng: "np.random.Generator | UniformSource") -> np.ndarray:
    """y = x + N_Z(0, σ² I) for an integer vector x (int64 out). L2 sensitivity of a count
    vector under add/remove: 1, so Δ²/(2σ²) = 1/(2σ²)-zCDP (CKS20)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    x = np.asarray(x)
    xi = np.rint(x).astype(np.int64)
    if not np.array_equal(xi, x):
        raise ValueError("the discrete Gaussian mechanism needs integer counts")
    return xi + sample_discrete_gaussian(sigma ** 2, np.shape(x), rng)


def gaussian_noise_variance(sigma: float) -> float:
    """The variance actually added by :func:`gaussian_mechanism` (≤ σ², = σ² to ~e^−2π²σ²)."""
    return discrete_gaussian_variance(sigma ** 2)


def exponential_mechanism(scores: np.ndarray, epsilon: float, sensitivity: float,
                          rng: np.random.Generator) -> int:
    """Sample r with P(r) ∝ exp(ε·u_r / (2Δ)). zCDP cost ε²/8 (:func:`exponential_cost`)."""
    p = exponential_mechanism_probabilities(scores, epsilon, sensitivity)
    return int(rng.choice(len(p), p=p))


def exponential_mechanism_probabilities(scores: np.ndarray, epsilon: float,
                                        sensitivity: float) -> np.ndarray:
    """The softmax exp(ε·u/(2Δ)) / Σ, computed stably."""
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0:
        raise ValueError("exponential mechanism needs at least one candidate")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    if sensitivity <= 0:
        raise ValueError(f"sensitivity must be positive, got {sensitivity}")
    logits = epsilon * scores / (2 * sensitivity)
    logits -= logits.max()
    p = np.exp(logits)
    return p / p.sum()


def report_noisy_max(scores: np.ndarray, epsilon: float, sensitivity: float,
                     rng: np.random.Generator) -> int:
    """argmax_r ε·u_r/(2Δ) + E_r with E_r ~ Exp(1) i.i.d. (report-noisy-max with exponential
    noise of scale 2Δ/ε, identical in law to permute-and-flip). ε-DP, but not ε-bounded range:
    zCDP cost ε²/2 (:func:`report_noisy_max_cost`), four times the EM's ε²/8 at the same ε."""
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0 or not np.all(np.isfinite(scores)) or sensitivity <= 0:
        raise ValueError("report-noisy-max needs finite scores and a positive sensitivity")
    return int(np.argmax(epsilon * scores / (2 * sensitivity) + rng.exponential(size=scores.size)))


def report_noisy_max_cost(epsilon: float) -> float:
    """zCDP cost ε²/2 of report-noisy-max (an ε-DP mechanism; pure ε-DP implies ε²/2-zCDP)."""
    if epsilon < 0:
        raise ValueError(f"epsilon must be non-negative, got {epsilon}")
    return epsilon ** 2 / 2
