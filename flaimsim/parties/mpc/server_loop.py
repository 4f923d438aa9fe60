"""The compute server's main loop: MPyC start-up, the control connection, and the watchdogs.

:mod:`flaimsim.parties.mpc.server` owns the commands and the server's state; this module runs
them one after another for one driver session after another (see that module's docstring for
the command line, the exit codes and sessions); it is the program that runs
(``python -m flaimsim.parties.mpc.server_loop``). The watchdogs make a server leave by itself
(``os._exit``, without waiting for MPyC's pending work) when its driver or an MPyC peer
disconnects mid-session, or when one command overruns ``--command-timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import os
import sys
import traceback
from hashlib import sha1, sha256
from typing import Any

from flaimsim.parties.mpc import vector_resharing, wire
from flaimsim.parties.mpc.addresses import parse_address
from flaimsim.parties.mpc.server import (
    COMMANDS, EXIT_COMMAND_TIMEOUT, EXIT_DRIVER_LOST, EXIT_PEER_LOST, EXIT_PEERS_DIFFER,
    EXIT_PORT_IN_USE, EXIT_START_TIMEOUT, OPENINGS, CommandError, ServerState, log)
from flaimsim.parties.transport import Frame, FrameKind, TransportError, dumps, loads, read_frame


def _hop(a: Any) -> int:
    """MPyC's portable program-counter hop for ``--mix32-64bit`` (same as mpyc.runtime.setup)."""
    return int.from_bytes(sha1(str(a).encode()).digest()[:8], "little", signed=True)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="flaimsim.parties.mpc.server_loop", add_help=False)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--control-host", default="127.0.0.1")
    ap.add_argument("--publish", default=None, metavar="HOST:PORT",
                    help="address clients send share frames to (default: the control address)")
    ap.add_argument("--connect-timeout", type=float, default=120.0,
                    help="exit if the MPyC peers are not all connected within this time")
    ap.add_argument("--idle-timeout", type=float, default=None,
                    help="exit after this long without a driver, before the first session "
                         "and between sessions (default: --connect-timeout; 0: for ever)")
    ap.add_argument("--command-timeout", type=float, default=3600.0,
                    help="exit if one command runs longer than this (0: no limit)")
    ap.add_argument("--compare-peers", default=None, metavar="H0:P0,H1:P1,...",
                    help="the list to compare with the peers' (default: the -P list); the "
                         "launcher passes its real addresses when -P routes through relays")
    ap.add_argument("--load", action="append", default=[],
                    help="import MODULE to register more commands")
    return ap.parse_args(argv)


async def _execute(state: ServerState, frame: Frame) -> bytes:
    req = loads(frame.payload)
    seq, name, kwargs = req["seq"], req["cmd"], req.get("kwargs", {})
    log(state, f"#{seq} {name}")
    OPENINGS.start_command(seq, name)
    try:
        fn = COMMANDS.get(name)
        if fn is None:
            raise CommandError(f"unknown command {name!r}; have {sorted(COMMANDS)}")
        reply = {"seq": seq, "ok": True, "result": await fn(state, **kwargs)}
    except Exception as exc:  # the driver decides; the traceback goes to stderr
        tb = traceback.format_exc()
        log(state, f"#{seq} {name} failed:\n{tb}")
        reply = {"seq": seq, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                 "traceback": tb}
    return Frame(FrameKind.REPLY, state.pid, 0, frame.phase, dumps(reply)).encode()


def peer_list_digest(addresses: list[str]) -> str:
    """The digest the servers compare right after MPyC connects: sha256 of the ``-P`` list."""
    return sha256("\n".join(addresses).encode()).hexdigest()[:16]


async def compare_peer_lists(mpc: Any, compared: list[str] | None = None) -> str | None:
    """Each server sends every other the digest of its ``--peers`` list (and the list, to
    name the difference) before any protocol work; the first party whose list differs from
    this server's, in words, or None. MPyC connects on a party's own entry and the entries
    above it only, so servers started with different lists can connect without noticing.
    ``compared``: the list to compare instead of the ``-P`` list (emulated links give each
    party its own ``-P`` list of relays)."""
    own = compared or [f"{p.host}:{p.port}" for p in mpc.parties]
    mine = peer_list_digest(own)
    for j, (digest, theirs) in enumerate(await mpc.transfer((mine, own))):
        if digest == mine:
            continue
        entries = [i for i in range(max(len(own), len(theirs)))
                   if own[i:i + 1] != theirs[i:i + 1]]
        where = "; ".join(f"party {i} is {(theirs[i:i + 1] or ['missing'])[0]} there, "
                          f"{(own[i:i + 1] or ['missing'])[0]} here" for i in entries)
        return (f"--peers differ: party {j} was started with {','.join(theirs)} (digest "
                f"{digest}), this server (party {mpc.pid}) with {','.join(own)} (digest "
                f"{mine}): {where}; start every server with the same --peers")
    return None


class _Watch:
    """Why this server must stop, set from connection callbacks while a command may be running."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.code = 0
        self.reason = ""

    def trip(self, code: int, reason: str) -> None:
        if not self.event.is_set():
            self.code, self.reason = code, reason
            self.event.set()


def _watch_peers(state: ServerState, watch: _Watch) -> None:
    """Make MPyC peer connections report an unexpected close (MPyC itself ignores a peer that
    closes cleanly, e.g. because it was killed, and would wait for it for ever)."""
    from mpyc import asyncoro

    base = asyncoro.MessageExchanger

    class WatchedExchanger(base):  # type: ignore[misc, valid-type]
        __slots__ = ()

        def connection_lost(self, exc: Exception | None) -> None:
            if not state.stopping and self.peer_pid is not None:
                watch.trip(EXIT_PEER_LOST, f"MPyC peer {self.peer_pid} disconnected ({exc})")
            try:
                super().connection_lost(exc)
            except Exception:  # MPyC re-raises exc in a callback; the watch handles it
                pass

    asyncoro.MessageExchanger = WatchedExchanger


async def _wait_or_trip(aw: "asyncio.Future[Any]", watch: _Watch, timeout: float | None
                        ) -> bool:
    """Wait for ``aw`` unless the watch trips or ``timeout`` passes; True if ``aw`` is done."""
    tripped = asyncio.ensure_future(watch.event.wait())
    try:
        done, _ = await asyncio.wait({aw, tripped}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        tripped.cancel()
    return aw in done


async def serve(mpc: Any, args: argparse.Namespace) -> int:
    """Listen for drivers and clients, start MPyC, run commands until ``shutdown``."""
    pid = int(mpc.pid)
    state = ServerState(mpc, mpc.SecInt(mpc.options.bit_length))
    state.publish = (parse_address(args.publish) if args.publish
                     else (args.control_host, args.control_port))
    queue: asyncio.Queue[Frame] = asyncio.Queue()
    control: list[asyncio.StreamWriter] = []  # the current session's driver, if any
    watch = _Watch()
    _watch_peers(state, watch)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        is_control = False
        try:
            while True:
                frame = await read_frame(reader)
                if frame.kind == FrameKind.CONTROL:
                    if control and control[0] is not writer:
                        raise TransportError("a second driver tried to connect")
                    if not control:
                        control.append(writer)
                    is_control = True
                    queue.put_nowait(frame)
                elif frame.kind in (FrameKind.SHAMIR_SHARES, FrameKind.ADDITIVE_MASKED,
                                    FrameKind.ADDITIVE_SEED):
                    state.inbox.put(frame)
                else:
                    raise TransportError(f"unexpected {frame.kind.name} frame")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except TransportError as exc:
            log(pid, f"dropping connection: {exc}")
        if is_control and control and control[0] is writer and not state.stopping:
            watch.trip(EXIT_DRIVER_LOST, "driver connection lost")  # mid-session
        writer.close()

    try:
        listener = await asyncio.start_server(on_connect, args.control_host, args.control_port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            log(pid, f"port in use: control port {args.control_port}")
            return EXIT_PORT_IN_USE
        raise
    log(pid, f"control on {args.control_host}:{args.control_port}, clients to "
             f"{state.publish[0]}:{state.publish[1]}; MPyC party {pid} of {len(mpc.parties)}, "
             f"t={mpc.threshold}")
    try:
        await asyncio.wait_for(mpc.start(), args.connect_timeout)
    except asyncio.TimeoutError:  # first: since Python 3.11 it is an OSError too
        log(pid, f"MPyC peers not connected within --connect-timeout {args.connect_timeout} s"
                 "; exiting")
        return EXIT_START_TIMEOUT
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            log(pid, f"port in use: MPyC port {mpc.parties[pid].port}")
            return EXIT_PORT_IN_USE
        raise
    try:
        compared = args.compare_peers.split(",") if args.compare_peers else None
        differ = await asyncio.wait_for(compare_peer_lists(mpc, compared),
                                        args.connect_timeout)
    except asyncio.TimeoutError:
        log(pid, f"the peers did not send their --peers digest within --connect-timeout "
                 f"{args.connect_timeout} s; exiting")
        return EXIT_START_TIMEOUT
    if differ:
        log(pid, f"{differ}; exiting")
        return EXIT_PEERS_DIFFER
    # the handshakes and the digests, before any protocol message (their round-log events
    # are the setup's, not the first step's)
    state.extras["setup_wire"] = wire.setup_counts(mpc)
    wire.drain_events(mpc)
    idle = args.connect_timeout if args.idle_timeout is None else args.idle_timeout
    wait_for_driver: float | None = idle  # the first driver too
    command_timeout = args.command_timeout or None
    while True:
        get = asyncio.ensure_future(queue.get())
        if not await _wait_or_trip(get, watch, wait_for_driver or None):
            get.cancel()
            if watch.event.is_set():
                log(pid, f"{watch.reason}; exiting")
                return watch.code
            log(pid, f"no driver command within {wait_for_driver} s; exiting")
            return EXIT_START_TIMEOUT
        wait_for_driver = None  # within a session the driver may pause as long as it likes
        frame = get.result()
        run = asyncio.ensure_future(_execute(state, frame))
        if not await _wait_or_trip(run, watch, command_timeout):
            if watch.event.is_set():
                log(pid, f"{watch.reason} during a command; exiting")
                return watch.code
            log(pid, f"a command ran longer than --command-timeout {command_timeout} s (an "
                     "option of `flaimsim serve`; `flaimsim run` sets it from --party-timeout)"
                     "; exiting")
            return EXIT_COMMAND_TIMEOUT
        writer = control[0]
        writer.write(run.result())
        await writer.drain()
        if state.stopping:
            break
        if state.releasing:  # the next driver starts a new session
            state.releasing = False
            control.clear()
            writer.close()
            wait_for_driver = idle
            log(pid, "session released; waiting for the next driver")
    try:  # MPyC's shutdown barrier waits for every peer: bounded, in case one died meanwhile
        await asyncio.wait_for(mpc.shutdown(), args.connect_timeout)
    except asyncio.TimeoutError:
        log(pid, f"peers did not shut down within {args.connect_timeout} s; exiting")
        return EXIT_PEER_LOST
    listener.close()
    log(pid, "shut down")
    return 0


def main() -> int:
    from mpyc import asyncoro
    from mpyc.runtime import mpc  # parses and strips MPyC's own options from sys.argv

    args = _parse_args(sys.argv[1:])
    if not mpc.options.mix32_64bit:  # fixed-width encoding: reproducible byte counts
        mpc.options.mix32_64bit = True
        asyncoro._hop = _hop
    OPENINGS.install(mpc)  # before any command module can hold a reference to output
    vector_resharing.install()
    for mod in args.load:
        importlib.import_module(mod)
    wire.install()
    from flaimsim.parties import sampler   # FLAIMSIM_SAMPLE_DIR: where the time goes

    samples = sampler.start_from_env(f"server{mpc.pid}")
    code = int(mpc.run(serve(mpc, args)))
    sampler.write(samples)
    sys.stdout.flush()
    sys.stderr.flush()
    if code:  # a watchdog fired: leave now, without waiting for MPyC's pending tasks or peers
        os._exit(code)
    return code


if __name__ == "__main__":
    # This module runs as __main__; the command modules (--load) register with the one
    # imported flaimsim.parties.mpc.server, whose COMMANDS the loop reads.
    sys.exit(main())
