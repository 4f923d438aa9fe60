"""Clients: local integer vectors secret-shared to the m compute servers over the transport.

Three sharing modes (MPC-NOTES.md, "Running parties"):

* ``compact`` (the default): additive shares modulo 2^b, with b = bitlen(B) the smallest width
  holding the public bound B on every aggregate count (``public_record_bound``; 16 bits on
  Adult). Servers j = 1..m-1 get a 16-byte seed s_j; server 0 gets
  ``x - sum_j PRG_b(s_j) mod 2^b`` packed at b bits per value. Upload:
  ``ceil(d * b / 8) + (m - 1) * 16 + m * H`` bytes (the floor d·b bits plus seeds and frame
  headers). Each server sums its pieces a_i mod 2^b locally and inputs a_i to MPyC (as the
  ``additive`` conversion). In the field the total is s = sum_i a_i = x + w·2^b with a wrap
  count 0 <= w < m; since the aggregate is below 2^b, x = s mod 2^b, and the servers take it
  from the b low bits of s (``secure_low_bits(s, b)`` computes s mod 2^b: the bit
  decomposition that scoring needs anyway, see :func:`unwrap`). s is never opened: w depends
  on x.

* ``shamir``: the client splits x into m Shamir shares of degree t over the servers' prime
  field GF(p) (``mpyc.thresha.np_random_split``) and sends share i to server i. Upload:
  ``m * (d * w + H)`` bytes, w = element bytes, H = frame header.
* ``additive``: servers j = 1..m-1 get a 16-byte seed s_j each; server 0 gets
  ``x - sum_j PRG(s_j) mod p``. Upload: ``d * w + (m - 1) * 16 + m * H`` bytes. The servers then
  convert their summed additive pieces to Shamir form once inside MPyC (each server inputs
  its piece with ``mpc.input``: (m - 1) * d elements sent per server, measured on the wire).

PRG: AES-128-CTR (``cryptography``) keyed with the 16-byte seed, zero nonce; the keystream is
cut into w-byte little-endian words, masked to bit_length(p) bits, and words >= p are rejected,
so each element is exactly uniform on [0, p) and the expansion is deterministic.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from mpyc import thresha

from flaimsim.parties.ledger import Ledger
from flaimsim.parties import profile
from flaimsim.parties.mpc.wire import add_wire_rows
from flaimsim.parties.mpc.field import FieldSpec, SharingError
from flaimsim.parties.mpc.modp_vectors import ModpVector
from flaimsim.parties.mpc.sharing_modes import Sharing
from flaimsim.parties.transport import (
    FRAME_HEADER_BYTES, ClientTransport, FrameKind, element_bytes, encode_elements)



class ServerControl(Protocol):
    """What sharing needs of the servers' driver (``ServerLauncher`` provides it)."""

    @property
    def privacy_note(self) -> str: ...

    def field_spec_for(self, bit_length: int) -> FieldSpec: ...

    def call(self, name: str, **kwargs: Any) -> Any: ...

    def counters(self) -> Any: ...

    def step_events(self, before: Any, after: Any) -> Any: ...

SEED_BYTES = 16
SharingMode = Sharing
SHARING_MODES = tuple(m.value for m in Sharing)
DEFAULT_SHARING = Sharing.COMPACT


def compact_width(bound: int) -> int:
    """b = bitlen(bound): the smallest width with every aggregate 0..bound below 2^b."""
    if int(bound) < 1:
        raise SharingError(f"the public bound on the aggregate must be >= 1, got {bound}")
    return int(bound).bit_length()


def expand_seed_bits(seed: bytes, length: int, bits: int) -> np.ndarray:
    """``length`` uniform values mod 2^bits (uint64) from a 16-byte seed: AES-128-CTR words of
    ceil(bits/8) bytes, masked to ``bits`` bits (exactly uniform: no rejection needed)."""
    if len(seed) != SEED_BYTES:
        raise SharingError(f"a PRG seed must be {SEED_BYTES} bytes, got {len(seed)}")
    if not 1 <= bits <= 63:
        raise SharingError(f"compact shares need 1 <= b <= 63 bits, got {bits}")
    width = (bits + 7) // 8
    raw = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(
        bytes(length * width))
    words = np.zeros((length, 8), dtype=np.uint8)
    words[:, :width] = np.frombuffer(raw, dtype=np.uint8).reshape(length, width)
    return words.view("<u8").reshape(length) & np.uint64((1 << bits) - 1)


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Values 0 <= v < 2^bits packed at ``bits`` bits each, little-endian: ceil(d·bits/8) bytes."""
    v = np.asarray(values, dtype=np.uint64).reshape(-1)
    if bits % 8 == 0:
        return v.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :bits // 8].tobytes()
    bit_matrix = ((v[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bit_matrix.reshape(-1), bitorder="little").tobytes()


def unpack_bits(buf: bytes, bits: int, length: int) -> np.ndarray:
    """Inverse of :func:`pack_bits` (uint64 array of ``length`` values)."""
    if len(buf) != compact_payload_bytes(length, bits):
        raise SharingError(f"{len(buf)} bytes do not hold {length} values of {bits} bits")
    raw = np.frombuffer(buf, dtype=np.uint8)
    if bits % 8 == 0:
        words = np.zeros((length, 8), dtype=np.uint8)
        words[:, :bits // 8] = raw.reshape(length, bits // 8)
        return words.view("<u8").reshape(length).copy()
    flat = np.unpackbits(raw, bitorder="little")[:length * bits].reshape(length, bits)
    return (flat.astype(np.uint64) << np.arange(bits, dtype=np.uint64)).sum(axis=1,
                                                                             dtype=np.uint64)


def compact_payload_bytes(length: int, bits: int) -> int:
    return (length * bits + 7) // 8


def compact_pieces(x: np.ndarray, bits: int, m: int,
                   seeds: Sequence[bytes] | None = None) -> tuple[np.ndarray, list[bytes]]:
    """(masked vector for server 0, seeds for servers 1..m-1): x = masked + Σ PRG_b(s_j) mod 2^b.

    Refuses values outside 0..2^b − 1 (counts under the public bound are non-negative).
    """
    x = np.asarray(x)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.integer):
        raise SharingError(f"a client vector must be 1-D integers, got {x.dtype} {x.shape}")
    if x.size and (int(x.min()) < 0 or int(x.max()) >= 1 << bits):
        raise SharingError(f"compact shares need values in 0..2^{bits} - 1 (the public bound's "
                           f"width); got {int(x.min())}..{int(x.max())}")
    if seeds is None:
        seeds = [secrets.token_bytes(SEED_BYTES) for _ in range(m - 1)]
    if len(seeds) != m - 1:
        raise SharingError(f"need {m - 1} seeds, got {len(seeds)}")
    mask = np.uint64((1 << bits) - 1)
    masked = x.astype(np.uint64)
    for s in seeds:
        masked = (masked - expand_seed_bits(s, x.size, bits)) & mask  # wraps mod 2^64 first
    return masked, list(seeds)


def sum_compact(pieces: Iterable[np.ndarray], bits: int, length: int) -> np.ndarray:
    """Σ pieces mod 2^bits (uint64; each piece already reduced)."""
    acc = np.zeros(length, dtype=np.uint64)
    for p in pieces:
        acc = (acc + np.asarray(p, dtype=np.uint64)) & np.uint64((1 << bits) - 1)
    return acc


def unwrap(runtime: Any, wrapped: Any, bits: int) -> tuple[Any, Any]:
    """(x, bits of x) from s = x + w·2^b: ``secure_low_bits(s, b)`` yields the b low bits of s
    (it works modulo 2^b), and x = Σ_i 2^i·bit_i is linear. Needs s < 2^(bit length) of the
    type, true for s < m·2^b when the type has b + 2 or more bits. One bit decomposition."""
    # Here, not at the top: bit_decomposition loads mpyc.runtime, which the driver (a client
    # of this module) must not start.
    from flaimsim.parties.mpc.bit_decomposition import secure_low_bits

    low = secure_low_bits(wrapped, bits)
    return runtime.np_from_bits(low), low


def check_client_vector(x: np.ndarray, modulus: int) -> np.ndarray:
    """x as int64 after the checks: 1-D integers with |x| < p/2 (recoverable as integers)."""
    x = np.asarray(x)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.integer):
        raise SharingError(f"a client vector must be 1-D integers, got {x.dtype} {x.shape}")
    if x.size:
        low, high = int(x.min()), int(x.max())
        if max(-low, high) >= modulus // 2:
            raise SharingError("client values must satisfy |x| < p/2 to be recovered as "
                               "integers")
        if max(-low, high) >= 1 << 63:
            raise SharingError("client values must fit 64-bit signed integers")
    return x.astype(np.int64)


def to_field(x: np.ndarray, modulus: int) -> np.ndarray:
    """x mod p as Python ints (object array); refuses non-integers and |x| >= p/2."""
    return check_client_vector(x, modulus).astype(object) % modulus


def shamir_shares(x: np.ndarray, spec: FieldSpec) -> np.ndarray:
    """(m, d) object array: row i is server i's Shamir share of x (degree t)."""
    return thresha.np_random_split(spec.field, to_field(x, spec.modulus), spec.threshold, spec.m)


def expand_seed_vector(seed: bytes, length: int, modulus: int) -> ModpVector:
    """``length`` field elements from a 16-byte seed: AES-128-CTR + rejection sampling.

    The keystream is read as little-endian words of the modulus's byte width, each masked to
    its bit length; the first ``length`` words below p are the elements (so a shorter call
    gives a prefix of a longer one)."""
    if len(seed) != SEED_BYTES:
        raise SharingError(f"a PRG seed must be {SEED_BYTES} bytes, got {len(seed)}")
    width, nbits = element_bytes(modulus), int(modulus).bit_length()
    stream = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    parts: list[ModpVector] = []
    have = 0
    while have < length:
        need = length - have
        # p >= 2^(nbits - 1), so at least half the words are accepted
        words, below = ModpVector.from_bytes(stream.update(bytes((2 * need + 16) * width)),
                                             width, modulus, mask_bits=nbits)
        parts.append(words.take(np.flatnonzero(below)[:need]))
        have += len(parts[-1])
    if not parts:
        return ModpVector.zeros(0, modulus)
    return ModpVector(np.concatenate([v.hi for v in parts]),
                      np.concatenate([v.lo for v in parts]), modulus)


def expand_seed(seed: bytes, length: int, modulus: int) -> np.ndarray:
    """:func:`expand_seed_vector` as Python ints (an object array)."""
    return expand_seed_vector(seed, length, modulus).to_objects()


def additive_masked(x: np.ndarray, spec: FieldSpec, seeds: Sequence[bytes] | None = None
                    ) -> tuple[ModpVector, list[bytes]]:
    """(masked vector for server 0, seeds for servers 1..m-1): x = masked + Σ PRG(s_j) mod p."""
    if seeds is None:
        seeds = [secrets.token_bytes(SEED_BYTES) for _ in range(spec.m - 1)]
    if len(seeds) != spec.m - 1:
        raise SharingError(f"need {spec.m - 1} seeds, got {len(seeds)}")
    masked = ModpVector.from_ints(check_client_vector(x, spec.modulus), spec.modulus)
    for s in seeds:
        masked = masked - expand_seed_vector(s, len(masked), spec.modulus)
    return masked, list(seeds)


def additive_pieces(x: np.ndarray, spec: FieldSpec,
                    seeds: Sequence[bytes] | None = None) -> tuple[np.ndarray, list[bytes]]:
    """:func:`additive_masked` with the masked vector as Python ints (an object array)."""
    masked, seeds = additive_masked(x, spec, seeds)
    return masked.to_objects(), seeds


def upload_bytes(mode: SharingMode, d: int, spec: FieldSpec, bits: int | None = None) -> int:
    """Exact bytes one client uploads for a length-d vector (payloads + frame headers);
    ``bits`` is the compact width b (compact mode only)."""
    if mode == "compact":
        if bits is None:
            raise SharingError("compact sharing needs the width b of the public bound")
        return (compact_payload_bytes(d, bits) + (spec.m - 1) * SEED_BYTES
                + spec.m * FRAME_HEADER_BYTES)
    if mode == "shamir":
        return spec.m * (d * spec.element_bytes + FRAME_HEADER_BYTES)
    if mode == "additive":
        return d * spec.element_bytes + (spec.m - 1) * SEED_BYTES + spec.m * FRAME_HEADER_BYTES
    raise SharingError(f"unknown sharing mode {mode!r}; expected one of {SHARING_MODES}")


@dataclass(frozen=True)
class Client:
    """One data holder; ``id`` is its number k (ledger name ``client:k``)."""

    id: int

    def upload(self, x: np.ndarray, transport: ClientTransport, spec: FieldSpec, round: int,
               mode: SharingMode, phase: str = "share-inputs", bits: int | None = None) -> int:
        """Secret-share x to all servers; return the bytes sent (``bits``: compact width b)."""
        w = spec.element_bytes
        sent = 0
        if mode == "compact":
            if bits is None:
                raise SharingError("compact sharing needs the width b of the public bound")
            masked, seeds = compact_pieces(x, bits, spec.m)
            sent += transport.send(self.id, 0, FrameKind.ADDITIVE_MASKED, round, phase,
                                   pack_bits(masked, bits))
            for j, seed in enumerate(seeds, start=1):
                sent += transport.send(self.id, j, FrameKind.ADDITIVE_SEED, round, phase, seed)
        elif mode == "shamir":
            for i, row in enumerate(shamir_shares(x, spec)):
                sent += transport.send(self.id, i, FrameKind.SHAMIR_SHARES, round, phase,
                                       encode_elements(row, w))
        elif mode == "additive":
            masked, seeds = additive_masked(x, spec)
            sent += transport.send(self.id, 0, FrameKind.ADDITIVE_MASKED, round, phase,
                                   masked.to_bytes(w))
            for j, seed in enumerate(seeds, start=1):
                sent += transport.send(self.id, j, FrameKind.ADDITIVE_SEED, round, phase, seed)
        else:
            raise SharingError(f"unknown sharing mode {mode!r}; expected one of {SHARING_MODES}")
        return sent


@dataclass(frozen=True)
class ShareResult:
    """What one share-inputs step cost: client uploads and the servers' conversion traffic."""

    name: str
    mode: str
    length: int
    upload_bytes: dict[int, int]           # client id -> bytes sent
    conversion_bytes_sent: tuple[int, ...]  # server i -> bytes sent in MPyC (additive only)
    privacy_note: str = ""                  # "not private (t=0) ..." for m = 2 runs


def share_inputs(launcher: ServerControl, transport: ClientTransport,
                 vectors: Mapping[int, np.ndarray], name: str, mode: SharingMode,
                 round: int = 0, phase: str = "share-inputs", ledger: Ledger | None = None,
                 bit_length: int | None = None, timeout: float | None = None,
                 compact_bits: int | None = None, accumulate: str | None = None,
                 reduce: bool = True) -> ShareResult:
    """Clients upload shares, servers sum them into the secure array ``name``.

    ``vectors`` maps client id -> its int vector (all the same length). In additive and compact
    modes the servers then convert to Shamir form; that MPyC traffic is added to ``ledger`` as
    ``server:i -> server:j`` rows of the same phase, next to the ``client:k -> server:i`` rows.
    The array is a SecInt(bit_length) (default: the servers' ``--bit-length``).

    Compact mode (``compact_bits`` = b): ``accumulate`` names a local piece mod 2^b that the new
    pieces are added to (kept for later joins; the conversion then covers the whole
    accumulated sum); ``reduce`` = False leaves ``name`` as the wrapped sum s = x + w·2^b for a
    caller that bit-decomposes it anyway (DistAIM's scoring), True reduces it to x here.
    """
    if mode not in SHARING_MODES:
        raise SharingError(f"unknown sharing mode {mode!r}; expected one of {SHARING_MODES}")
    lengths = {len(v) for v in vectors.values()}
    if len(lengths) != 1:
        raise SharingError(f"client vectors must have one common length, got {sorted(lengths)}")
    d = lengths.pop()
    spec = launcher.field_spec_for(bit_length)
    if mode == "compact":
        if compact_bits is None:
            raise SharingError("compact sharing needs compact_bits (the public bound's width)")
        if bit_length is not None and bit_length < compact_bits + (spec.m - 1).bit_length():
            raise SharingError(f"SecInt({bit_length}) cannot hold the wrapped sum of {spec.m} "
                               f"pieces of {compact_bits} bits")
    sent_before = len(transport.log)
    with profile.timed() as upload_s:
        uploads = {k: Client(k).upload(x, transport, spec, round, mode, phase, compact_bits)
                   for k, x in vectors.items()}
    frames = transport.log[sent_before:]
    profile.record(round, phase, "input sharing", sum(f.nbytes for f in frames), len(frames),
                   1 if frames else 0, upload_s[0])
    launcher.call("receive_shares", name=name, round=round, phase=phase,
                  clients=sorted(vectors), mode=mode, length=d, bit_length=bit_length,
                  compact_bits=compact_bits, timeout=timeout)
    conv: tuple[int, ...] = ()
    if mode in ("additive", "compact"):
        source = name
        if mode == "compact" and accumulate is not None:
            launcher.call("add_pieces", names=[name, accumulate], out=accumulate)
            source = accumulate
        before = launcher.counters()
        launcher.call("to_shamir", name=source, out=name, keep=source != name,
                      reduce=reduce, timeout=timeout)
        after = launcher.counters()
        diffs = [a - b for a, b in zip(after, before)]
        conv = tuple(dd.total_sent for dd in diffs)
        if ledger is not None:
            events = launcher.step_events(before, after)
            add_wire_rows(ledger, before, after, round, phase, events)
            for o in profile.mpc_step_ops(events, round, phase, "to Shamir"):
                profile.record(o.round, o.phase, o.op, o.bytes, o.messages, o.rounds,
                               o.seconds)
    if ledger is not None:
        transport.flush_to_ledger(ledger)
    return ShareResult(name, mode, d, uploads, conv, launcher.privacy_note)
