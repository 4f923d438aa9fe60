"""Exact sampling of the discrete Gaussian N_Z(0, s²), vectorised, from a seedable or a
cryptographic source of uniform integers: the one noise law of every protocol.

N_Z(0, s²) has P(x) ∝ exp(−x²/(2s²)) on the integers (Canonne, Kamath, Steinke 2020,
"The Discrete Gaussian for Differential Privacy", CKS20). Adding it to a vector of L2
sensitivity Δ is Δ²/(2s²)-zCDP (CKS20, Thm. 4); its variance is below s² (CKS20, Cor. 9)
and is computed by :func:`discrete_gaussian_variance`.

Sampler: CKS20 Algorithms 1-3, with every probability a ratio of integers and every
Bernoulli drawn as [U < num] for U uniform on {0, ..., den − 1}:

- Bernoulli(exp(−γ)), γ = num/den: for γ ≤ 1, K = 1, 2, ... while Bernoulli(γ/K) succeeds;
  the result is [K odd]; for γ > 1, ⌊γ⌋ Bernoulli(exp(−1)) must all succeed first;
- discrete Laplace of scale t (integer): U ~ U{0..t−1} kept with prob. exp(−U/t), V ~ Geom
  with ratio exp(−1), X = U + tV, a sign, and −0 rejected;
- discrete Gaussian: t = ⌊s⌋ + 1, Y ~ DLap(t) kept with prob. exp(−(|Y| − s²/t)²/(2s²)).

No floating point decides any draw, so the output law is exactly N_Z(0, s²). s² is taken
as the rational a/2^e ≥ s² (rounded UP on the grid 2^−e, e as large as keeps every
denominator below 2^56 so that numpy's int64 holds them): more noise than asked, never less;
the variance reported is that of the law actually sampled. Rare elements whose integers would
leave int64 (far tails, K ≥ 64) continue in Python integers, still exactly.

Sources: :class:`GeneratorSource` (a seeded ``numpy.random.Generator``: runs in the clear are
reproducible from the run seed) and :class:`SystemSource` (``os.urandom``, the operating
system's CSPRNG; used inside the MPC servers, cannot be seeded).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from math import isqrt
from typing import Protocol

import numpy as np

NOISE_LAW = "discrete Gaussian N_Z(0, s^2) (Canonne-Kamath-Steinke 2020), exact sampler"
# Every denominator (times K <= _K_MAX) stays below 2^62 < int64's 2^63.
_DEN_LIMIT = 1 << 56
_K_MAX = 64
_INT64_SQRT = isqrt(2 ** 63 - 1)


class SamplerError(ValueError):
    """A noise parameter the sampler cannot take."""


class UniformSource(Protocol):
    """Exact uniform integers: ``below(high)[i]`` uniform on {0, ..., high[i] − 1}."""

    def below(self, high: np.ndarray) -> np.ndarray: ...


class GeneratorSource:
    """Uniform integers from a seeded numpy Generator (exact: numpy's bounded integers)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def below(self, high: np.ndarray) -> np.ndarray:
        high = np.asarray(high, dtype=np.int64)
        return self.rng.integers(0, high, dtype=np.int64) if high.size else high.copy()


class SystemSource:
    """Uniform integers from ``os.urandom`` by rejection (w < ⌊2^64/h⌋·h, then w mod h)."""

    def below(self, high: np.ndarray) -> np.ndarray:
        high = np.asarray(high, dtype=np.int64).astype(np.uint64)
        out = np.empty(high.shape, dtype=np.uint64)
        todo = np.arange(high.size)
        limit = (np.uint64(2 ** 64 - 1) // high) * high  # accept w < limit (≥ 2^63)
        while todo.size:
            w = np.frombuffer(os.urandom(8 * todo.size), dtype="<u8")
            ok = w < limit[todo]
            out[todo[ok]] = w[ok] % high[todo[ok]]
            todo = todo[~ok]
        return out.astype(np.int64)


def as_source(rng: "np.random.Generator | UniformSource") -> UniformSource:
    return GeneratorSource(rng) if isinstance(rng, np.random.Generator) else rng


def grid_scale2(s2: float | Fraction) -> Fraction:
    """s² rounded UP to a/2^e, e the largest (≤ 60) keeping the sampler's integers in int64."""
    s2 = Fraction(s2)
    if not s2 > 0:
        raise SamplerError(f"the discrete Gaussian needs s^2 > 0, got {float(s2)}")
    t = isqrt(s2.numerator // s2.denominator) + 1
    for e in range(60, -1, -1):
        a = -((-s2.numerator << e) // s2.denominator)   # ceil(s² 2^e)
        if 2 * a * (1 << e) * t * t < _DEN_LIMIT:
            return Fraction(a, 1 << e)
    return s2  # too wide for int64: the exact Python-integer path takes the original s²


# ---- exact scalar path (Python integers; reference and fallback) ----------------------------
def _bern_exp_scalar(num: int, den: int, src: UniformSource, k: int = 1) -> bool:
    """Bernoulli(exp(−num/den)), Python integers; ``k`` resumes the γ ≤ 1 loop at K = k."""
    while num > den:  # γ > 1: one Bernoulli(exp(−1)) per unit
        if not _bern_exp_scalar(1, 1, src):
            return False
        num -= den
    while _below_int(den * k, src) < num:
        k += 1
    return k % 2 == 1


def _below_int(high: int, src: UniformSource) -> int:
    """Uniform on {0..high−1} for any Python int, from 62-bit limbs by rejection."""
    if high < _DEN_LIMIT:
        return int(src.below(np.array([high]))[0])
    limbs = -(-high.bit_length() // 62)
    span = 1 << (62 * limbs)
    while True:
        w = 0
        for v in src.below(np.full(limbs, 1 << 62)):
            w = (w << 62) | int(v)
        if w < span - span % high:
            return w % high


def _dlap_scalar(t: int, src: UniformSource) -> int:
    while True:
        u = _below_int(t, src)
        if not _bern_exp_scalar(u, t, src):
            continue
        v = 0
        while _bern_exp_scalar(1, 1, src):
            v += 1
        x = u + t * v
        neg = _below_int(2, src)
        if neg and x == 0:
            continue
        return -x if neg else x


def sample_discrete_gaussian_scalar(s2: Fraction, src: UniformSource) -> int:
    """One exact N_Z(0, s²) draw in Python integers (CKS20 Algorithm 3)."""
    a, b = s2.numerator, s2.denominator
    t = isqrt(a // b) + 1
    while True:
        y = _dlap_scalar(t, src)
        if _bern_exp_scalar((abs(y) * b * t - a) ** 2, 2 * a * b * t * t, src):
            return y


# ---- vectorised path (int64) -------------------------------------------------------------
def _bern_exp_frac(num: np.ndarray, den: np.ndarray, src: UniformSource) -> np.ndarray:
    """Bernoulli(exp(−num/den)) for 0 ≤ num ≤ den < 2^56, elementwise (CKS20 Alg. 1).

    Every element still drawing has drawn as often as the others, so K is one number per
    pass, and the ones still drawing are kept compacted (their order, and so the source's
    draws, as when each kept its own K)."""
    out = np.zeros(num.shape, dtype=bool)
    at = np.arange(num.size)
    k = 1
    while at.size:
        go_on = src.below(den * k) < num
        out[at[~go_on]] = k % 2 == 1
        at, num, den = at[go_on], num[go_on], den[go_on]
        k += 1
        if k >= _K_MAX:  # probability < 1/63!: finish exactly in Python integers
            for i, n_i, d_i in zip(at.tolist(), num.tolist(), den.tolist()):
                out[i] = _bern_exp_scalar(n_i, d_i, src, k)
            break
    return out


def _bern_exp(whole: np.ndarray, num: np.ndarray, den: np.ndarray,
              src: UniformSource) -> np.ndarray:
    """Bernoulli(exp(−(whole + num/den))), 0 ≤ num < den: ``whole`` Bernoulli(exp(−1))
    successes, then one of the fractional part."""
    alive = np.ones(whole.shape, dtype=bool)
    done = np.zeros(whole.shape, dtype=np.int64)
    todo = np.flatnonzero(whole > 0)
    ones = np.ones(todo.size, dtype=np.int64)
    while todo.size:
        ok = _bern_exp_frac(ones[:todo.size], ones[:todo.size], src)
        alive[todo[~ok]] = False
        done[todo] += 1
        todo = todo[ok & (done[todo] < whole[todo])]
    idx = np.flatnonzero(alive)
    alive[idx] = _bern_exp_frac(num[idx], den[idx], src)
    return alive


def _discrete_laplace(t: int, n: int, src: UniformSource) -> np.ndarray:
    """n draws of the discrete Laplace P(x) ∝ exp(−|x|/t) (CKS20 Algorithm 2)."""
    out = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:
        m = todo.size
        u = src.below(np.full(m, t, dtype=np.int64))
        keep = _bern_exp_frac(u, np.full(m, t, dtype=np.int64), src)
        retry, todo, u = todo[~keep], todo[keep], u[keep]
        v = np.zeros(todo.size, dtype=np.int64)
        run = np.arange(todo.size)
        while run.size:
            one = np.ones(run.size, dtype=np.int64)
            ok = _bern_exp_frac(one, one, src)
            v[run[ok]] += 1
            run = run[ok]
        x = u + t * v
        neg = src.below(np.full(todo.size, 2, dtype=np.int64)) == 1
        good = ~(neg & (x == 0))
        out[todo[good]] = np.where(neg, -x, x)[good]
        todo = np.concatenate([retry, todo[~good]])
    return out


def sample_discrete_gaussian(s2: float | Fraction, size: int | tuple[int, ...],
                             rng: "np.random.Generator | UniformSource") -> np.ndarray:
    """int64 array of i.i.d. N_Z(0, s̃²), s̃² = :func:`grid_scale2` (s²) ≥ s², exactly."""
    src = as_source(rng)
    shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    n = int(np.prod(shape, dtype=np.int64))
    q = grid_scale2(s2)
    a, b = q.numerator, q.denominator
    t = isqrt(a // b) + 1
    den = 2 * a * b * t * t
    if den >= _DEN_LIMIT:  # σ beyond ~10^4: exact but slow
        return np.array([sample_discrete_gaussian_scalar(q, src) for _ in range(n)],
                        dtype=np.int64).reshape(shape)
    out = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:
        y = _discrete_laplace(t, todo.size, src)
        whole = np.empty(todo.size, dtype=np.int64)
        frac = np.empty(todo.size, dtype=np.int64)
        # (|y| b t − a)² / (2 a b t²) = whole + frac/den, int64 where it fits.
        fits = np.abs(y) < (_INT64_SQRT - a) // (b * t)
        x = np.abs(y[fits]) * (b * t) - a
        whole[fits], frac[fits] = np.divmod(x * x, den)
        for i in np.flatnonzero(~fits):
            w, f = divmod((abs(int(y[i])) * b * t - a) ** 2, den)
            whole[i], frac[i] = min(w, 2 ** 62), f  # w ≥ 2^62 rejects in any case
        keep = _bern_exp(whole, frac, np.full(todo.size, den, dtype=np.int64), src)
        out[todo[keep]] = y[keep]
        todo = todo[~keep]
    return out.reshape(shape)


# ---- the law's moments -----------------------------------------------------------------------
def discrete_gaussian_pmf(s2: float, support: np.ndarray) -> np.ndarray:
    """P(X = x) for X ~ N_Z(0, s²) on ``support`` (normaliser summed to ±(12s + 20))."""
    k = np.arange(-int(12 * math.sqrt(s2) + 20), int(12 * math.sqrt(s2) + 20) + 1)
    z = np.exp(-k.astype(float) ** 2 / (2 * s2)).sum()
    return np.exp(-np.asarray(support, dtype=float) ** 2 / (2 * s2)) / z


def discrete_gaussian_variance(s2: float | Fraction) -> float:
    """Var N_Z(0, s²) of the law actually sampled (s² on the sampler's grid): < s²."""
    s2f = float(grid_scale2(s2))
    k = np.arange(0, int(12 * math.sqrt(s2f) + 20) + 1, dtype=float)
    w = np.exp(-k ** 2 / (2 * s2f))
    return float(2 * (k ** 2 * w).sum() / (2 * w.sum() - w[0]))


__all__ = ["NOISE_LAW", "GeneratorSource", "SamplerError", "SystemSource", "UniformSource",
           "discrete_gaussian_pmf", "discrete_gaussian_variance", "grid_scale2",
           "sample_discrete_gaussian", "sample_discrete_gaussian_scalar"]
