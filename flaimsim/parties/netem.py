"""Links emulated in user space: a relay process that delays every byte of a TCP connection
as a link of given latency and bandwidth would.

This kernel has no ``netem``, so the protocol's sockets are routed through relays instead.
A *route* is a listening port of the relay process that stands for one party's connections to
one target address: ``route(src, dst, (host, port))`` returns an address; a socket that
``src`` opens to it is joined to a fresh connection to ``(host, port)``, and both directions
are relayed, ``src → dst`` on link (src, dst) and the replies on link (dst, src). The relay
accepts at once and keeps trying the target for ``connect_wait_s`` (MPyC parties start in any
order and retry their connects; through a relay the retrying is the relay's), then resets the
connector.

Timing of one chunk of n bytes read by the relay at time t (all times ``time.monotonic``)::

    per="link":   start = max(t, free[src→dst]);  done = start + 8nF/B;  free[src→dst] = done
    per="party":  up   = max(t, free_up[src]) + 8nF/B;                 free_up[src] = up
                  done = max(up, max(t, free_down[dst]) + 8nF/B);      free_down[dst] = done
    delivered at  done + L

(F = ``links.TCP_FRAMING``: the TCP/IP headers a real link carries with the payload), so a
chunk arrives no sooner than the one-way latency L after it was sent and no sooner than
the link (or the sender's uplink and the receiver's downlink) can carry it, behind everything
sent on it before. Chunks are at most ``chunk_bytes(B)`` (≈ 1 ms of serialisation), so a
message's last byte is held back at most that long by the next one's first. Within a direction, bytes
keep their order; EOF (half-close) is delivered after the data, and a reset on one side
aborts the other. The relay buffers without bound (no back-pressure window): a sender's
writes complete at loopback speed, as on a link with a large socket buffer. Connection set-up
(the TCP handshake) is not delayed; every message after it is.

The relay runs in its own process (``python -m flaimsim.parties.netem``) so that its timers do
not wait for the driver's Python: it reads one JSON command per line on stdin and answers one
JSON line on stdout, and exits when stdin closes (its parent has gone). Bytes are counted per
directed link as they are relayed (``stats``), so a test can check that nothing was lost.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import resource
import select
import selectors
import socket
import subprocess
import sys
import threading
from collections import defaultdict
from typing import Any, Literal, Protocol

from flaimsim.parties.links import TCP_FRAMING

MIN_CHUNK, MAX_CHUNK = 4096, 65536


class LinkSpec(Protocol):
    """What the emulator needs of a network (:class:`flaimsim.parties.links.Network`)."""

    @property
    def latency_s(self) -> float: ...

    @property
    def bandwidth_bps(self) -> float: ...

    @property
    def per(self) -> Literal["link", "party"]: ...


class EmulatorError(RuntimeError):
    """The relay process failed or refused a command."""


def chunk_bytes(bandwidth_bps: float) -> int:
    """Largest chunk relayed at once: about 1 ms on the link, within 4..64 KiB (smaller
    chunks cost the relay more time per byte than a WAN link's bandwidth allows)."""
    return int(min(MAX_CHUNK, max(MIN_CHUNK, bandwidth_bps / 8 * 1e-3)))


class LinkClock:
    """When each chunk may be delivered (module docstring); one per relay process."""

    def __init__(self, latency_s: float, bandwidth_bps: float, per: str) -> None:
        self.latency_s, self.bandwidth_bps, self.per = latency_s, bandwidth_bps, per
        self.free: dict[tuple[str, str], float] = defaultdict(float)
        self.up: dict[str, float] = defaultdict(float)
        self.down: dict[str, float] = defaultdict(float)
        self.relayed: dict[tuple[str, str], int] = defaultdict(int)

    def deliver_at(self, src: str, dst: str, nbytes: int, now: float) -> float:
        tx = 8.0 * nbytes * TCP_FRAMING / self.bandwidth_bps
        self.relayed[(src, dst)] += nbytes
        if self.per == "link":
            done = max(now, self.free[(src, dst)]) + tx
            self.free[(src, dst)] = done
        else:
            up = max(now, self.up[src]) + tx
            self.up[src] = up
            done = max(up, max(now, self.down[dst]) + tx)
            self.down[dst] = done
        return done + self.latency_s


_EOF, _ABORT = object(), object()


class PreciseEpollSelector(selectors.EpollSelector):
    """epoll with microsecond timeouts, so that a relay's timers fire when they are due.

    ``epoll.poll`` rounds its timeout up to whole milliseconds, so every asyncio timer
    (``asyncio.sleep(0.0005)``) wakes at the next millisecond boundary or later: a 0.5 ms LAN
    hop took 1.2–1.4 ms (ping-pong through the relay, 2026-12-05). Waiting first in
    ``select.select`` on the epoll descriptor itself (readable when any registered socket is
    ready; its timeout is a ``timeval``) and then collecting the events with a zero timeout
    keeps the wakeup within the kernel's timer slack (~50 µs).
    """

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            try:
                select.select([self._selector.fileno()], [], [], timeout)
            except InterruptedError:
                pass
            timeout = 0
        return super().select(timeout)


class RelayHub:
    """The relay process's routes and connections (asyncio; one event loop)."""

    def __init__(self, clock: LinkClock, host: str = "127.0.0.1",
                 connect_wait_s: float = 60.0) -> None:
        self.clock, self.host, self.connect_wait_s = clock, host, connect_wait_s
        self.chunk = chunk_bytes(clock.bandwidth_bps)
        self.servers: list[asyncio.AbstractServer] = []

    async def add_route(self, src: str, dst: str, target: tuple[str, int]) -> tuple[str, int]:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._join(reader, writer, src, dst, target)

        server = await asyncio.start_server(accepted, self.host, 0)
        self.servers.append(server)
        return self.host, int(server.sockets[0].getsockname()[1])

    async def _join(self, a_reader: asyncio.StreamReader, a_writer: asyncio.StreamWriter,
                    src: str, dst: str, target: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_wait_s
        while True:   # the far end may not listen yet (MPyC parties start in any order)
            try:
                b_reader, b_writer = await asyncio.open_connection(*target)
                break
            except OSError:
                if loop.time() >= deadline:
                    a_writer.transport.abort()   # the connector sees a reset
                    return
                await asyncio.sleep(0.05)
        for w in (a_writer, b_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(self._pipe(a_reader, b_writer, a_writer, src, dst),
                             self._pipe(b_reader, a_writer, b_writer, dst, src))
        for w in (a_writer, b_writer):
            w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    source: asyncio.StreamWriter, src: str, dst: str) -> None:
        """Relay one direction: read chunks, deliver each at its time, in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        deliver = asyncio.ensure_future(self._deliver(queue, writer, source))
        last = 0.0
        try:
            while True:
                try:
                    data = await reader.read(self.chunk)
                except (ConnectionError, OSError):
                    queue.put_nowait((loop.time(), _ABORT))
                    break
                now = loop.time()
                if not data:
                    queue.put_nowait((max(last, now + self.clock.latency_s), _EOF))
                    break
                last = self.clock.deliver_at(src, dst, len(data), now)
                queue.put_nowait((last, data))
        finally:
            await deliver

    @staticmethod
    async def _deliver(queue: "asyncio.Queue[tuple[float, Any]]", writer: asyncio.StreamWriter,
                       source: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            at, item = await queue.get()
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if item is _ABORT:
                    writer.transport.abort()
                    return
                if item is _EOF:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(item)
                await writer.drain()
            except (ConnectionError, OSError):
                source.transport.abort()   # the receiver is gone: the sender sees a reset
                return

    async def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd.get("op") == "route":
            host, port = await self.add_route(str(cmd["src"]), str(cmd["dst"]),
                                              (str(cmd["host"]), int(cmd["port"])))
            return {"ok": True, "host": host, "port": port}
        if cmd.get("op") == "stats":
            return {"ok": True, "relayed": [[s, d, n] for (s, d), n in
                                            sorted(self.clock.relayed.items())]}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


def _raise_fd_limit() -> None:
    """Every route holds a listener and two sockets per connection: use the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def serve(latency_s: float, bandwidth_bps: float, per: str, host: str = "127.0.0.1",
          connect_wait_s: float = 60.0) -> None:
    """The relay process: commands on stdin, answers on stdout, until stdin closes."""
    _raise_fd_limit()
    loop = asyncio.SelectorEventLoop(PreciseEpollSelector())
    hub = RelayHub(LinkClock(latency_s, bandwidth_bps, per), host, connect_wait_s)

    def read_commands() -> None:
        for line in sys.stdin:
            try:
                cmd = json.loads(line)
                reply = asyncio.run_coroutine_threadsafe(hub.command(cmd), loop).result()
            except Exception as exc:  # noqa: BLE001 - answered, the relay keeps running
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=read_commands, name="netem-commands", daemon=True).start()
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    loop.run_forever()
    sys.stdout.flush()
    os._exit(0)   # the parent is gone: drop the open connections without ceremony


class LinkEmulator:
    """The driver's handle on one relay process for one network (see module docstring)."""

    def __init__(self, network: LinkSpec, host: str = "127.0.0.1",
                 python: str = sys.executable, connect_wait_s: float = 60.0) -> None:
        self.network, self.host = network, host
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str, tuple[str, int]], tuple[str, int]] = {}
        self.proc = subprocess.Popen(
            [python, "-m", "flaimsim.parties.netem", str(network.latency_s),
             str(network.bandwidth_bps), str(network.per), host, str(connect_wait_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._ask(None)   # the ready line

    def _ask(self, cmd: dict[str, Any] | None) -> dict[str, Any]:
        with self._lock:
            if self.proc.poll() is not None:
                raise EmulatorError(f"the link emulator (pid {self.proc.pid}) exited with "
                                    f"code {self.proc.returncode}")
            assert self.proc.stdin is not None and self.proc.stdout is not None
            if cmd is not None:
                self.proc.stdin.write(json.dumps(cmd) + "\n")
                self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise EmulatorError(f"the link emulator (pid {self.proc.pid}) stopped answering")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise EmulatorError(f"link emulator: {reply.get('error')}")
        return reply

    def route(self, src: str, dst: str, target: tuple[str, int]) -> tuple[str, int]:
        """The address ``src`` connects to instead of ``target`` (party ``dst``); one per
        (src, dst, target), made on first use."""
        key = (src, dst, (str(target[0]), int(target[1])))
        if key not in self._routes:
            r = self._ask({"op": "route", "src": src, "dst": dst, "host": key[2][0],
                           "port": key[2][1]})
            self._routes[key] = (r["host"], int(r["port"]))
        return self._routes[key]

    def connect(self, src: str, dst: str, target: tuple[str, int],
                timeout: float | None = None) -> socket.socket:
        """A socket from ``src`` to ``target`` over the emulated link (TCP_NODELAY)."""
        s = socket.create_connection(self.route(src, dst, target), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def relayed(self) -> dict[tuple[str, str], int]:
        """Bytes relayed so far per directed link (src, dst)."""
        return {(s, d): int(n) for s, d, n in self._ask({"op": "stats"})["relayed"]}

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if _EMULATORS.get(self.network) is self:
            del _EMULATORS[self.network]

    def __enter__(self) -> "LinkEmulator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_EMULATORS: dict[Any, LinkEmulator] = {}


def emulator(network: LinkSpec) -> LinkEmulator:
    """This process's relay for ``network`` (one per network: links are shared by every
    socket of a run, so a party's connections share its uplink), started on first use."""
    em = _EMULATORS.get(network)
    if em is None or em.proc.poll() is not None:
        em = _EMULATORS[network] = LinkEmulator(network)
    return em


@atexit.register
def close_emulators() -> None:
    for em in list(_EMULATORS.values()):
        em.close()
    _EMULATORS.clear()


if __name__ == "__main__":
    serve(float(sys.argv[1]), float(sys.argv[2]), sys.argv[3],
          sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1",
          float(sys.argv[5]) if len(sys.argv) > 5 else 60.0)
