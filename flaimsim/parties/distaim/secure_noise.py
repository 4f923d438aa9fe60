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
from typing import Any

import numpy as np
from mpyc.runtime import mpc

from flaimsim.mechanisms.discrete_gaussian import SystemSource, sample_discrete_gaussian
from flaimsim.parties.distaim.plan import (SecureNoiseError, added_variance, share_scale2,
                                          share_std)
from flaimsim.parties.profile import section


@dataclass(frozen=True)
class NoisyMeasurement:
    """Opened noisy counts and the noise variance actually added per cell."""

    values: np.ndarray        # int64, x + Σ_i Z_i
    variance: float           # m Var N_Z(0, σ²/(m − t))
    share_std: float          # σ/sqrt(m − t), each share's scale parameter s
    parties: int
    threshold: int


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
