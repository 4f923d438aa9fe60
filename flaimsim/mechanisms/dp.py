"""Plain reference DP mechanisms: Gaussian and exponential (the secure versions under MPC
sample from the same distributions; see ``parties/secure_ops``).

Neighbouring relation everywhere: add/remove one record. Costs in zCDP are in
:mod:`flaimsim.mechanisms.accounting`.
"""

from __future__ import annotations

import numpy as np


def gaussian_mechanism(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """y = x + N(0, σ² I). L2 sensitivity of a count vector under add/remove: 1."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return np.asarray(x, dtype=float) + rng.normal(0.0, sigma, size=np.shape(x))


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
