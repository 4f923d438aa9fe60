"""Wire format of secure aggregation and its session view of the loopback star network.

Every message is ``header || body`` (little-endian, no padding, no pickle):

    header  = struct "<BBIIII": version (u8 = 1), kind (u8), round (u32), sender id (u32),
              receiver id (u32), body length (u32)                         -> 18 bytes
    client ids are the caller's client numbers; the aggregator is id 0xFFFFFFFF.

Bodies by kind (phase in brackets):
  1 ADVERTISE_KEYS  client -> aggregator [secagg-keys]: c_pk (32) || s_pk (32)
  2 NEIGHBOUR_KEYS  aggregator -> client [secagg-keys]: count u32, then per neighbour
                    id u32 || c_pk (32) || s_pk (32)                       (68 bytes each)
  3 SHARE_KEYS      client -> aggregator [secagg-keys]: count u32, then per neighbour
                    receiver id u32 || AES-GCM blob                         (4 + 132 bytes)
  4 FORWARD_SHARES  aggregator -> client [secagg-keys]: count u32, then per sender
                    sender id u32 || AES-GCM blob                           (4 + 132 bytes)
                    the blob is nonce (12) || Enc(u u32 || v u32 || share of s_sk (48) ||
                    share of b_u (48)) || tag (16); associated data = round u32.
  5 MASKED_INPUT    client -> aggregator [secagg-masked-input]: word bytes w (u8), bits b (u8),
                    length L (u32), then L words of w bytes little-endian  (6 + L*w bytes)
  6 UNMASK_REQUEST  aggregator -> client [secagg-unmask]: n_survivors u32, ids u32...,
                    n_dropped u32, ids u32... (restricted to the client's neighbours)
  7 UNMASK_SHARES   client -> aggregator [secagg-unmask]: count u32, then per share
                    owner id u32 || what u8 (0 = mask key s_sk, 1 = self-mask seed b_u) ||
                    share (48)                                              (53 bytes each)

Each message crosses a real loopback socket as one ``SECAGG`` frame of
:mod:`flaimsim.parties.transport` (14-byte frame header + the message above), so a message
costs ``14 + 18 + len(body)`` bytes on the wire. The :class:`Transport` parses every header,
appends a :class:`TransportRecord` to its log (sender, receiver, phase, kind, frame bytes,
and optionally the message for inspection) and hands the message to the network, which counts
it where it is written (ledger rows, source ``wire``) and again where it is read. Parties
only ever see bytes.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from flaimsim.parties.ledger import AGGREGATOR, client
from flaimsim.parties.star import StarNetwork
from flaimsim.parties.transport import FrameKind
from flaimsim.parties.secagg.crypto import KEY_BYTES, NONCE_BYTES, SHARE_BYTES, TAG_BYTES

VERSION = 1
AGGREGATOR_ID = 0xFFFFFFFF
HEADER = struct.Struct("<BBIIII")
HEADER_BYTES = HEADER.size
U32 = struct.Struct("<I")
MASKED_PREFIX = struct.Struct("<BBI")
SHARE_PLAINTEXT = struct.Struct(f"<II{SHARE_BYTES}s{SHARE_BYTES}s")
ENCRYPTED_SHARE_BYTES = NONCE_BYTES + SHARE_PLAINTEXT.size + TAG_BYTES
UNMASK_ENTRY = struct.Struct(f"<IB{SHARE_BYTES}s")
MASK_KEY, SELF_SEED = 0, 1


class WireError(ValueError):
    """A malformed message."""


class Kind(IntEnum):
    ADVERTISE_KEYS = 1
    NEIGHBOUR_KEYS = 2
    SHARE_KEYS = 3
    FORWARD_SHARES = 4
    MASKED_INPUT = 5
    UNMASK_REQUEST = 6
    UNMASK_SHARES = 7


PHASE_OF_KIND = {
    Kind.ADVERTISE_KEYS: "secagg-keys", Kind.NEIGHBOUR_KEYS: "secagg-keys",
    Kind.SHARE_KEYS: "secagg-keys", Kind.FORWARD_SHARES: "secagg-keys",
    Kind.MASKED_INPUT: "secagg-masked-input",
    Kind.UNMASK_REQUEST: "secagg-unmask", Kind.UNMASK_SHARES: "secagg-unmask",
}


def party_name(pid: int) -> str:
    return AGGREGATOR if pid == AGGREGATOR_ID else client(pid)


@dataclass(frozen=True)
class Header:
    kind: Kind
    round: int
    sender: int
    receiver: int


def pack(kind: Kind, round: int, sender: int, receiver: int, body: bytes) -> bytes:
    return HEADER.pack(VERSION, int(kind), round, sender, receiver, len(body)) + body


def unpack(message: bytes) -> tuple[Header, bytes]:
    if len(message) < HEADER_BYTES:
        raise WireError(f"message of {len(message)} bytes is shorter than the header")
    version, kind, rnd, sender, receiver, n = HEADER.unpack_from(message)
    if version != VERSION or len(message) != HEADER_BYTES + n:
        raise WireError(f"bad header: version {version}, body length {n}, got {len(message)}")
    return Header(Kind(kind), rnd, sender, receiver), message[HEADER_BYTES:]


# ---- bodies -------------------------------------------------------------------------------
def encode_neighbour_keys(keys: dict[int, tuple[bytes, bytes]]) -> bytes:
    return U32.pack(len(keys)) + b"".join(
        U32.pack(v) + c_pk + s_pk for v, (c_pk, s_pk) in sorted(keys.items()))


def decode_neighbour_keys(body: bytes) -> dict[int, tuple[bytes, bytes]]:
    (n,), step = U32.unpack_from(body), 4 + 2 * KEY_BYTES
    out = {}
    for i in range(n):
        o = 4 + i * step
        out[U32.unpack_from(body, o)[0]] = (body[o + 4:o + 4 + KEY_BYTES],
                                            body[o + 4 + KEY_BYTES:o + step])
    return out


def encode_blobs(blobs: dict[int, bytes]) -> bytes:
    """SHARE_KEYS / FORWARD_SHARES body: count, then (peer id, encrypted share) entries."""
    return U32.pack(len(blobs)) + b"".join(U32.pack(p) + b for p, b in sorted(blobs.items()))


def decode_blobs(body: bytes) -> dict[int, bytes]:
    (n,), step = U32.unpack_from(body), 4 + ENCRYPTED_SHARE_BYTES
    if len(body) != 4 + n * step:
        raise WireError("share list length does not match its count")
    return {U32.unpack_from(body, 4 + i * step)[0]: body[8 + i * step:4 + (i + 1) * step]
            for i in range(n)}


def encode_masked(words: np.ndarray, bits: int, width: int) -> bytes:
    """L words (uint64, < 2^bits) as w little-endian bytes each."""
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8).reshape(-1, 8)[:, :width]
    return MASKED_PREFIX.pack(width, bits, len(words)) + raw.tobytes()


def decode_masked(body: bytes) -> tuple[np.ndarray, int]:
    width, bits, n = MASKED_PREFIX.unpack_from(body)
    if len(body) != MASKED_PREFIX.size + n * width:
        raise WireError("masked input length does not match its header")
    raw = np.zeros((n, 8), dtype=np.uint8)
    raw[:, :width] = np.frombuffer(body, np.uint8, n * width, MASKED_PREFIX.size).reshape(n, width)
    return raw.reshape(-1).view("<u8").astype(np.uint64), bits


def encode_ids(*groups: list[int]) -> bytes:
    return b"".join(U32.pack(len(g)) + b"".join(U32.pack(i) for i in g) for g in groups)


def decode_ids(body: bytes, groups: int) -> list[list[int]]:
    out, o = [], 0
    for _ in range(groups):
        (n,) = U32.unpack_from(body, o)
        out.append([U32.unpack_from(body, o + 4 + 4 * i)[0] for i in range(n)])
        o += 4 + 4 * n
    return out


def encode_unmask_shares(entries: list[tuple[int, int, bytes]]) -> bytes:
    return U32.pack(len(entries)) + b"".join(UNMASK_ENTRY.pack(*e) for e in entries)


def decode_unmask_shares(body: bytes) -> list[tuple[int, int, bytes]]:
    (n,) = U32.unpack_from(body)
    return [UNMASK_ENTRY.unpack_from(body, 4 + i * UNMASK_ENTRY.size) for i in range(n)]


# ---- transport ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TransportRecord:
    sender: str
    receiver: str
    phase: str
    kind: str
    nbytes: int            # on the socket: transport frame header + this message
    payload: bytes | None  # the SecAgg+ message (header || body), when kept


class Transport:
    """A SecAgg+ session's view of the :class:`~flaimsim.parties.star.StarNetwork`.

    Each message travels as one ``SECAGG`` frame over the sender's loopback connection and is
    counted where it is written (the network's ``sent`` log, flushed to the ledger as ``wire``
    rows); parties only ever see the bytes the receiving end read. ``phase`` re-tags every
    frame of the session (e.g. ``proxy``); by default each kind has its secagg phase.
    """

    def __init__(self, network: StarNetwork, round: int, keep_payloads: bool = True,
                 phase: str | None = None) -> None:
        self.network, self.round, self.keep_payloads = network, round, keep_payloads
        self.phase = phase
        self.log: list[TransportRecord] = []
        self._pending: dict[int, list[bytes]] = defaultdict(list)

    def send(self, message: bytes) -> None:
        h, _ = unpack(message)
        if h.round != self.round:
            raise WireError(f"message for round {h.round} in a round-{self.round} session")
        phase = self.phase or PHASE_OF_KIND[h.kind]
        sender, receiver = party_name(h.sender), party_name(h.receiver)
        nbytes = self.network.send(sender, receiver, FrameKind.SECAGG, self.round, phase,
                                   message)
        self.log.append(TransportRecord(sender, receiver, phase, h.kind.name, nbytes,
                                        message if self.keep_payloads else None))

    def receive(self, pid: int, kind: Kind) -> list[tuple[Header, bytes]]:
        """Every message of ``kind`` that has reached party ``pid`` (read from its socket)."""
        self._pending[pid] += [f.payload for f in
                               self.network.receive(party_name(pid), FrameKind.SECAGG)]
        keep, out = [], []
        for m in self._pending[pid]:
            h, body = unpack(m)
            if h.receiver != pid:
                raise WireError(f"party {pid} received a message addressed to {h.receiver}")
            if h.kind == kind:
                out.append((h, body))
            else:
                keep.append(m)
        self._pending[pid] = keep
        return out

    def bytes_by_phase(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.log:
            out[r.phase] += r.nbytes
        return dict(out)

    def party_bytes(self, name: str) -> tuple[int, int]:
        """(sent, received) bytes of one party."""
        sent = sum(r.nbytes for r in self.log if r.sender == name)
        return sent, sum(r.nbytes for r in self.log if r.receiver == name)
