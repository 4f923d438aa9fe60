"""DistAIM's per-cell bit work in a 60-bit field, and the exact move back to the counts' field.

The counts' field must hold a masked opening of bitlen(N) + f + 4 + κ bits (76 bits at κ = 52
on Adult), above the 62 bits where :mod:`flaimsim.parties.mpc.vector_resharing` keeps shares in
uint64: every product there is Python ints. Only the opening needs that width. The bits, the
ripple carry and the prefix products need a field that holds 0/1 and small sums, so here they
live in GF(P), P = 2^60 − 93 (:func:`narrow_type`), where resharing runs in uint64 and int64.

Three servers, threshold 1, PRSS (MPyC's default; :func:`narrow_available`). PRSS gives every
pair of servers S a common key, so a value U_S drawn from it is known in the clear to the two
servers in S and to nobody else, and U_S·f_S(i) is a Shamir sharing of it **in any field** with
no message (f_S: degree 1, f_S(0) = 1, zero at the third server). Call C = {1, 2} the pair
without server 0.

:func:`secure_low_bits_narrow` (x in the wide field, 0 ≤ x < 2^L, L the type's bit length):

1. R = Σ_S U_S, U_S uniform on [0, 2^l), shared in the wide field without messages; r_hi by
   PRSS as in :mod:`flaimsim.parties.mpc.bit_decomposition`.
2. Open c = x − R + 2^l·r_hi + 2^L in the wide field (masked: each server misses one U_S and
   one part of r_hi, so c's low l bits are uniform and its high part is within 2^−κ of
   data-independent, the same bound as the wide decomposition's).
3. Server 0 knows U_S for both pairs that contain it: V = (c + U_{0,1} + U_{0,2}) mod 2^l
   = (x − U_C) mod 2^l, uniform to it because it lacks U_C. It inputs V's l bits (narrow).
4. U_C's bits are shared without messages (servers 1, 2 know U_C). x's bits are the l bits of
   (V + U_C) mod 2^l: one ripple-carry adder of two secret words, 2l − 1 products.

Cost per cell: one wide opening, l narrow inputs from server 0, 2l − 1 narrow products (the wide
method: l random bits, each a PRSS pair, a product, an opening and a modular square root, and
l − 1 wide products).

:func:`narrow_to_wide` moves values 0 ≤ y < P to the wide field exactly (a few per candidate
and round: the scores' inner products, the contributor count, the measured cells):

1. U_C uniform on [0, P) from the pair C's key; M = y + U_C is opened to server 0 alone:
   V = (y + U_C) mod P, uniform to server 0 (it lacks U_C); servers 1, 2 receive nothing.
2. Server 0 inputs V's 60 bits (wide); U_C's bits are shared without messages (wide).
3. y = V − U_C + P·[V < U_C] (a wrap happened iff V < U_C): the comparison by bits, with
   suffix products in ⌈log2 60⌉ = 6 rounds (Hillis–Steele) and one inner product per value.
No statistical term: the only opened value is uniform on GF(P) given the others' view.

Server 0's inputs are its own computation on what it saw; a semi-honest server 0 inputs bits
(the security model of the project: honest majority, semi-honest). MPyC randomness is not
seeded; neither are the PRSS keys, which MPyC draws at start-up.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np
from mpyc import asyncoro, thresha
from mpyc.runtime import mpc

from flaimsim.parties.mpc.vector_resharing import fits_uint64

# 2^60 − 93 (MPyC's find_prime_root(60)): 3·P stays below 2^62 (uint64 resharing) and
# 7·P below 2^63 (int64 recombination, vector_resharing).
NARROW_PRIME = 1152921504606846883
NARROW_BITS = NARROW_PRIME.bit_length()   # 60
SERVER_WITHOUT_C = 0                      # the server that inputs V
MASK_TAG = b"flaimsim-narrow-mask"
# Tests only: when a list, server 0 appends each V it computes (what it learns beyond the
# openings), so that an attack test can look at exactly its view.
SERVER0_VIEW: list[np.ndarray] | None = None


def narrow_available() -> bool:
    """Three servers, threshold 1, PRSS: the setting the construction is written for."""
    return len(mpc.parties) == 3 and mpc.threshold == 1 and not mpc.options.no_prss


def narrow_pays(wide: Any) -> bool:
    """Use the narrow field for the bits of ``wide`` (a SecInt type): :func:`narrow_available`
    and ``wide``'s shares off the uint64 path (Python ints; a field on it is as fast as the
    narrow one, and narrow_to_wide needs a field above 2P, which every such field is)."""
    p = int(wide.field.order)
    return narrow_available() and not fits_uint64(p, len(mpc.parties)) and p > 2 * NARROW_PRIME


@functools.cache
def narrow_type() -> type:
    """MPyC's secure GF(P) (bits, carries, prefix products and their sums live here)."""
    return mpc.SecFld(NARROW_PRIME)


def is_narrow(stype: Any) -> bool:
    field = getattr(stype, "field", None)
    return field is not None and int(field.order) == NARROW_PRIME


def mulmod(a: np.ndarray, b: np.ndarray, p: int) -> np.ndarray:
    """(a·b) mod p for int64 arrays 0 ≤ a, b < p < 2^62: the quotient from 80-bit long doubles
    (64-bit mantissa: off by at most 1), the remainder in wrapping int64 arithmetic, which is
    exact because the true remainder a·b − q·p lies in (−p, 2p)."""
    q = (a.astype(np.longdouble) * b.astype(np.longdouble) / p).astype(np.int64)
    with np.errstate(over="ignore"):
        r = a * b - q * p
    return r % p


def _keyed_words(key: bytes, uci: bytes, n: int) -> np.ndarray:
    """n pseudorandom uint64 from a PRSS key (SHAKE-128 of key, tag and the call's unique
    common input), the same at both servers that hold the key."""
    return np.frombuffer(hashlib.shake_128(key + MASK_TAG + uci).digest(8 * n), dtype="<u8")


def _uniform_below_prime(key: bytes, uci: bytes, n: int) -> np.ndarray:
    """n values uniform on [0, P) from a key: 60-bit words, those ≥ P replaced from further
    words of the same stream (rejection; both holders take the same ones)."""
    mask = np.uint64((1 << NARROW_BITS) - 1)
    out = np.empty(0, dtype=np.int64)
    counter = 0
    while out.size < n:
        words = _keyed_words(key, uci + counter.to_bytes(4, "little"), n - out.size + 8) & mask
        out = np.concatenate([out, words[words < np.uint64(NARROW_PRIME)].astype(np.int64)])
        counter += 1
    return out[:n]


def _pair_without_server0() -> tuple[int, ...]:
    return tuple(i for i in range(len(mpc.parties)) if i != SERVER_WITHOUT_C)


def _f_at_me(field: type, subset: tuple[int, ...]) -> int:
    """f_S(i) for this server: its share of a value known to the pair S is value·f_S(i)."""
    return int(thresha._f_S_i(field, len(mpc.parties), mpc.pid, subset))


def _bits_of(values: np.ndarray, l: int) -> np.ndarray:
    """(n, l) 0/1 int64, least significant first."""
    v = np.asarray(values, dtype=np.uint64)
    return ((v[:, None] >> np.arange(l, dtype=np.uint64)) & np.uint64(1)).astype(np.int64)


def _server0_inputs_bits(v: np.ndarray | None, n: int, width: int, stype: type) -> Any:
    """Server 0 inputs the ``width`` low bits of its V (kept in SERVER0_VIEW for the tests);
    the others pass zeros of that shape (MPyC's input reads the sender's values only)."""
    if mpc.pid == SERVER_WITHOUT_C:
        if SERVER0_VIEW is not None:
            SERVER0_VIEW.append(np.asarray(v).astype(np.int64))
        bits = _bits_of(v, width)
    else:
        bits = np.zeros((n, width), dtype=np.int64)
    return mpc.input(stype.array(bits), senders=SERVER_WITHOUT_C)


async def _reshare(field: type, values: np.ndarray) -> np.ndarray:
    """Degree-2t products (any representatives: field.array reduces them) back to degree t,
    one resharing; the shares as an object array of the same shape."""
    out = await mpc._reshare(field.array(np.asarray(values, dtype=object).reshape(-1)))
    return np.asarray(out.value, dtype=object).reshape(values.shape)


def secure_low_bits_narrow(a: Any, l: int) -> Any:
    """The l low bits of each value of a 1-D secure integer array, as a (n, l) array of
    :func:`narrow_type`, least significant first (module docstring). Correct for
    0 ≤ a < 2^L with L ≥ l + 2 the type's bit length."""
    stype = getattr(a, "sectype", None)
    if stype is None or getattr(stype, "frac_length", 0) != 0 or a.ndim != 1:
        raise ValueError("secure_low_bits_narrow needs a 1-D secure integer array")
    if not 1 <= l <= stype.bit_length - 2:
        raise ValueError(f"need 1 <= l <= {stype.bit_length - 2} bits, got {l}")
    if not narrow_available():
        raise ValueError("the narrow field needs 3 servers, threshold 1 and PRSS")
    return _low_bits_narrow(a, int(l))


@asyncoro.mpc_coro
async def _low_bits_narrow(a, l):  # no return annotation: mpc_coro reads it as the type
    n = a.shape[0]
    narrow = narrow_type()
    await mpc.returnType((narrow.array, True, (n, l)))
    wide, nf = type(a).sectype.field, narrow.field
    big, k = type(a).sectype.bit_length, mpc.options.sec_param
    p = NARROW_PRIME
    uci = mpc._prss_uci()
    low_mask = np.uint64((1 << l) - 1)
    masks = {S: _keyed_words(key, uci, n) & low_mask for S, key in mpc._prss_keys.items()}
    r_low = np.zeros(n, dtype=object)
    for S, u in masks.items():
        r_low = r_low + u.astype(object) * _f_at_me(wide, S)
    r_high = mpc._np_randoms(wide, n, 1 << (big + k - l))
    a = await mpc.gather(a)
    c = await mpc.output(wide.array(a.value - r_low + (r_high.value << l) + (1 << big)))
    v = None
    if mpc.pid == SERVER_WITHOUT_C:   # V = (c + Σ_{S ∋ 0} U_S) mod 2^l = (x − U_C) mod 2^l
        v = (np.asarray(c.value, dtype=object) & int(low_mask)).astype(np.uint64)
        for u in masks.values():
            v = (v + u) & low_mask
    v_in = _server0_inputs_bits(v, n, l, narrow)
    pair = _pair_without_server0()
    u_bits = (_bits_of(masks[pair], l) * _f_at_me(nf, pair) % p if pair in masks
              else np.zeros((n, l), dtype=np.int64))
    v_sh = np.asarray((await mpc.gather(v_in)).value, dtype=object).astype(np.int64)
    # Ripple-carry adder of two secret words: generate g = v·u, propagate q = v ⊕ u,
    # carry_{j+1} = g_j + q_j·carry_j, bit_j = q_j ⊕ carry_j (q_j·carry_j is shared by both).
    g = (await _reshare(nf, mulmod(v_sh, u_bits, p))).astype(np.int64)
    prop = (v_sh + u_bits - 2 * g) % p
    bits = np.empty((n, l), dtype=np.int64)
    bits[:, 0] = prop[:, 0]
    carry = g[:, 0]
    for j in range(1, l):
        pc = (await _reshare(nf, mulmod(prop[:, j], carry, p))).astype(np.int64)
        bits[:, j] = (prop[:, j] + carry - 2 * pc) % p
        if j < l - 1:
            carry = (g[:, j] + pc) % p
    return nf.array(bits.astype(object))


def narrow_to_wide(y: Any, wide: type) -> Any:
    """Values 0 ≤ y < P of a 1-D :func:`narrow_type` array, exactly, as a ``wide`` (SecInt)
    array (module docstring). ``wide``'s field must exceed 2P."""
    if not is_narrow(getattr(y, "sectype", None)) or y.ndim != 1:
        raise ValueError("narrow_to_wide needs a 1-D array of the narrow field")
    if int(wide.field.order) <= 2 * NARROW_PRIME:
        raise ValueError(f"{wide.__name__}'s field is too small for values below 2^60")
    return _narrow_to_wide(y, wide)


@asyncoro.mpc_coro
async def _narrow_to_wide(y, wide):
    n, L = y.shape[0], NARROW_BITS
    await mpc.returnType((wide.array, True, (n,)))
    if n == 0:
        return wide.field.array(np.zeros(0, dtype=object))
    wf, nf, p = wide.field, narrow_type().field, NARROW_PRIME
    uci = mpc._prss_uci()
    pair = _pair_without_server0()
    key = mpc._prss_keys.get(pair)
    u_c = _uniform_below_prime(key, uci, n) if key is not None else np.zeros(n, dtype=np.int64)
    y = await mpc.gather(y)
    masked = nf.array(y.value + u_c.astype(object) * _f_at_me(nf, pair))
    v = await mpc.output(masked, receivers=SERVER_WITHOUT_C)   # for server 0 only
    v_plain = (np.asarray(v.value, dtype=object).astype(np.uint64)
               if mpc.pid == SERVER_WITHOUT_C else None)
    v_in = _server0_inputs_bits(v_plain, n, L, wide)
    f_wide = _f_at_me(wf, pair)
    u_bits = _bits_of(u_c, L).astype(object) * f_wide
    vb = np.asarray((await mpc.gather(v_in)).value, dtype=object)
    q = int(wf.order)
    # [V < U]: the top bit where they differ has u = 1. a_j = u_j(1 − v_j), and
    # e_j = 1 − (v_j ⊕ u_j); lt = Σ_j a_j Π_{i>j} e_i.
    g = await _reshare(wf, vb * u_bits)
    a_bits = (u_bits - g) % q
    suffix = (1 - (vb + u_bits - 2 * g)) % q          # S_j = Π_{i≥j} e_i after the scan
    step = 1
    while step < L:
        head = await _reshare(wf, suffix[:, :L - step] * suffix[:, step:])
        suffix = np.concatenate([head, suffix[:, L - step:]], axis=1)
        step *= 2
    above = np.concatenate([suffix[:, 1:], np.ones((n, 1), dtype=object)], axis=1)
    lt = await _reshare(wf, np.sum(a_bits * above, axis=1))
    weights = np.array([1 << j for j in range(L)], dtype=object)
    v_wide = np.sum(vb * weights, axis=1)
    u_wide = np.sum(u_bits * weights, axis=1)
    return wf.array((v_wide - u_wide + p * lt) % q)


__all__ = ["NARROW_PRIME", "narrow_available", "narrow_pays", "narrow_type", "is_narrow", "mulmod",
           "secure_low_bits_narrow", "narrow_to_wide"]
