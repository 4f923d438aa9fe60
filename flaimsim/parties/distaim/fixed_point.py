"""Fixed-point truncation without random bits: the secure mechanisms' cheap products.

MPyC's probabilistic truncation (``mpc.np_trunc``, run inside every SecFxp × SecFxp product)
masks a with r = r_lo + 2^f·r_hi, where r_lo ∈ [0, 2^f) is built from f secure random bits
(each costs a multiplication and an opening). :func:`prss_trunc` draws r_lo by pseudorandom
secret sharing instead, with no interaction: r_lo = Σ_S u_S over the d = C(m, t) replicated
keys, each u_S uniform in [0, 2^f). One opening per value remains.

- Correctness: c = a + r_lo + 2^f·r_hi + 2^(l−1) is opened and y = (a + r_lo − (c mod 2^f))/2^f
  = ⌊(a + r_lo)/2^f⌋ exactly. With r_lo ∈ [0, d·2^f) and the public offset ⌊d/2⌋ subtracted,
  |y − a/2^f| < (d + 1)/2 units (2 units for m = 3, t = 1; MPyC's rule gives < 1).
- Privacy: a party misses the key of at least one subset S*, so from its view the mask holds
  u_S* + 2^f·v_S*, uniform on [0, 2^(f+K)) with 2^K = the bound of each r_hi part; c hides
  a (|a| < 2^l) within statistical distance 2^l / 2^(f+K) ≤ 2^−(k−2), k the security parameter.
- Needs PRSS (MPyC's default; with ``--no-prss`` this falls back to ``mpc.np_trunc``). With
  t = 0 (one party, or the flagged non-private m = 2) every key is known: nothing is hidden.

:func:`fxp_multiply` is a SecFxp array product (one reshare) followed by :func:`prss_trunc`.
Bytes per value (3 parties): one reshare and one opening, against f random bits more for MPyC's
product (``flaimsim bench em`` measures the mechanisms built on it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from mpyc import asyncoro, thresha
from mpyc.runtime import mpc


def truncation_error_units() -> float:
    """Bound on |prss_trunc(a, f) − a/2^f| in units of 2^−f for this runtime's m and t."""
    if not _prss_available():
        return 1.0
    return (math.comb(len(mpc.parties), mpc.threshold) + 1) / 2


def _prss_available() -> bool:
    return not mpc.options.no_prss


def prss_trunc(a: Any, f: int) -> Any:
    """Probabilistic truncation a/2^f of a SecFxp or SecInt array, r_lo from PRSS (see module).

    The error is below :func:`truncation_error_units` units of 2^−f.
    """
    if f < 1:
        raise ValueError(f"need f >= 1 bits to truncate, got {f}")
    if not _prss_available():
        y = mpc.np_trunc(a, f=f)
        y.integral = False        # np_trunc leaves it unset; later conversions need it
        return y
    return _prss_trunc(a, f)


@asyncoro.mpc_coro
async def _prss_trunc(a, f):  # no return annotation: mpc_coro reads it as the type
    stype = type(a)
    await mpc.returnType((stype, False, a.shape))
    field = stype.sectype.field
    # The same magnitude bound as MPyC's np_trunc: products of SecFxp values reach 2^(l+f).
    l = stype.sectype.bit_length + (stype.sectype.frac_length if stype.frac_length else 0)
    n, m, t = a.size, len(mpc.parties), mpc.threshold
    d = math.comb(m, t)
    shape = a.shape
    r_lo = thresha.np_pseudorandom_share(field, m, mpc.pid, mpc.prfs(1 << f), mpc._prss_uci(), n)
    r_hi = mpc._np_randoms(field, n, 1 << (mpc.options.sec_param + l - f)).value
    a = await mpc.gather(a)
    masked = a.value + r_lo.value.reshape(shape)
    c = await mpc.output(field.array(masked + (1 << (l - 1)) + (r_hi.reshape(shape) << f)))
    low = c.value & ((1 << f) - 1)
    return field.array(masked - low - (d // 2 << f)) >> f   # exact: ≡ 0 mod 2^f


@asyncoro.mpc_coro
async def _product(a, b):
    """Elementwise product of two SecFxp arrays' field values (scale 2^2f), one reshare."""
    stype = type(a)
    await mpc.returnType((stype, False, np.broadcast_shapes(a.shape, b.shape)))
    a, b = await mpc.gather(a, b)
    return await mpc._reshare(a * b)


@asyncoro.mpc_coro
async def exact_shift_down(a, e):
    """a/2^e for secret values that are exact multiples of 2^e (local: the field inverse)."""
    await mpc.returnType((type(a), False, a.shape))
    a = await mpc.gather(a)
    return a >> e


def convert_array(a: Any, stype: type) -> Any:
    """A secure array converted to ``stype`` by MPyC (elementwise; one opening per value
    between prime fields)."""
    return mpc.np_fromlist(mpc.convert(mpc.np_tolist(a), stype))


def reinterpret_as_secint(a: Any, secint: type) -> Any:
    """The field values of a secure array (integers |v| < 2^(l−1), l = secint.bit_length) as a
    ``secint`` array in its own, smaller field: one opening per value.

    A fixed-point value x becomes the integer x·2^F, so comparisons keep their order at the
    cost of l-bit integers. Mask: r ∈ [0, 2^(l+k−2)·d) by PRSS with one input to both fields
    (the same integer), c = v + 2^(l−1) + r opened in a's field, then c − r − 2^(l−1) in the
    target field; c hides v within statistical distance 2^−(k−2).
    """
    src = type(a).sectype.field
    if secint.field.order.bit_length() > src.order.bit_length():
        raise ValueError("reinterpret_as_secint moves values into a smaller field")
    if mpc.options.no_prss:
        raise ValueError("reinterpret_as_secint needs PRSS (MPyC without --no-prss)")
    return _reinterpret(a, secint)


@asyncoro.mpc_coro
async def _reinterpret(a, secint):
    await mpc.returnType((secint.array, True, a.shape))
    l, k = secint.bit_length, mpc.options.sec_param
    src, dst = type(a).sectype.field, secint.field
    m, n = len(mpc.parties), a.size
    prfs, uci = mpc.prfs(1 << (l + k - 2)), mpc._prss_uci()
    r_src = thresha.np_pseudorandom_share(src, m, mpc.pid, prfs, uci, n).value.reshape(a.shape)
    r_dst = thresha.np_pseudorandom_share(dst, m, mpc.pid, prfs, uci, n).value.reshape(a.shape)
    a = await mpc.gather(a)
    c = await mpc.output(src.array(a.value + r_src + (1 << (l - 1))))
    return dst.array(c.value - r_dst - (1 << (l - 1)))


def fxp_scale(a: Any, c: float) -> Any:
    """a·c for a SecFxp array and a public float c: exact integer product by round(c·2^F), then
    :func:`prss_trunc` (one opening; error ≤ the truncation's plus |a|·2^−(F+1))."""
    f = type(a).sectype.frac_length
    return prss_trunc(a * int(round(c * 2 ** f)), f)


def fxp_multiply(a: Any, b: Any) -> Any:
    """a·b for SecFxp arrays of one type: one reshare and one :func:`prss_trunc` opening."""
    stype = type(a)
    if type(b) is not stype or not stype.frac_length:
        raise TypeError("fxp_multiply needs two SecFxp arrays of the same type")
    if getattr(a, "integral", False) or getattr(b, "integral", False):
        return a * b          # an integral factor needs no truncation (MPyC knows)
    return prss_trunc(_product(a, b), stype.frac_length)


__all__ = ["prss_trunc", "fxp_multiply", "fxp_scale", "exact_shift_down", "convert_array",
           "reinterpret_as_secint", "truncation_error_units"]
