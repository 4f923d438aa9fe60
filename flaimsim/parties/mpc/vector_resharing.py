"""Shamir splitting, recombination and the fixed-width wire encoding of MPyC's prime-field
shares, on whole numpy vectors.

With fixed-width encoding (``--mix32-64bit``, which the servers always use so that byte
counts are reproducible) MPyC 0.11 takes its list path for secure arrays too: one
``secrets.randbelow`` and a Python loop per element in ``thresha.random_split``, and Python
loops in ``thresha.recombine`` and in the field's ``to_bytes`` / ``from_bytes``. Every
multiplication's resharing, every input and every output runs through them: about 3.9 µs
per element per party, more than half of a server's busy time in a bit decomposition.

:func:`install` replaces those four functions in the server process by vector versions:

- the same polynomials f(X) = s + c_{t-1}X + … + c_0X^t, evaluated at X = 1..m by Horner's
  rule, with the coefficients c uniform on [0, p) from ``os.urandom`` (the CSPRNG behind
  ``secrets``; L-bit words, the ones ≥ p rejected);
- the same recombination Σ_i λ_i·y_i with MPyC's own Lagrange vector (for x = 0);
- byte for byte the same encoding: little-endian words of the field's ``byte_length``.

Values below 2^62 are handled in uint64 limbs, larger ones as Python ints in object arrays.
Anything else (extension fields, a recombination at other points, values that do not fit the
width) is passed to MPyC's own code, which also raises its own errors.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np
from mpyc import thresha
from mpyc.finfields import FiniteFieldArray, FiniteFieldElement, PrimeFieldElement

from flaimsim.parties.mpc.modp_vectors import MASK64, ModpVector

_ORIGINAL: dict[str, Callable[..., Any]] = {}


def uniform_below(order: int, n: int) -> np.ndarray:
    """n independent uniform integers on [0, order) from the OS CSPRNG: L-bit words with
    L = bitlen(order − 1), the ones ≥ order rejected (acceptance ≥ 1/2 per draw).
    uint64 for order ≤ 2^64, Python ints (object) above."""
    if order < 1 or n < 0:
        raise ValueError(f"need order ≥ 1 and n ≥ 0, got order {order}, n {n}")
    bits = max(1, (order - 1).bit_length())
    words = -(-bits // 64)
    top = bits - 64 * (words - 1)
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        want = n - have + 16 + (n - have) // 8     # expected rejections, mostly one pass
        raw = np.frombuffer(os.urandom(8 * words * want), dtype="<u8").reshape(want, words)
        raw = raw.astype(np.uint64)
        raw[:, -1] >>= np.uint64(64 - top)
        if words == 1:
            draws = raw[:, 0]                      # order ≤ 2^64 here
            draws = draws[draws <= np.uint64(order - 1)]
        else:
            draws = raw[:, 0].astype(object)
            for k in range(1, words):
                draws = draws | (raw[:, k].astype(object) << (64 * k))
            draws = draws[draws < order]
        out.append(draws[:n - have])
        have += len(out[-1])
    if not out:
        return np.zeros(0, dtype=np.uint64 if words == 1 else object)
    return np.concatenate(out)


def fits_uint64(p: int, m: int) -> bool:
    """Horner's (y + c)·x mod p, x ≤ m, stays below 2^64 in uint64: shares of GF(p) are split
    in uint64 here, not as Python ints."""
    return 2 * p * m < 1 << 64


def _values(field: type, s: Any) -> np.ndarray:
    """The secrets of ``s`` (ints, field elements or an array of either) as an object array."""
    if isinstance(s, np.ndarray):
        return s.reshape(-1).astype(object)
    if isinstance(s, FiniteFieldArray):   # its ints as they are: iterating would build one
        return np.asarray(s.value, dtype=object).reshape(-1)   # field element per value
    s = list(s)
    if s and isinstance(s[0], field):
        s = [a.value for a in s]
    return np.array(s, dtype=object).reshape(-1)


def _is_prime_field(field: type) -> bool:
    return issubclass(field, PrimeFieldElement) and isinstance(field.modulus, int)


def random_split(field: type, s: Any, t: int, m: int) -> list[Any]:
    """m Shamir shares of each secret in ``s`` (degree t): row i is f(i + 1) for every secret,
    a list of Python ints as in ``thresha.random_split`` (never uint64: MPyC's own code would
    overflow on them)."""
    if not _is_prime_field(field) or len(s) == 0:
        return _ORIGINAL["random_split"](field, s, t, m)
    p = int(field.modulus)
    values = _values(field, s) % p
    n = len(values)
    coefficients = [uniform_below(p, n) for _ in range(t)]
    if fits_uint64(p, m):
        base = values.astype(np.uint64)
        p64 = np.uint64(p)
        shares = []
        for x in range(1, m + 1):
            y = np.zeros(n, dtype=np.uint64)
            for c in coefficients:
                y = (y + c) * np.uint64(x) % p64
            shares.append(((y + base) % p64).tolist())
        return shares
    coefficients = [c.astype(object) for c in coefficients]   # once, not once per point
    if t == 1:   # f(x) = s + c·x: each next point adds c (one addition and one mod per share)
        (c,) = coefficients
        shares, y = [], values
        for _ in range(m):
            y = (y + c) % p
            shares.append(y.tolist())
        return shares
    shares = []
    for x in range(1, m + 1):
        y = np.zeros(n, dtype=object)
        for c in coefficients:
            y = (y + c) * x % p
        shares.append(((y + values) % p).tolist())
    return shares


def recombine(field: type, points: Sequence[tuple[int, Any]], x_rs: Any = 0) -> Any:
    """The secrets Σ_i λ_i·y_i at x = 0 from the shares ``points`` = [(x_i, y_i), …], with
    MPyC's Lagrange vector; a list of ints (or of field elements, given field elements)."""
    if (not _is_prime_field(field) or isinstance(x_rs, list) or x_rs != 0 or not points
            or len(points[0][1]) == 0):
        return _ORIGINAL["recombine"](field, points, x_rs)
    xs, shares = list(zip(*points))
    first = shares[0][0]
    as_field = isinstance(first, field)
    vector = thresha._recombination_vector(field, xs, 0)
    p = int(field.modulus)
    small = _small_coefficients(vector, p)
    if small is not None:
        total64 = np.zeros(len(shares[0]), dtype=np.int64)
        for share, coefficient in zip(shares, small):
            total64 += _int64_values(field, share) * coefficient
        total = (total64 % p).tolist()
        return [field(a) for a in total] if as_field else total
    total = np.zeros(len(shares[0]), dtype=object)
    for share, coefficient in zip(shares, vector):
        total = total + _values(field, share) * int(coefficient)
    total = (total % p).tolist()
    return [field(a) for a in total] if as_field else total


def _small_coefficients(vector: Sequence[Any], p: int) -> list[int] | None:
    """The Lagrange coefficients as signed integers when Σ_i |λ_i|·p < 2^63, so that the
    recombination Σ_i λ_i·y_i of shares y_i < p runs in int64 without overflow (for the
    points 1, 2, 3 at 0 they are 3, −3, 1; at 1, 2 they are 2, −1), else None."""
    signed = [int(c) if int(c) <= p // 2 else int(c) - p for c in vector]
    if sum(abs(c) for c in signed) * p >= 1 << 63:
        return None
    return signed


def _int64_values(field: type, share: Any) -> np.ndarray:
    """A share vector (ints below the modulus, or field elements) as int64."""
    if isinstance(share, FiniteFieldArray):
        share = share.value
    if isinstance(share, np.ndarray):
        return share.reshape(-1).astype(np.int64)
    if share and isinstance(share[0], field):
        share = [a.value for a in share]
    return np.fromiter(share, dtype=np.int64, count=len(share))


def _limb_vector(field: type, x: Any) -> ModpVector:
    """Non-negative ints below 2^128 (a list or an array) as limbs, not reduced: the words
    MPyC would write. OverflowError for others, as ``int.to_bytes`` raises."""
    if not isinstance(x, np.ndarray):
        try:  # the common case: every value fits one limb
            lo = np.fromiter(x, dtype=np.uint64, count=len(x))
            return ModpVector(np.zeros_like(lo), lo, field.modulus)
        except (OverflowError, TypeError):
            pass
    values = _values(field, x)
    # astype(uint64) raises OverflowError for a negative high word or one of 2^64 or more,
    # i.e. exactly for the values outside [0, 2^128): no separate pass checks them.
    try:
        high = (values >> 64).astype(np.uint64)
    except OverflowError:
        raise OverflowError("a value does not fit two 64-bit limbs") from None
    return ModpVector(high, (values & MASK64).astype(np.uint64), field.modulus)


def to_bytes(cls: type, x: Any) -> bytes:
    """Little-endian words of ``cls.byte_length`` bytes (MPyC's fixed-width encoding)."""
    if cls.byte_length <= 16:
        try:
            return _limb_vector(cls, x).to_bytes(cls.byte_length)
        except (OverflowError, TypeError, ValueError):
            pass  # MPyC's code raises its own error
    return _ORIGINAL["to_bytes"](cls, x)


def from_bytes(cls: type, data: bytes) -> list[int]:
    """The list of ints in ``data`` (words of ``cls.byte_length`` bytes, little-endian)."""
    try:
        words, _ = ModpVector.from_bytes(data, cls.byte_length, cls.modulus)
    except ValueError:  # a width above 16 bytes, a partial word, a modulus above 2^127
        return _ORIGINAL["from_bytes"](cls, data)
    return words.to_list()


def install() -> None:
    """Put the vector versions in place of MPyC's (idempotent; in a server process)."""
    if _ORIGINAL:
        return
    _ORIGINAL.update(random_split=thresha.random_split, recombine=thresha.recombine,
                     to_bytes=FiniteFieldElement.__dict__["to_bytes"].__func__,
                     from_bytes=FiniteFieldElement.__dict__["from_bytes"].__func__)
    thresha.random_split = random_split
    thresha.recombine = recombine
    PrimeFieldElement.to_bytes = classmethod(to_bytes)
    PrimeFieldElement.from_bytes = classmethod(from_bytes)


def uninstall() -> None:
    """MPyC's own functions again (for tests that compare both)."""
    if not _ORIGINAL:
        return
    thresha.random_split = _ORIGINAL["random_split"]
    thresha.recombine = _ORIGINAL["recombine"]
    for name in ("to_bytes", "from_bytes"):
        if name in PrimeFieldElement.__dict__:
            delattr(PrimeFieldElement, name)
    _ORIGINAL.clear()
