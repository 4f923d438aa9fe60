"""Vectors of integers mod p (p < 2^127) in numpy: two uint64 limbs per element.

The clients' and servers' local share arithmetic (masking, summing, seed expansion and the
wire encoding of field elements) runs on whole vectors here. MPyC's fields hold Python ints
(object arrays), which cost 10–20× more per element at the sizes of a full data set
(2.87 M cells on Adult); an element becomes a Python int once, when a server inputs its
summed piece into MPC (:func:`to_objects`).

An element v is ``hi · 2^64 + lo``; a :class:`ModpVector` is always reduced (0 ≤ v < p).
Sums of two reduced values are below 2p < 2^128, so one conditional subtraction reduces them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

MASK64 = (1 << 64) - 1
MAX_MODULUS_BITS = 127


class ModulusError(ValueError):
    """The modulus is outside what two 64-bit limbs hold with room for a sum."""


def _limbs(p: int) -> tuple[np.uint64, np.uint64]:
    if not 2 <= p < 1 << MAX_MODULUS_BITS:
        raise ModulusError(f"modulus of {int(p).bit_length()} bits: need 2 <= p < 2^127")
    return np.uint64(p >> 64), np.uint64(p & MASK64)


@dataclass(frozen=True)
class ModpVector:
    """A reduced vector mod ``modulus``: v_i = hi_i · 2^64 + lo_i."""

    hi: np.ndarray    # uint64
    lo: np.ndarray    # uint64
    modulus: int

    def __len__(self) -> int:
        return int(self.lo.shape[0])

    @staticmethod
    def zeros(length: int, modulus: int) -> "ModpVector":
        _limbs(modulus)
        return ModpVector(np.zeros(length, np.uint64), np.zeros(length, np.uint64), modulus)

    @staticmethod
    def from_ints(x: np.ndarray, modulus: int) -> "ModpVector":
        """x mod p for int64 values (negative ones included)."""
        p_lo = _limbs(modulus)[1]
        x = np.asarray(x, dtype=np.int64)
        neg = x < 0
        lo = np.abs(x).astype(np.uint64)   # |x| < 2^63 < p or reduced below
        v = ModpVector(np.zeros_like(lo), lo, modulus)
        if modulus <= 1 << 63:             # |x| may reach p: reduce the magnitude first
            v = ModpVector(v.hi, lo % p_lo, modulus)
        return v.negate_where(neg)

    def negate_where(self, where: np.ndarray) -> "ModpVector":
        """p − v where ``where`` and v ≠ 0 (−v mod p), v elsewhere."""
        p_hi, p_lo = _limbs(self.modulus)
        where = where & ((self.hi != 0) | (self.lo != 0))
        lo = p_lo - self.lo
        borrow = (p_lo < self.lo).astype(np.uint64)
        hi = p_hi - self.hi - borrow
        return ModpVector(np.where(where, hi, self.hi), np.where(where, lo, self.lo),
                          self.modulus)

    def __add__(self, other: "ModpVector") -> "ModpVector":
        _same(self, other)
        lo = self.lo + other.lo
        hi = self.hi + other.hi + (lo < self.lo).astype(np.uint64)
        return _reduce_once(hi, lo, self.modulus)

    def __sub__(self, other: "ModpVector") -> "ModpVector":
        _same(self, other)
        return self + other.negate_where(np.ones(len(other), dtype=bool))

    def to_objects(self) -> np.ndarray:
        """The values as Python ints (an object array), for MPyC's field arrays."""
        return (self.hi.astype(object) << 64) | self.lo.astype(object)

    def to_list(self) -> list[int]:
        """The values as a list of Python ints (one limb's worth: no object arithmetic)."""
        return self.lo.tolist() if not self.hi.any() else self.to_objects().tolist()

    def to_bytes(self, width: int) -> bytes:
        """Little-endian, ``width`` bytes per element (width ≥ the modulus's byte length)."""
        raw = np.zeros((len(self), 16), dtype=np.uint8)
        raw[:, :8] = self.lo.astype("<u8").view(np.uint8).reshape(-1, 8)
        raw[:, 8:] = self.hi.astype("<u8").view(np.uint8).reshape(-1, 8)
        if np.any(raw[:, width:]):
            raise ValueError(f"values do not fit {width} bytes")
        return raw[:, :width].tobytes()

    @staticmethod
    def from_bytes(buf: bytes, width: int, modulus: int, mask_bits: int | None = None
                   ) -> tuple["ModpVector", np.ndarray]:
        """Parse ``width``-byte little-endian words, optionally keeping their low
        ``mask_bits`` bits; returns the words (not reduced) and where each one is < p."""
        p_hi, p_lo = _limbs(modulus)
        if not 1 <= width <= 16 or len(buf) % width:
            raise ValueError(f"{len(buf)} bytes is not a whole number of {width}-byte words")
        n = len(buf) // width
        raw = np.zeros((n, 16), dtype=np.uint8)
        raw[:, :width] = np.frombuffer(buf, dtype=np.uint8).reshape(n, width)
        lo = raw[:, :8].copy().view("<u8").reshape(n).astype(np.uint64)
        hi = raw[:, 8:].copy().view("<u8").reshape(n).astype(np.uint64)
        if mask_bits is not None:
            if mask_bits <= 64:
                lo &= np.uint64((1 << mask_bits) - 1) if mask_bits < 64 else np.uint64(MASK64)
                hi[:] = 0
            else:
                hi &= np.uint64((1 << (mask_bits - 64)) - 1)
        below = (hi < p_hi) | ((hi == p_hi) & (lo < p_lo))
        return ModpVector(hi, lo, modulus), below

    def take(self, index: np.ndarray) -> "ModpVector":
        return ModpVector(self.hi[index], self.lo[index], self.modulus)


def _same(a: ModpVector, b: ModpVector) -> None:
    if a.modulus != b.modulus or len(a) != len(b):
        raise ValueError(f"mismatched vectors: {len(a)} mod {a.modulus} and "
                         f"{len(b)} mod {b.modulus}")


def _reduce_once(hi: np.ndarray, lo: np.ndarray, modulus: int) -> ModpVector:
    """v − p where v ≥ p, for v < 2p."""
    p_hi, p_lo = _limbs(modulus)
    ge = (hi > p_hi) | ((hi == p_hi) & (lo >= p_lo))
    borrow = (lo < p_lo).astype(np.uint64)
    return ModpVector(np.where(ge, hi - p_hi - borrow, hi), np.where(ge, lo - p_lo, lo), modulus)


def sum_mod(vectors: Iterable[ModpVector], length: int, modulus: int) -> ModpVector:
    """Σ vectors mod p, one at a time (a generator keeps one in memory)."""
    acc = ModpVector.zeros(length, modulus)
    for v in vectors:
        acc = acc + v
    return acc
