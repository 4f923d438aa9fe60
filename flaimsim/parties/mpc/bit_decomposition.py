"""Bit decomposition of secret integers, and compact storage for millions of secret bits.

:func:`secure_low_bits` gives the l low bits of every value of a secure integer array. It is
MPyC's construction (``mpc.np_to_bits``, after [ST06]) with a cheaper adder:

- Mask: r = Σ_j 2^j r_j + 2^l·r_hi with l secure random bits r_j (PRSS: one opening of a
  degree-2t square each) and r_hi ∈ [0, 2^(L+k−l)) by PRSS (no interaction); L is the type's
  bit length and k the security parameter.
- Opening: c = a − Σ_j 2^j r_j + 2^l·r_hi + 2^L. For 0 ≤ a < 2^L, c hides a within statistical
  distance 2^−k (the same bound as MPyC's, whose mask this is). Then a ≡ c + Σ_j 2^j r_j
  (mod 2^l), so a's low bits are the sum of the public bits γ_j of c and the secret r_j.
- Adder: MPyC adds with a log-depth prefix-carry circuit (about l·log2 l products per value).
  Here the carry ripples: with γ_j public, carry_{j+1} = γ_j (r_j + carry_j) + (1 − 2γ_j) p_j
  and bit_j = r_j ⊕ γ_j ⊕ carry_j = r_j + γ_j − 2γ_j r_j + carry_j − 2((1 − 2γ_j) p_j + γ_j carry_j)
  with the single product p_j = r_j·carry_j. So l − 1 products per value in l − 1 rounds
  (carry_0 = 0). The rounds are vectorised over all values.

Measured on this machine (3 parties on loopback, 100,000 values of 16 bits, SecInt(20)):
565 B per value per party and 0.19 ms per value, against 1,175 B and 0.35 ms for
``mpc.np_to_bits``.

:class:`PackedShares` keeps a party's shares of a big secret array as uint64 (when the field's
modulus fits), 8 bytes per element instead of a Python int's 40: DistAIM's bits and prefix
products of 2.87 M Adult cells take 0.76 GB per party instead of 3.8 GB. Indexing it gives an
ordinary secure array of the selected elements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from mpyc import asyncoro
from mpyc.runtime import mpc


def secure_low_bits(a: Any, l: int) -> Any:
    """The l low bits of each value of a 1-D secure integer array, least significant first.

    Returns a secure array of shape (n, l) of the same type. Correct for 0 ≤ a < 2^L (L the
    type's bit length), a taken modulo 2^l. Cost: l random bits, one opening and l − 1
    products per value (module docstring).
    """
    stype = getattr(a, "sectype", None)
    if stype is None or getattr(stype, "frac_length", 0) != 0 or a.ndim != 1:
        raise ValueError("secure_low_bits needs a 1-D secure integer array")
    if not 1 <= l <= stype.bit_length:
        raise ValueError(f"need 1 <= l <= {stype.bit_length} bits, got {l}")
    if stype.field.characteristic == 2 or getattr(stype.field, "ext_deg", 1) > 1:
        raise ValueError("secure_low_bits needs a prime field")
    return _low_bits(a, int(l))


@asyncoro.mpc_coro
async def _low_bits(a, l):  # no return annotation: mpc_coro reads it as the type
    n = a.shape[0]
    await mpc.returnType((type(a), True, (n, l)))
    field = type(a).sectype.field
    big, k = type(a).sectype.bit_length, mpc.options.sec_param
    p = field.modulus
    shifts = np.arange(l)
    r_bits = (await mpc.np_random_bits(field, n * l)).value.reshape(n, l)
    r_modl = np.sum(r_bits << shifts, axis=1)
    r_high = mpc._np_randoms(field, n, 1 << (big + k - l))
    if mpc.options.no_prss:
        r_high = await r_high
    a = await mpc.gather(a)
    c = await mpc.output(field.array(a.value - r_modl + (r_high.value << l) + (1 << big)))
    c_low = np.asarray(c.value, dtype=object) % (1 << l)
    gamma = ((c_low[:, None] >> shifts) & 1).astype(np.int64)
    bits = np.empty((n, l), dtype=object)
    carry: Any = None
    for j in range(l):
        r, g = r_bits[:, j], gamma[:, j]
        r_xor_g = r + g - 2 * g * r                     # r ⊕ γ, linear for public γ
        if carry is None:                               # carry_0 = 0
            bits[:, j] = r_xor_g
            carry = g * r
            continue
        prod = (await mpc._reshare(field.array(r * carry))).value
        bits[:, j] = (r_xor_g + carry - 2 * ((1 - 2 * g) * prod + g * carry)) % p
        if j < l - 1:
            carry = (g * (r + carry) + (1 - 2 * g) * prod) % p
    return field.array(bits)


@dataclass(frozen=True)
class PackedShares:
    """One party's shares of a secret array of ``sectype``, stored compactly.

    ``values`` holds the field values (uint64 when the modulus is below 2^64, else Python ints).
    Indexing returns a secure array; :meth:`take` keeps the selection packed.
    """

    values: np.ndarray
    sectype: Any

    @staticmethod
    def empty(shape: tuple[int, ...], sectype: Any) -> "PackedShares":
        fits = int(sectype.field.modulus).bit_length() <= 64
        return PackedShares(np.zeros(shape, dtype=np.uint64 if fits else object), sectype)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    @property
    def T(self) -> "PackedShares":
        return PackedShares(self.values.T, self.sectype)

    def put(self, index: Any, shares: Any) -> None:
        """Store a gathered field array (or its ``.value``) at ``index``."""
        value = getattr(shares, "value", shares)
        self.values[index] = value if self.values.dtype == object else value.astype(np.uint64)

    def take(self, index: Any) -> "PackedShares":
        return PackedShares(self.values[index], self.sectype)

    def __getitem__(self, index: Any) -> Any:
        chosen = np.asarray(self.values[index])
        field = self.sectype.field
        return self.sectype.array(field.array(chosen.astype(object), check=False))


__all__ = ["secure_low_bits", "PackedShares"]
