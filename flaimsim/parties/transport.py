"""The project's own transport: length-prefixed frames over TCP, counted exactly.

Traffic that does not pass through MPyC is framed and counted here: DistAIM's client uploads
(:class:`ClientTransport`, client -> MPC server; MPyC has no input-only parties) and every
FLAIM message between the aggregator and its clients (the star network of
:mod:`flaimsim.parties.star`, built on these frames and the :class:`WireLog` counters here).
One frame is a 14-byte header followed by the payload::

    <I payload length> <B kind> <i sender> <I round> <B phase code>

``sender`` is the client id (``-1`` for the driver, ``-2`` for the FL aggregator, ``-3 - i``
for MPC server i), ``phase`` an index into
:data:`flaimsim.parties.ledger.PHASES`. The bytes charged for a frame are
``FRAME_HEADER_BYTES + len(payload)``; TCP/IP overhead is not counted (it is not part of the
protocol and differs per network). The same framing carries the driver's control commands
(JSON payloads) on a separate connection.

Field elements travel fixed-width little-endian: ``element_bytes(p) = ceil(bit_length(p) / 8)``
bytes each (8 B for the 64-bit field of SecInt(32)).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import threading
from collections import defaultdict
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from flaimsim.parties.ledger import AGGREGATOR, PHASES, Ledger, client, party_kind, server
from flaimsim.parties.rounds import LamportClocks, block_charge

FRAME_HEADER = struct.Struct("<IBiIB")
FRAME_HEADER_BYTES = FRAME_HEADER.size  # 14
MAX_PAYLOAD = 1 << 31
DRIVER = -1
AGGREGATOR_SENDER = -2


class TransportError(ValueError):
    """A malformed frame, or a frame that does not fit what the receiver expects."""


class FrameKind(IntEnum):
    CONTROL = 1          # driver -> server command (JSON)
    REPLY = 2            # server -> driver reply (JSON)
    SHAMIR_SHARES = 3    # client -> server: one Shamir share vector
    ADDITIVE_MASKED = 4  # client -> server 0: x - sum_j PRG(seed_j)
    ADDITIVE_SEED = 5    # client -> server j >= 1: 16-byte PRG seed
    MODEL = 6            # FL aggregator -> client: the serialised model
    CHOICE = 7           # FL client -> aggregator: a candidate index
    SECAGG = 8           # a SecAgg+ message (its own header inside) either way
    OPENED_SUM = 9       # MPC server -> FL aggregator: an opened sum (fixed-width elements)


def phase_code(phase: str) -> int:
    try:
        return PHASES.index(phase)
    except ValueError:
        raise TransportError(f"unknown phase {phase!r}; expected one of {PHASES}") from None


@dataclass(frozen=True)
class Frame:
    kind: FrameKind
    sender: int
    round: int
    phase: str
    payload: bytes

    @property
    def nbytes(self) -> int:
        """Bytes on the wire for this frame: header + payload."""
        return FRAME_HEADER_BYTES + len(self.payload)

    def encode(self) -> bytes:
        if len(self.payload) >= MAX_PAYLOAD:
            raise TransportError(f"payload of {len(self.payload)} bytes is too large for a frame")
        return FRAME_HEADER.pack(len(self.payload), int(self.kind), self.sender, self.round,
                                 phase_code(self.phase)) + self.payload


def parse_header(head: bytes) -> tuple[int, FrameKind, int, int, str]:
    """(payload size, kind, sender, round, phase) of a frame's 14-byte header."""
    size, kind, sender, rnd, code = FRAME_HEADER.unpack(head)
    try:
        kind_ = FrameKind(kind)
    except ValueError:
        raise TransportError(f"unknown frame kind {kind}") from None
    if code >= len(PHASES):
        raise TransportError(f"unknown phase code {code}")
    return size, kind_, sender, rnd, PHASES[code]


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf.extend(chunk)
    return bytes(buf)


def read_frame_sync(sock: socket.socket) -> Frame:
    """Blocking read of one frame (the socket's own timeout applies to each recv)."""
    size, kind, sender, rnd, phase = parse_header(_recv_exactly(sock, FRAME_HEADER_BYTES))
    return Frame(kind, sender, rnd, phase, _recv_exactly(sock, size))


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """Read one frame from an asyncio stream (raises IncompleteReadError at EOF)."""
    size, kind, sender, rnd, phase = parse_header(await reader.readexactly(FRAME_HEADER_BYTES))
    return Frame(kind, sender, rnd, phase, await reader.readexactly(size))


# ---- fixed-width field elements ---------------------------------------------------------------

def element_bytes(modulus: int) -> int:
    """Bytes per field element on the wire: ceil(bit_length(p) / 8)."""
    return (int(modulus).bit_length() + 7) // 8


def encode_elements(values: np.ndarray, width: int) -> bytes:
    """Little-endian fixed-width bytes of non-negative integers ``0 <= v < 256**width``."""
    values = np.asarray(values).reshape(-1)
    if width <= 8:
        words = values.astype(np.uint64).astype("<u8")
        return words.view(np.uint8).reshape(-1, 8)[:, :width].tobytes()
    return b"".join(int(v).to_bytes(width, "little") for v in values)


def decode_elements(buf: bytes, width: int) -> np.ndarray:
    """Inverse of :func:`encode_elements`: an object array of Python ints."""
    if len(buf) % width:
        raise TransportError(f"{len(buf)} bytes is not a whole number of {width}-byte elements")
    n = len(buf) // width
    if width <= 8:
        raw = np.zeros((n, 8), dtype=np.uint8)
        raw[:, :width] = np.frombuffer(buf, dtype=np.uint8).reshape(n, width)
        return raw.view("<u8").reshape(n).astype(object)
    return np.array([int.from_bytes(buf[i * width:(i + 1) * width], "little")
                     for i in range(n)], dtype=object)


# ---- JSON payloads for control frames ---------------------------------------------------------

# Numeric arrays travel as their raw little-endian bytes (base64): DistAIM's score command
# carries the model's public marginal over every candidate cell (2.9 M floats a round on
# Adult), and writing them as JSON numbers cost the driver ~3 s per server per round.
_RAW_KINDS = "biuf"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        if o.dtype.kind in _RAW_KINDS:
            le = o.astype(o.dtype.newbyteorder("<"), copy=False)
            return {"__ndarray_raw__": base64.b64encode(np.ascontiguousarray(le).tobytes()).decode(),
                    "dtype": le.dtype.str, "shape": list(o.shape)}
        dtype = o.dtype.str if o.dtype != object else "object"
        return {"__ndarray__": o.tolist(), "dtype": dtype, "shape": list(o.shape)}
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (bytes, bytearray)):
        return {"__bytes__": bytes(o).hex()}
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"cannot send {type(o).__name__} in a control message")


def _json_hook(d: dict[str, Any]) -> Any:
    if "__ndarray_raw__" in d:
        dtype = np.dtype(d["dtype"])
        if dtype.kind not in _RAW_KINDS:  # only plain numbers: never objects from the wire
            raise TransportError(f"control message carries an array of dtype {dtype}")
        raw = base64.b64decode(d["__ndarray_raw__"], validate=True)
        shape = [int(n) for n in d["shape"]]
        if len(raw) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise TransportError(f"array of shape {shape} and dtype {dtype} cannot hold "
                                 f"{len(raw)} bytes")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if "__ndarray__" in d:
        dtype = None if d["dtype"] == "object" else d["dtype"]
        return np.array(d["__ndarray__"], dtype=dtype if dtype else object).reshape(d["shape"])
    if "__bytes__" in d:
        return bytes.fromhex(d["__bytes__"])
    return d


def dumps(obj: Any) -> bytes:
    """JSON (not pickle: a control port must not execute what it receives) with numpy arrays."""
    return json.dumps(obj, default=_json_default).encode()


def loads(buf: bytes) -> Any:
    return json.loads(buf.decode(), object_hook=_json_hook)


# ---- the client side ----------------------------------------------------------------------------

def add_wire_flows(ledger: Ledger, frames: Iterable[tuple[int, str, str, str, int]],
                   rounds: Mapping[tuple[int, str, str, str], int] | None = None) -> None:
    """One ``wire`` row per (round, phase, sender, receiver) of the frames
    ``(round, phase, sender, receiver, nbytes)``: their bytes and their count; ``rounds``
    gives a row's ``comm_rounds`` (:mod:`flaimsim.parties.rounds`)."""
    agg: dict[tuple[int, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for rnd, phase, snd, rcv, nbytes in frames:
        a = agg[(rnd, phase, snd, rcv)]
        a[0] += nbytes
        a[1] += 1
    for key, (nbytes, count) in sorted(agg.items()):
        ledger.add(*key, nbytes, count, "wire", (rounds or {}).get(key, 0))


@dataclass(frozen=True)
class SentFrame:
    sender: int
    receiver: int
    round: int
    phase: str
    nbytes: int


class ClientTransport:
    """Frames from (simulated) clients to the m servers, one TCP connection per server.

    Clients in the driver process share the connections (frames carry the client id); a lock
    per server keeps frames whole when clients send from several threads. Every frame sent is
    logged with its exact size.
    """

    def __init__(self, addresses: Sequence[tuple[str, int]], timeout: float = 30.0,
                 network: Any = None) -> None:
        self.addresses = list(addresses)
        self.timeout = timeout
        # Emulated links (flaimsim.parties.netem): one connection per (client, server), each
        # on its own link, instead of one shared connection per server.
        self.network = network
        self._socks: dict[tuple[int, int], socket.socket] = {}
        self._locks = [threading.Lock() for _ in self.addresses]
        self._log_lock = threading.Lock()
        self.log: list[SentFrame] = []
        self._flushed = 0

    def _sock(self, i: int, sender: int) -> socket.socket:
        key = (i, sender if self.network is not None else DRIVER)
        if key not in self._socks:
            address = self.addresses[i]
            if self.network is not None:
                from flaimsim.parties.netem import emulator

                address = emulator(self.network).route(client(sender), server(i), address)
            s = socket.create_connection(address, timeout=self.timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socks[key] = s
        return self._socks[key]

    def send(self, sender: int, receiver: int, kind: FrameKind, round: int, phase: str,
             payload: bytes) -> int:
        """Send one frame to server ``receiver``; return the bytes it took on the wire."""
        if not 0 <= receiver < len(self.addresses):
            raise TransportError(f"no server {receiver} (m = {len(self.addresses)})")
        frame = Frame(kind, sender, round, phase, payload)
        data = frame.encode()
        with self._locks[receiver]:
            self._sock(receiver, sender).sendall(data)
        with self._log_lock:
            self.log.append(SentFrame(sender, receiver, round, phase, len(data)))
        return len(data)

    def bytes_by_sender(self, round: int | None = None, phase: str | None = None
                        ) -> dict[int, int]:
        out: dict[int, int] = defaultdict(int)
        for f in self.log:
            if (round is None or f.round == round) and (phase is None or f.phase == phase):
                out[f.sender] += f.nbytes
        return dict(out)

    def flush_to_ledger(self, ledger: Ledger) -> None:
        """Add the frames sent since the last flush, one row per (client, server, round, phase).

        Rows carry bytes and frame counts with source ``wire``; each frame is written once.
        Clients send without having received anything (stamp 1), and a flush covers one
        upload step: one communication round per (round, phase) flushed.
        """
        with self._log_lock:
            frames, self._flushed = self.log[self._flushed:], len(self.log)
        rows = [(f.round, f.phase, client(f.sender), server(f.receiver), f.nbytes)
                for f in frames]
        add_wire_flows(ledger, rows, block_charge((*r[:4], 1) for r in rows))

    def close(self) -> None:
        for s in self._socks.values():
            try:
                s.close()
            except OSError:
                pass
        self._socks.clear()

    def __enter__(self) -> "ClientTransport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- party ids in frame headers, and the logs that count frames ---------------------------------

def sender_id(name: str) -> int:
    """The frame header's sender field for a party name (client k -> k)."""
    kind = party_kind(name)
    if kind == "client":
        return int(name.split(":", 1)[1])
    if kind == "aggregator":
        return AGGREGATOR_SENDER
    return -3 - int(name.split(":", 1)[1])


def sender_name(sid: int) -> str:
    """Inverse of :func:`sender_id`."""
    if sid >= 0:
        return client(sid)
    if sid == AGGREGATOR_SENDER:
        return AGGREGATOR
    if sid <= -3:
        return server(-3 - sid)
    raise TransportError(f"frame sender {sid} is not a party")


@dataclass(frozen=True)
class WireRecord:
    """One frame as counted by one side: where it was written (sender side) or read."""

    sender: str
    receiver: str
    round: int
    phase: str
    kind: str
    nbytes: int
    stamp: int = 0   # logical round (flaimsim.parties.rounds)


class WireLog:
    """A thread-safe list of :class:`WireRecord`; flushes to a ledger as ``wire`` rows."""

    def __init__(self, clocks: LamportClocks | None = None) -> None:
        self._lock = threading.Lock()
        self.records: list[WireRecord] = []
        self._flushed = 0
        self.clocks = clocks   # None: every flush is a step of its own
        self.deepest = 0       # the highest stamp appended so far

    def append(self, rec: WireRecord) -> None:
        with self._lock:
            self.records.append(rec)
            self.deepest = max(self.deepest, rec.stamp)

    def totals(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """(phase, sender, receiver) -> (bytes, frames) over every record."""
        with self._lock:
            recs = list(self.records)
        return _totals(recs)

    def flush_to_ledger(self, ledger: Ledger) -> None:
        """Add the records since the last flush, one ``wire`` row per
        (round, phase, sender, receiver); each frame is written to a ledger once. The
        records' stamps give ``comm_rounds``: with ``clocks``, what each message deepened the
        run by; without, each flush is one step (its whole depth)."""
        with self._lock:
            recs, self._flushed = self.records[self._flushed:], len(self.records)
        stamped = [(r.round, r.phase, r.sender, r.receiver, r.stamp) for r in recs]
        rounds = self.clocks.charge(stamped) if self.clocks else block_charge(stamped)
        add_wire_flows(ledger, ((r.round, r.phase, r.sender, r.receiver, r.nbytes)
                                for r in recs), rounds)


def _totals(recs: Iterable[WireRecord]) -> dict[tuple[str, str, str], tuple[int, int]]:
    out: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in recs:
        a = out[(r.phase, r.sender, r.receiver)]
        a[0] += r.nbytes
        a[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}
