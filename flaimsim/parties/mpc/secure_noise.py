"""Secure Gaussian measurement: distributed noise added inside MPC, only the noisy vector opened.

Each of the m servers draws independent Z_i ~ N(0, σ²/(m − t)) per cell from its own
OS-seeded generator (``secrets``; MPC randomness cannot be seeded, so neither can this),
rounds it to the integer grid and inputs it with ``mpc.input``. The servers open
x + Σ_i round(Z_i) only. Any t colluding servers know at most t of the shares; the other
m − t shares sum to noise of variance (m − t)·σ²/(m − t) = σ² (plus rounding), so the
measurement is at least as noisy as the central N(0, σ²) one towards any coalition of size t.

Variance actually added (returned, for the model fit): m·σ²/(m − t) + m/12 (Sheppard's
correction for rounding each share; exact as σ²/(m − t) ≫ 1). With m = 1, t = 0: σ² + 1/12.

Privacy note: the opened honest part is a sum of rounded Gaussians, not a continuous Gaussian.
For integer x, x + round(Z) = round(x + Z), and sums of m − t independent rounded Gaussians of
variance σ²/(m − t) ≫ 1 are within negligible Rényi divergence of a discrete Gaussian of
variance σ² (cf. the distributed discrete Gaussian, Kairouz, Liu, Steinke 2021); we account
the measurement as the Gaussian mechanism with σ and say so. Integer grid only (no 2^−f grid).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
from mpyc.runtime import mpc


class SecureNoiseError(ValueError):
    """Bad input to the secure Gaussian measurement."""


@dataclass(frozen=True)
class NoisyMeasurement:
    """Opened noisy counts and the noise variance actually added per cell."""

    values: np.ndarray        # int64, x + Σ_i round(Z_i)
    variance: float           # m σ²/(m − t) + m/12
    share_std: float          # σ/sqrt(m − t), each server's continuous noise std
    parties: int
    threshold: int


def share_std(sigma: float, parties: int, threshold: int) -> float:
    """Per-server std σ/sqrt(m − t): any m − t honest shares sum to variance σ²."""
    if not sigma > 0 or parties < 1 or not 0 <= threshold < parties:
        raise SecureNoiseError(
            f"need sigma > 0 and 0 <= t < m, got sigma={sigma}, m={parties}, t={threshold}")
    return sigma / float(np.sqrt(parties - threshold))


def added_variance(sigma: float, parties: int, threshold: int) -> float:
    """m σ²/(m − t) + m/12: the variance of Σ_i round(Z_i)."""
    return parties * share_std(sigma, parties, threshold) ** 2 + parties / 12.0


def secure_noise(secint: type, n: int, sigma: float) -> Any:
    """Σ_i round(Z_i) as a secret ``secint`` array (n,): every server inputs its own share."""
    m, t = len(mpc.parties), mpc.threshold
    rng = np.random.default_rng(secrets.randbits(128))
    own = np.rint(rng.normal(0.0, share_std(sigma, m, t), size=n)).astype(np.int64)
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
    noise = secure_noise(stype, counts.shape[0], sigma)
    opened = await mpc.output(counts + noise)
    values = np.asarray([int(v) for v in np.asarray(opened).ravel()], dtype=np.int64)
    return NoisyMeasurement(values=values, variance=added_variance(sigma, m, t),
                            share_std=share_std(sigma, m, t), parties=m, threshold=t)
