"""Secure Gaussian measurement: distributed discrete Gaussian noise added inside MPC, only the
noisy vector opened.

Each of the m servers draws its own share Z_i ~ N_Z(0, σ²/(m − t)) per cell with the exact
sampler of :mod:`flaimsim.mechanisms.discrete_gaussian` driven by the operating system's
CSPRNG (``SystemSource``: MPC randomness cannot be seeded, so neither can this) and inputs
it with ``mpc.input``. The servers open x + Σ_i Z_i only. A coalition of t servers knows at
most t shares; what it sees is x + (a sum of the m − t honest shares), each N_Z(0, σ²/(m − t)).

Privacy (add/remove one record, L2 = L1 sensitivity 1, d cells): by Kairouz, Liu, Steinke 2021
(Prop. 14) such a sum is (1/(2σ²) + τ/σ + τ²d/2)-zCDP, τ = 10·Σ_{k=1}^{m−t−1}
exp(−2π² (σ²/(m−t)) k/(k+1)); the ledger charges 1/(2σ²) as ``gaussian`` and the rest as
``dgauss-sum-slack`` (:func:`flaimsim.mechanisms.accounting.distributed_noise_slack`). With
m = 1 it is the discrete Gaussian of CKS20 exactly.

Variance actually added (returned, for the model fit): m·Var N_Z(0, σ²/(m − t)) ≤ mσ²/(m − t)
(:func:`added_variance`, the law's exact variance). Integer grid only (no 2^−f grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from mpyc.runtime import mpc

from flaimsim.parties.profile import section

from flaimsim.mechanisms.discrete_gaussian import (SystemSource, UniformSource,
                                                   discrete_gaussian_variance,
                                                   sample_discrete_gaussian)


class SecureNoiseError(ValueError):
    """Bad input to the secure Gaussian measurement."""


@dataclass(frozen=True)
class NoisyMeasurement:
    """Opened noisy counts and the noise variance actually added per cell."""

    values: np.ndarray        # int64, x + Σ_i Z_i
    variance: float           # m Var N_Z(0, σ²/(m − t))
    share_std: float          # σ/sqrt(m − t), each share's scale parameter s
    parties: int
    threshold: int


def _check(sigma: float, parties: int, threshold: int) -> None:
    if not sigma > 0 or parties < 1 or not 0 <= threshold < parties:
        raise SecureNoiseError(
            f"need sigma > 0 and 0 <= t < m, got sigma={sigma}, m={parties}, t={threshold}")


def share_scale2(sigma: float, parties: int, threshold: int) -> Fraction:
    """Each share's s² = σ²/(m − t), exactly (σ² as the float's rational value)."""
    _check(sigma, parties, threshold)
    return Fraction(sigma ** 2) / (parties - threshold)


def share_std(sigma: float, parties: int, threshold: int) -> float:
    """Per-server scale σ/sqrt(m − t): any m − t honest shares sum to parameter σ²."""
    return float(np.sqrt(float(share_scale2(sigma, parties, threshold))))


def added_variance(sigma: float, parties: int, threshold: int) -> float:
    """m·Var N_Z(0, σ²/(m − t)): the variance of Σ_i Z_i over all m shares (≤ mσ²/(m − t))."""
    return parties * discrete_gaussian_variance(share_scale2(sigma, parties, threshold))


def noise_shares(sigma: float, parties: int, threshold: int, n: int,
                 source: "np.random.Generator | UniformSource") -> np.ndarray:
    """(parties, n) int64 shares N_Z(0, σ²/(m − t)) (the ideal engine draws all m at once)."""
    return sample_discrete_gaussian(share_scale2(sigma, parties, threshold), (parties, n), source)


def secure_noise(secint: type, n: int, sigma: float) -> Any:
    """Σ_i Z_i as a secret ``secint`` array (n,): every server inputs its own share."""
    m, t = len(mpc.parties), mpc.threshold
    own = sample_discrete_gaussian(share_scale2(sigma, m, t), n, SystemSource())
    shares = mpc.input(secint.array(own), senders=list(range(m)))
    total = shares[0]
    for share in shares[1:]:
        total = total + share
    return total


async def secure_gaussian_measure(counts: Any, sigma: float) -> NoisyMeasurement:
    """Open x + noise for secret integer counts x (SecInt array); async, every server calls it.

    The count type must hold |x| + 6σ·sqrt(m) comfortably (``count_secint`` does for σ ≪ N·2^4).
    """
    stype = getattr(counts, "sectype", None)
    if stype is None or getattr(stype, "frac_length", 0) != 0 or counts.ndim != 1:
        raise SecureNoiseError("counts must be a 1-D secure integer array (SecInt.array)")
    m, t = len(mpc.parties), mpc.threshold
    with section("noise shares"):
        noise = secure_noise(stype, counts.shape[0], sigma)
    with section("opening"):
        opened = await mpc.output(counts + noise)
    values = np.asarray([int(v) for v in np.asarray(opened).ravel()], dtype=np.int64)
    return NoisyMeasurement(values=values, variance=added_variance(sigma, m, t),
                            share_std=share_std(sigma, m, t), parties=m, threshold=t)
