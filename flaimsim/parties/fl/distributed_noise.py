"""The distributed discrete Gaussian for FLAIM (Kairouz, Liu, Steinke 2021, "KLS21").

Each of the n clients in a secure-aggregation session adds its own share Z_k ~ N_Z(0, σ²/n)
to its vector before masking, so the aggregator unmasks Σ_k x_k + Σ_k Z_k and never an
exact sum. Σ_k Z_k is not exactly N_Z(0, σ²): KLS21 (Thm. 11 / Prop. 14) bound its zCDP cost
by 1/(2σ²) plus a slack (:func:`flaimsim.mechanisms.accounting.distributed_noise_slack`),
charged with the Gaussian and reserved in the schedule. Its variance n·Var N_Z(0, σ²/n) is
what the model is fitted with.

Signed values through SecAgg+: a noisy vector can be negative, and SecAgg+ sums words in
[0, max_value]. Each client sends (x_k + Z_k) mod M with M = 2^b a public power of two above
2·(max_sum + TAIL·σ); SecAgg+ sums exactly (its own modulus is a multiple of M), and the
aggregator reduces mod M and lifts to (−M/2, M/2]. Σ Z_k is σ²-subgaussian (each share is
σ²/n-subgaussian), so it leaves [−TAIL·σ, TAIL·σ] with probability ≤ 2·exp(−TAIL²/2) per
cell (TAIL = 64: < 1e−888): a wrap is never seen, and is not accounted for.

Dropouts: a client that drops after sending its masked input (FLAIM's dropouts) leaves its
share in the sum, so the noise is whole. A client that dropped before sending would take its
share with it: the sum would carry only (n − d)/n of the variance, a larger privacy cost that
this simulator never incurs (FLAIM's sessions run with late dropouts only) and does not
charge. Threat model: the noise protects against the aggregator if it colludes with no
client; c colluding clients know their shares, leaving (n − c)/n of the variance.

Randomness: the simulator draws shares from the run's seeded ``noise`` stream (reproducible);
a deployment draws them from each client's own CSPRNG.
"""

from __future__ import annotations

import math

import numpy as np

from flaimsim.mechanisms.discrete_gaussian import discrete_gaussian_variance, \
    sample_discrete_gaussian

TAIL = 64


def share_modulus(max_sum: int, sigma: float) -> int:
    """M = 2^b, the smallest power of two above 2·(max_sum + TAIL·σ) + 1."""
    return 1 << (2 * (int(max_sum) + math.ceil(TAIL * sigma)) + 1).bit_length()


def noisy_share(x: np.ndarray, sigma: float, n: int, rng: np.random.Generator,
                modulus: int) -> np.ndarray:
    """(x + Z) mod M with Z ~ N_Z(0, σ²/n) per cell: one client's input to the session."""
    z = sample_discrete_gaussian(sigma ** 2 / n, np.shape(x), rng)
    return np.mod(np.asarray(x, dtype=np.int64) + z, modulus)


def lift(total: np.ndarray, modulus: int) -> np.ndarray:
    """The session's sum mod M, lifted to (−M/2, M/2]: Σ x_k + Σ Z_k."""
    t = np.mod(np.asarray(total, dtype=np.int64), modulus)
    return np.where(t > modulus // 2, t - modulus, t)


def summed_variance(sigma: float, n: int) -> float:
    """Var Σ_k Z_k = n·Var N_Z(0, σ²/n) (≤ σ²), the variance the model is fitted with."""
    return n * discrete_gaussian_variance(sigma ** 2 / n)


__all__ = ["TAIL", "lift", "noisy_share", "share_modulus", "summed_variance"]
