"""Cryptographic building blocks of secure aggregation (Bonawitz et al. 2017; SecAgg+).

This module owns the primitives only; the message flow lives in :mod:`secagg` and the wire
format in :mod:`secagg_wire`.

- Key agreement: X25519; a shared point is turned into a 32-byte key with HKDF-SHA256 whose
  ``info`` binds the purpose, the session round and the ordered pair of client ids.
- PRG: AES-256-CTR keyed by a 32-byte seed, zero IV, expanded into little-endian uint64 words
  and reduced mod 2^b (b <= 63). Each seed is used for one vector of one session only.
- Authenticated encryption of Shamir shares: AES-256-GCM with a random 96-bit nonce.
- Shamir t-out-of-n sharing over the Mersenne prime field GF(2^127 - 1). A 32-byte secret is
  cut into 15-byte chunks (each < 2^120 < p), every chunk is shared with its own random
  polynomial of degree t - 1 at the same points x = holder_id + 1, and a share is the chunks'
  evaluations, each 16 bytes little-endian: ``SHARE_BYTES = 3 * 16 = 48`` bytes.

Randomness: every key, seed and polynomial coefficient comes from ``os.urandom`` (through
``cryptography`` and :mod:`secrets`) and cannot be seeded; only public choices (the
neighbour graph, dropouts) use the caller's seeded numpy generator.
"""

from __future__ import annotations

import os
import secrets
from typing import Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PRIME = (1 << 127) - 1          # Mersenne prime 2^127 - 1: the Shamir field
SECRET_BYTES = 32               # X25519 private keys and self-mask seeds
CHUNK_BYTES = 15                # 120-bit chunks are < PRIME
CHUNKS = -(-SECRET_BYTES // CHUNK_BYTES)
ELEMENT_BYTES = 16              # one field element on the wire
SHARE_BYTES = CHUNKS * ELEMENT_BYTES
KEY_BYTES = 32                  # raw X25519 public / private key
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_BITS = 63                   # sums must fit int64


class ShamirError(ValueError):
    """Bad Shamir parameters or too few shares to reconstruct."""


# ---- bit width -------------------------------------------------------------------------
def modulus_bits(n_clients: int, max_value: int) -> int:
    """b = ceil(log2(n * max_value + 1)): the sum of n values in [0, max_value] fits in b bits."""
    if n_clients < 1 or max_value < 0:
        raise ValueError(f"need n_clients >= 1 and max_value >= 0, got {n_clients}, {max_value}")
    return max(1, (n_clients * max_value).bit_length())


def word_bytes(bits: int) -> int:
    """Bytes per vector entry on the wire: b rounded up to whole bytes."""
    return -(-bits // 8)


# ---- key agreement, KDF, PRG, AEAD ------------------------------------------------------
def new_keypair() -> tuple[X25519PrivateKey, bytes]:
    """A fresh X25519 key pair (private key object, raw 32-byte public key)."""
    sk = X25519PrivateKey.generate()
    return sk, sk.public_key().public_bytes_raw()


def private_key_bytes(sk: X25519PrivateKey) -> bytes:
    return sk.private_bytes_raw()


def private_key_from_bytes(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def agree(sk: X25519PrivateKey, peer_public: bytes, purpose: bytes, round: int,
          a: int, b: int) -> bytes:
    """HKDF-SHA256(X25519(sk, pk_peer)) bound to purpose, round and the unordered pair {a, b}."""
    lo, hi = (a, b) if a < b else (b, a)
    shared = sk.exchange(X25519PublicKey.from_public_bytes(peer_public))
    info = b"flaimsim-secagg|" + purpose + b"|" + f"{round}|{lo}|{hi}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def new_seed() -> bytes:
    """A fresh 32-byte self-mask seed b_u (from os.urandom)."""
    return os.urandom(SECRET_BYTES)


def prg_words(seed: bytes, length: int, bits: int) -> np.ndarray:
    """PRG(seed): ``length`` uint64 words from AES-256-CTR, reduced mod 2^bits."""
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in [1, 64], got {bits}")
    enc = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    words = np.frombuffer(enc.update(bytes(8 * length)) + enc.finalize(), dtype="<u8")
    return words & np.uint64((1 << bits) - 1) if bits < 64 else words.copy()


def encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM: nonce (12 bytes) || ciphertext || tag (16 bytes)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def decrypt(key: bytes, blob: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)


# ---- Shamir secret sharing over GF(2^127 - 1) --------------------------------------------
def _chunks(secret: bytes) -> list[int]:
    if len(secret) != SECRET_BYTES:
        raise ShamirError(f"secrets are {SECRET_BYTES} bytes, got {len(secret)}")
    return [int.from_bytes(secret[i:i + CHUNK_BYTES], "little")
            for i in range(0, SECRET_BYTES, CHUNK_BYTES)]


def shamir_share(secret: bytes, holders: Sequence[int], threshold: int) -> dict[int, bytes]:
    """Split a 32-byte secret among ``holders`` (ids >= 0); any ``threshold`` shares rebuild it.

    Chunk c is the constant term of f_c(x) = c + a_1 x + ... + a_{t-1} x^{t-1} mod p, and holder
    h receives (f_c(h + 1))_c serialised as ``CHUNKS`` 16-byte little-endian integers.
    """
    if not 1 <= threshold <= len(holders):
        raise ShamirError(f"threshold {threshold} must be in [1, {len(holders)} holders]")
    if len(set(holders)) != len(holders) or min(holders) < 0:
        raise ShamirError("holders must be distinct non-negative ids")
    polys = [[c] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
             for c in _chunks(secret)]
    out: dict[int, bytes] = {}
    for h in holders:
        x = h + 1
        parts = []
        for coeffs in polys:
            y = 0
            for a in reversed(coeffs):     # Horner: a few hundred big-int ops per share at most
                y = (y * x + a) % PRIME
            parts.append(y.to_bytes(ELEMENT_BYTES, "little"))
        out[h] = b"".join(parts)
    return out


def shamir_reconstruct(shares: Mapping[int, bytes], threshold: int) -> bytes:
    """Lagrange interpolation at 0 from ``threshold`` of the given shares (holder id -> bytes)."""
    if len(shares) < threshold:
        raise ShamirError(f"need {threshold} shares to reconstruct, got {len(shares)}")
    used = sorted(shares)[:threshold]
    xs = [h + 1 for h in used]
    lambdas = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % PRIME
                den = den * (xj - xi) % PRIME
        lambdas.append(num * pow(den, -1, PRIME) % PRIME)
    out = bytearray()
    for c in range(CHUNKS):
        lo = c * ELEMENT_BYTES
        value = sum(lam * int.from_bytes(shares[h][lo:lo + ELEMENT_BYTES], "little")
                    for lam, h in zip(lambdas, used)) % PRIME
        width = min(CHUNK_BYTES, SECRET_BYTES - c * CHUNK_BYTES)
        if value >= 1 << (8 * width):
            raise ShamirError("inconsistent shares: reconstructed chunk out of range")
        out += value.to_bytes(width, "little")
    return bytes(out)
