"""Vectorised arithmetic mod p on two 64-bit limbs against Python's integers."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from flaimsim.parties.mpc.input_sharing import expand_seed, expand_seed_vector
from flaimsim.parties.mpc.modp_vectors import ModpVector, ModulusError, sum_mod
from flaimsim.parties.transport import element_bytes

# small, 64-bit, MPyC-sized (70 and 100 bits) and the largest allowed kind of prime
MODULI = [1009, (1 << 61) - 1, 18446744073709551557, 1180591620717411303449,
          1267650600228229401496703205653, (1 << 127) - 1]


def _random_below(rng: np.random.Generator, p: int, n: int) -> list[int]:
    edges = [0, 1, p - 1, p - 2, p // 2, (1 << 64) % p, ((1 << 64) - 1) % p]
    return edges + [int.from_bytes(rng.bytes(16), "little") % p for _ in range(n)]


def _vector(values: list[int], p: int) -> ModpVector:
    return ModpVector(np.array([v >> 64 for v in values], dtype=np.uint64),
                      np.array([v & ((1 << 64) - 1) for v in values], dtype=np.uint64), p)


@pytest.mark.parametrize("p", MODULI)
def test_add_sub_negate_and_ints_agree_with_python(p: int) -> None:
    rng = np.random.default_rng(p % 1000)
    a, b = _random_below(rng, p, 300), _random_below(rng, p, 300)[::-1]
    va, vb = _vector(a, p), _vector(b, p)
    assert list((va + vb).to_objects()) == [(x + y) % p for x, y in zip(a, b)]
    assert list((va - vb).to_objects()) == [(x - y) % p for x, y in zip(a, b)]
    sums = sum_mod(iter([va, vb, va]), len(a), p).to_objects()
    assert list(sums) == [(2 * x + y) % p for x, y in zip(a, b)]
    ints = np.r_[0, 1, -1, 5, -7, rng.integers(-(1 << 40), 1 << 40, 50)]
    ints = ints[np.abs(ints) < p // 2]
    assert list(ModpVector.from_ints(ints, p).to_objects()) == [int(v) % p for v in ints]


@pytest.mark.parametrize("p", MODULI)
def test_bytes_round_trip_and_flag_words_not_below_p(p: int) -> None:
    w = element_bytes(p)
    values = _random_below(np.random.default_rng(1), p, 200)
    buf = _vector(values, p).to_bytes(w)
    assert buf == b"".join(v.to_bytes(w, "little") for v in values)
    back, below = ModpVector.from_bytes(buf, w, p)
    assert below.all() and list(back.to_objects()) == values
    big = (min(p, (1 << (8 * w)) - 1)).to_bytes(w, "little")    # p itself or the top word
    _, below = ModpVector.from_bytes(big + buf[:w], w, p)
    assert list(below) == [False, True]
    with pytest.raises(ValueError, match="whole number"):
        ModpVector.from_bytes(buf[:-1], w, p)


def _expand_reference(seed: bytes, length: int, p: int) -> list[int]:
    """The seed expansion in plain Python: the first ``length`` masked words below p."""
    width, nbits = element_bytes(p), p.bit_length()
    stream = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    out: list[int] = []
    while len(out) < length:
        need = length - len(out)
        raw = stream.update(bytes((2 * need + 16) * width))
        words = [int.from_bytes(raw[i:i + width], "little") & ((1 << nbits) - 1)
                 for i in range(0, len(raw), width)]
        out += [v for v in words if v < p][:need]
    return out


@pytest.mark.parametrize("p", MODULI)
def test_seed_expansion_is_the_reference_stream(p: int) -> None:
    seed = secrets.token_bytes(16)
    got = expand_seed(seed, 700, p)
    assert list(got) == _expand_reference(seed, 700, p)
    assert list(expand_seed_vector(seed, 9, p).to_objects()) == list(got[:9])


def test_moduli_outside_two_limbs_are_refused() -> None:
    with pytest.raises(ModulusError, match="2\\^127"):
        ModpVector.zeros(3, 1 << 127)
    with pytest.raises(ModulusError):
        ModpVector.zeros(3, 1)
