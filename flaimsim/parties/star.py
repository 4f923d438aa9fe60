"""FLAIM's network: the aggregator and its clients, one loopback TCP connection per client.

Owns :class:`StarNetwork`, the star every FLAIM message crosses (model broadcast, choices,
SecAgg+), and its reader thread. Frames, their header and the ``wire`` logs it counts in come
from :mod:`flaimsim.parties.transport`; a message's bytes are charged where the sender wrote
them (``sent``) and counted again where they were read (``received``). Logical rounds
(:class:`~flaimsim.parties.rounds.LamportClocks`) ride out of band, never on the wire.
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from flaimsim.parties.ledger import AGGREGATOR, Ledger, party_kind
from flaimsim.parties.rounds import LamportClocks
from flaimsim.parties.transport import (FRAME_HEADER_BYTES, Frame, FrameKind, TransportError,
                                        WireLog, WireRecord, parse_header, sender_id,
                                        sender_name)


@dataclass
class _Endpoint:
    """One end of a TCP connection: who reads here, who is at the other end, what is buffered."""

    owner: str
    peer: str
    sock: socket.socket
    buffer: bytearray


class StarNetwork:
    """FLAIM's network: one loopback TCP connection per client to the aggregator.

    Every message is a :class:`Frame` written with ``sendall`` by the sending party; the bytes
    charged (``sent`` log, and the ledger) are counted at that write. A reader thread drains
    every socket into the receiving party's inbox and counts, independently, the bytes it read
    (``received`` log), so a test can compare the two sides. Clients are threads of this
    process; :meth:`receive` waits until every frame written to a party so far has been read
    from its socket. Only the aggregator talks to clients (a client->client message is routed
    by the aggregator, as in SecAgg+). Connections open on first use.
    """

    def __init__(self, timeout: float = 120.0, network: Any = None) -> None:
        self.timeout = timeout
        self.network = network   # emulated links (flaimsim.parties.netem), or None
        self.clocks = LamportClocks()   # logical rounds, kept out of band (never on the wire)
        self.sent = WireLog(self.clocks)
        self.received = WireLog()
        self._stamps: dict[tuple[str, str], deque[int]] = defaultdict(deque)  # in write order
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(timeout)   # a connection that never comes is an error
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._ends: dict[tuple[str, str], _Endpoint] = {}   # (writer, reader) -> writer's end
        self._send_locks: dict[tuple[str, str], threading.Lock] = {}
        self._connect_lock = threading.Lock()
        self._cond = threading.Condition()
        self._inbox: dict[str, list[tuple[Frame, int]]] = defaultdict(list)  # with stamps
        self._frames_to: dict[str, int] = defaultdict(int)     # written, per receiver
        self._frames_read: dict[str, int] = defaultdict(int)   # read, per receiver
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._read_loop, name="star-network",
                                        daemon=True)
        self._thread.start()

    # ---- connections ---------------------------------------------------------------------
    def _connect(self, name: str) -> None:
        with self._connect_lock:
            if (name, AGGREGATOR) in self._ends:
                return
            address = self._listener.getsockname()
            if self.network is not None:   # the leaf reaches the hub through its link's relay
                from flaimsim.parties.netem import emulator

                address = emulator(self.network).route(name, AGGREGATOR, address)
            leaf = socket.create_connection(address, timeout=self.timeout)
            hub, _ = self._listener.accept()
            for s in (leaf, hub):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(self.timeout)
            leaf_end = _Endpoint(name, AGGREGATOR, leaf, bytearray())
            hub_end = _Endpoint(AGGREGATOR, name, hub, bytearray())
            self._ends[(name, AGGREGATOR)] = leaf_end
            self._ends[(AGGREGATOR, name)] = hub_end
            self._send_locks[(name, AGGREGATOR)] = threading.Lock()
            self._send_locks[(AGGREGATOR, name)] = threading.Lock()
            for end in (leaf_end, hub_end):
                self._selector.register(end.sock, selectors.EVENT_READ, end)
            self._wake_w.send(b"x")  # let the reader thread pick up the new sockets

    def _end(self, sender: str, receiver: str) -> _Endpoint:
        if AGGREGATOR not in (sender, receiver) or sender == receiver:
            raise TransportError(f"no link {sender} -> {receiver}: clients talk only to "
                                 "the aggregator")
        leaf = receiver if sender == AGGREGATOR else sender
        if party_kind(leaf) != "client":
            raise TransportError(f"{leaf} is not a client")
        if (sender, receiver) not in self._ends:
            self._connect(leaf)
        return self._ends[(sender, receiver)]

    # ---- sending and receiving -------------------------------------------------------------
    def send(self, sender: str, receiver: str, kind: FrameKind, round: int, phase: str,
             payload: bytes) -> int:
        """Write one frame from ``sender`` to ``receiver``; return its bytes on the wire."""
        self._raise_if_failed()
        end = self._end(sender, receiver)
        data = Frame(kind, sender_id(sender), round, phase, payload).encode()
        stamp = self.clocks.send(sender)
        with self._cond:
            self._frames_to[receiver] += 1
        with self._send_locks[(sender, receiver)]:
            with self._cond:   # the k-th frame written on a link is the k-th read from it
                self._stamps[(sender, receiver)].append(stamp)
            end.sock.sendall(data)  # a timeout socket: the OS end is non-blocking
        self.sent.append(WireRecord(sender, receiver, round, phase, kind.name, len(data), stamp))
        return len(data)

    def receive(self, party: str, kind: FrameKind | None = None) -> list[Frame]:
        """Every frame written to ``party`` so far (of ``kind``, if given), in arrival order;
        waits until they have all been read from its socket(s)."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._error is not None
                or self._frames_read[party] >= self._frames_to[party], self.timeout)
            self._raise_if_failed()
            if not ok:
                raise TransportError(f"{party}: {self._frames_to[party]} frame(s) sent, only "
                                     f"{self._frames_read[party]} arrived in {self.timeout} s")
            box = self._inbox[party]
            out = [(f, st) for f, st in box if kind is None or f.kind == kind]
            self._inbox[party] = [(f, st) for f, st in box
                                  if not (kind is None or f.kind == kind)]
        for f, st in out:   # the party has now received them: its clock moves
            self.clocks.take(party, st)
        return [f for f, _ in out]

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise TransportError(f"the network's reader failed: {self._error}") from self._error

    # ---- the reader thread -----------------------------------------------------------------
    def _read_loop(self) -> None:
        try:
            while not self._closed:
                for key, _ in self._selector.select(timeout=1.0):
                    end = key.data
                    if end is None:
                        self._wake_r.recv(4096)
                        continue
                    try:
                        chunk = end.sock.recv(1 << 20)
                    except (BlockingIOError, InterruptedError, socket.timeout):
                        continue
                    if not chunk:
                        self._selector.unregister(end.sock)
                        continue
                    end.buffer.extend(chunk)
                    self._parse(end)
        except BaseException as exc:  # surfaced to the next send/receive
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _parse(self, end: _Endpoint) -> None:
        buf = end.buffer
        frames = []
        while len(buf) >= FRAME_HEADER_BYTES:
            size, kind, sid, rnd, phase = parse_header(bytes(buf[:FRAME_HEADER_BYTES]))
            if len(buf) < FRAME_HEADER_BYTES + size:
                break
            payload = bytes(buf[FRAME_HEADER_BYTES:FRAME_HEADER_BYTES + size])
            del buf[:FRAME_HEADER_BYTES + size]
            frame = Frame(kind, sid, rnd, phase, payload)
            if sender_name(sid) != end.peer:
                raise TransportError(f"{end.owner}: a frame from {sender_name(sid)} arrived on "
                                     f"the connection to {end.peer}")
            with self._cond:
                stamp = self._stamps[(end.peer, end.owner)].popleft()
            self.received.append(WireRecord(end.peer, end.owner, rnd, phase, kind.name,
                                            frame.nbytes, stamp))
            frames.append((frame, stamp))
        if frames:
            with self._cond:
                self._inbox[end.owner].extend(frames)
                self._frames_read[end.owner] += len(frames)
                self._cond.notify_all()

    # ---- the ledger and shutting down --------------------------------------------------------
    def flush_to_ledger(self, ledger: Ledger) -> None:
        """The sender-side counts since the last flush, as ``wire`` rows."""
        self.sent.flush_to_ledger(ledger)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(timeout=5)
        for end in self._ends.values():
            try:
                end.sock.close()
            except OSError:
                pass
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()
        self._selector.close()

    def __enter__(self) -> "StarNetwork":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
