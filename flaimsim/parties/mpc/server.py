"""The MPC compute server program: one MPyC party driven in lockstep over a control channel.

Run one process per party, here or on separate hosts::

    python -m flaimsim.parties.mpc.server_loop -P h0:p0 -P h1:p1 -P h2:p2 -I i \\
        --control-port N [--control-host 127.0.0.1] [--bit-length 32] [--load MODULE ...]

``-P``/``-I``/``-T``/``--bit-length`` are MPyC's own options (peers, own index, threshold,
SecInt bit length). Fixed-width encoding (``--mix32-64bit``) is always switched on so byte
counts are reproducible. The control port accepts two kinds of connection, both framed by
:mod:`flaimsim.parties.transport`: one driver connection sending JSON commands (one reply per
command), and client connections sending share frames into an inbox.

Commands run strictly one after another in arrival order; the driver sends every server the
same sequence, which keeps the MPyC program counters in step (MPyC requires it). A command is
an ``async def f(state, **kwargs)`` registered with ``@command("name")`` in :data:`COMMANDS`;
other modules (e.g. ``parties.distaim.server_commands``) register more by being imported, which
``--load MODULE`` does at start-up. Only ``open`` and ``open_to`` reveal a secret among the
built-in commands, and every opening is written to the reveal log. Independently of that log,
the program installs :class:`~flaimsim.parties.mpc.openings.OpeningCounter` on the runtime
at start-up: every ``runtime.output`` call made by any command is recorded with the command
running and the caller (command ``openings``), so a driver can check from outside what was
opened.

Adding a command (e.g. in a module passed with ``--load``, or ``ServerLauncher(load=[...])``)::

    from flaimsim.parties.mpc.server import CommandError, ServerState, command

    @command("double")
    async def double(state: ServerState, name: str, out: str) -> dict:
        y = 2 * state.array(name)          # secure arrays are held by name
        await state.runtime.gather(y)      # finish its traffic inside the command, so that
        state.arrays[out] = y              # counters taken around it charge the right phase
        return {"name": out}

Keyword arguments and results travel as JSON (numpy arrays allowed); ``timeout`` and
``per_party`` are reserved by the driver.

Watchdogs (no orphans): the process exits by itself if the driver's control connection drops
(also while a command runs; code 3), if an MPyC peer's connection drops outside shutdown
(code 5), if one command runs longer than ``--command-timeout`` seconds (code 6), if the
peers are not connected within ``--connect-timeout`` seconds or no driver comes within
``--idle-timeout`` (default: the connect timeout; code 4), if a peer was started with a
different ``--peers`` list (code 7: right after MPyC connects, the servers exchange a digest
of their lists and name the difference), and with code 98 and a message naming the port if a
port is in use.

Sessions: ``shutdown`` ends the process (the spawned mode). ``release`` ends one driver's
session and keeps MPyC connected for the next driver (``flaimsim serve``, servers on their own
hosts): the server forgets every array, inbox frame and reveal-log entry of the session, and
waits for the next driver. Clients send their share frames to ``--publish HOST:PORT``
(default: the control address), which ``ping`` reports.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import numpy as np

from flaimsim.parties.mpc import wire
from flaimsim.parties.mpc.input_sharing import (
    SEED_BYTES, compact_payload_bytes, expand_seed_bits, expand_seed_vector, sum_compact,
    unpack_bits, unwrap)
from flaimsim.parties.mpc.modp_vectors import ModpVector, sum_mod
from flaimsim.parties.mpc.openings import OpeningCounter
from flaimsim.parties.transport import Frame, FrameKind, element_bytes, encode_elements

EXIT_PORT_IN_USE = 98
EXIT_DRIVER_LOST = 3
EXIT_START_TIMEOUT = 4
EXIT_PEER_LOST = 5
EXIT_COMMAND_TIMEOUT = 6
EXIT_PEERS_DIFFER = 7

Command = Callable[..., Awaitable[Any]]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register ``async def f(state, **kwargs)`` as server command ``name``."""
    def register(fn: Command) -> Command:
        if name in COMMANDS and COMMANDS[name] is not fn:
            raise ValueError(f"server command {name!r} is already registered")
        COMMANDS[name] = fn
        return fn
    return register


OPENINGS = OpeningCounter()


class CommandError(ValueError):
    """A command called with arguments that do not fit the server's state."""


def log(state_or_pid: "ServerState | int", msg: str) -> None:
    pid = state_or_pid if isinstance(state_or_pid, int) else state_or_pid.pid
    print(f"[server {pid} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Inbox:
    """Client frames by (round, phase); commands wait for the frames they need."""

    def __init__(self) -> None:
        self.frames: dict[tuple[int, str], dict[int, Frame]] = {}
        self.duplicates: list[tuple[int, int, str]] = []
        self.bytes_from: dict[int, int] = {}
        self._changed = asyncio.Event()

    def put(self, frame: Frame) -> None:
        box = self.frames.setdefault((frame.round, frame.phase), {})
        if frame.sender in box:
            self.duplicates.append((frame.sender, frame.round, frame.phase))
        box[frame.sender] = frame
        self.bytes_from[frame.sender] = self.bytes_from.get(frame.sender, 0) + frame.nbytes
        self._changed.set()

    async def take(self, round: int, phase: str, senders: list[int],
                   timeout: float) -> dict[int, Frame]:
        """Remove and return one frame per sender, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            dup = [d for d in self.duplicates if d[1:] == (round, phase)]
            if dup:
                raise CommandError(f"clients sent twice in round {round}, phase {phase}: {dup}")
            box = self.frames.get((round, phase), {})
            missing = [k for k in senders if k not in box]
            if not missing:
                return {k: box.pop(k) for k in senders}
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandError(f"round {round} phase {phase}: no frames from clients "
                                   f"{missing[:10]}{'...' if len(missing) > 10 else ''}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass


@dataclass
class ServerState:
    """What one server holds between commands; secure arrays are kept by name."""

    runtime: Any
    secint: Any
    inbox: Inbox = field(default_factory=Inbox)
    arrays: dict[str, Any] = field(default_factory=dict)
    # additive pieces: name -> (piece, SecInt bit length, compact width b or None)
    additive: dict[str, tuple[np.ndarray, int, int | None]] = field(default_factory=dict)
    reveal_log: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # room for other command modules
    stopping: bool = False  # shutdown under way: peers closing is expected
    releasing: bool = False  # this session ends after the reply; the next driver may connect
    publish: tuple[str, int] | None = None  # where clients send share frames

    def reset_session(self) -> None:
        """Forget everything one driver's session left behind (``release``)."""
        self.inbox = Inbox()
        self.arrays.clear()
        self.additive.clear()
        self.reveal_log.clear()
        setup = self.extras.get("setup_wire")
        self.extras.clear()
        if setup is not None:  # the servers' connection handshakes: every session reports them
            self.extras["setup_wire"] = setup

    @property
    def pid(self) -> int:
        return int(self.runtime.pid)

    @property
    def m(self) -> int:
        return len(self.runtime.parties)

    @property
    def threshold(self) -> int:
        return int(self.runtime.threshold)

    @property
    def field(self) -> Any:
        return self.secint.field

    @property
    def modulus(self) -> int:
        return int(self.secint.field.modulus)

    def sectype(self, bit_length: int | None = None) -> Any:
        """SecInt of ``bit_length`` bits (default: the server's ``--bit-length``)."""
        if bit_length is None or int(bit_length) == self.secint.bit_length:
            return self.secint
        if int(bit_length) < 2:
            raise CommandError(f"bit length must be at least 2, got {bit_length}")
        return self.runtime.SecInt(int(bit_length))

    def array(self, name: str) -> Any:
        if name not in self.arrays:
            raise CommandError(f"no secure array named {name!r}; have {sorted(self.arrays)}")
        return self.arrays[name]


# ---- built-in commands -------------------------------------------------------------------------

def _field_info(secint: Any) -> dict[str, int]:
    p = int(secint.field.modulus)
    return {"bit_length": int(secint.bit_length), "modulus": p, "element_bytes": element_bytes(p)}


@command("field_info")
async def field_info(state: ServerState, bit_length: int | None = None) -> dict[str, int]:
    """Modulus and wire width of the field of SecInt(bit_length): clients share in it."""
    return _field_info(state.sectype(bit_length))


@command("ping")
async def ping(state: ServerState, sleep: float = 0.0) -> dict[str, Any]:
    """Who this server is and its field; ``sleep`` seconds first (to test watchdogs)."""
    if sleep:
        await asyncio.sleep(float(sleep))
    rt = state.runtime
    return {"pid": state.pid, "m": state.m, "threshold": state.threshold,
            **_field_info(state.secint), "mix32_64bit": bool(rt.options.mix32_64bit),
            "sec_param": int(rt.options.sec_param),
            "commands": sorted(COMMANDS), "os_pid": os.getpid(),
            "client_address": list(state.publish) if state.publish else None,
            "peers": [f"{p.host}:{p.port}" for p in rt.parties]}  # the --peers it started with


def _field_words(frame: Frame, width: int, p: int, client: int) -> ModpVector:
    """A frame of ``width``-byte field elements; an element ≥ p is a malformed upload."""
    words, below = ModpVector.from_bytes(frame.payload, width, p)
    if not below.all():
        raise CommandError(f"client {client}: {int(np.count_nonzero(~below))} share "
                           f"elements are not below the field's modulus")
    return words


@command("receive_shares")
async def receive_shares(state: ServerState, name: str, round: int, phase: str,
                         clients: list[int], mode: str, length: int,
                         bit_length: int | None = None, compact_bits: int | None = None,
                         wait_timeout: float = 60.0) -> dict[str, Any]:
    """Sum the clients' share frames of (round, phase) locally: no MPC traffic.

    ``shamir``: the sum of Shamir shares is this server's share of sum_k x_k, stored as secure
    array ``name`` of type SecInt(bit_length). ``additive``: the sum mod p is this server's
    additive piece, kept until ``to_shamir``. ``compact``: the same mod 2^compact_bits (server 0
    reads b-bit packed vectors, the others expand seeds). Clients must have shared in the field
    of that type (shamir, additive) or modulo 2^b (compact).
    """
    sectype = state.sectype(bit_length)
    frames = await state.inbox.take(int(round), phase, [int(k) for k in clients],
                                    float(wait_timeout))
    p = int(sectype.field.modulus)
    w = element_bytes(p)
    received = {"clients": len(frames), "bytes": sum(f.nbytes for f in frames.values())}
    if mode == "compact":
        if compact_bits is None:
            raise CommandError("compact shares need compact_bits")
        b = int(compact_bits)
        if state.pid == 0:
            size = compact_payload_bytes(length, b)
            kind, decode = FrameKind.ADDITIVE_MASKED, lambda f: unpack_bits(f.payload, b, length)
        else:
            size = SEED_BYTES
            kind, decode = FrameKind.ADDITIVE_SEED, lambda f: expand_seed_bits(f.payload, length, b)
        for k, f in frames.items():
            if f.kind != kind or len(f.payload) != size:
                raise CommandError(f"client {k}: expected {kind.name} of {size} bytes, "
                                   f"got {f.kind.name} of {len(f.payload)}")
        # one decoded vector at a time; frames are freed as they are read
        total = sum_compact((decode(frames.pop(k)) for k in list(frames)), b, length)
        state.additive[name] = (total, int(sectype.bit_length), b)
        return {"name": name, "length": int(length), **received}
    if mode == "shamir" or (mode == "additive" and state.pid == 0):
        kind = FrameKind.SHAMIR_SHARES if mode == "shamir" else FrameKind.ADDITIVE_MASKED
        for k, f in frames.items():
            if f.kind != kind or len(f.payload) != length * w:
                raise CommandError(f"client {k}: expected {kind.name} of {length * w} bytes, "
                                   f"got {f.kind.name} of {len(f.payload)}")
        # one client's vector at a time (a generator): frames are freed as they are read
        acc = sum_mod((_field_words(frames.pop(k), w, p, k) for k in list(frames)), length, p)
    elif mode == "additive":
        for k, f in frames.items():
            if f.kind != FrameKind.ADDITIVE_SEED or len(f.payload) != SEED_BYTES:
                raise CommandError(f"client {k}: expected a {SEED_BYTES}-byte seed frame")
        acc = sum_mod((expand_seed_vector(f.payload, length, p) for f in frames.values()),
                      length, p)
    else:
        raise CommandError(f"unknown sharing mode {mode!r}")
    acc = acc.to_objects()
    if mode == "shamir":
        state.arrays[name] = sectype.array(sectype.field.array(acc))
    else:
        state.additive[name] = (acc, int(sectype.bit_length), None)
    return {"name": name, "length": int(length), **received}


@command("add_pieces")
async def add_pieces(state: ServerState, names: list[str], out: str) -> dict[str, Any]:
    """``out`` = Σ of compact pieces mod 2^b (local): accumulate joins of new clients."""
    pieces = [state.additive.get(n) for n in names]
    have = [(n, p) for n, p in zip(names, pieces) if p is not None]
    if not have:
        raise CommandError(f"no additive pieces named {names}")
    widths = {(p[1], p[2]) for _, p in have}
    if len(widths) != 1 or None in {p[2] for _, p in have}:
        raise CommandError(f"add_pieces needs compact pieces of one width, got {widths}")
    bit_length, b = widths.pop()
    total = sum_compact([p[0] for _, p in have], b, have[0][1][0].size)
    for n, _ in have:
        state.additive.pop(n)
    state.additive[out] = (total, bit_length, b)
    return {"name": out, "length": int(total.size)}


@command("to_shamir")
async def to_shamir(state: ServerState, name: str, out: str | None = None, keep: bool = False,
                    reduce: bool = True) -> dict[str, Any]:
    """Additive pieces -> Shamir shares: every server inputs its piece, all sum the inputs.

    Each server sends (m - 1) share vectors of d elements (one to each peer). Compact pieces
    sum to s = x + w·2^b (0 <= w < m); ``reduce`` replaces s by x (one bit decomposition,
    :func:`input_sharing.unwrap`), otherwise ``out`` holds s and is marked wrapped (b) in
    ``state.extras["wrapped"]`` for a caller that decomposes it anyway. ``keep`` keeps the
    piece (an accumulator of later joins).
    """
    if name not in state.additive:
        raise CommandError(f"no additive piece named {name!r}; have {sorted(state.additive)}")
    mpc = state.runtime
    piece, bits, compact = state.additive[name] if keep else state.additive.pop(name)
    sectype = state.sectype(bits)
    mine = sectype.array(sectype.field.array(piece.astype(object)))
    inputs = mpc.input(mine, senders=list(range(state.m)))
    total = inputs[0]
    for x in inputs[1:]:
        total = total + x
    wrapped = state.extras.setdefault("wrapped", {})
    wrapped.pop(out or name, None)
    if compact is not None:
        if reduce:
            total, _ = unwrap(mpc, total, compact)
        else:
            wrapped[out or name] = compact
    await mpc.gather(total)  # finish the traffic inside this command
    state.arrays[out or name] = total
    return {"name": out or name, "length": int(piece.size)}


def _refuse_wrapped(state: ServerState, names: list[str], doing: str) -> None:
    """A wrapped sum s = x + w·2^b must not be opened (w depends on x) nor added to others."""
    bad = [n for n in names if n in state.extras.get("wrapped", {})]
    if bad:
        raise CommandError(f"{bad} hold wrapped compact sums s = x + w·2^b and cannot be "
                           f"{doing}; reduce them first")


@command("aggregate")
async def aggregate(state: ServerState, names: list[str], out: str) -> dict[str, Any]:
    """``out`` = elementwise sum of the named secure arrays (local, no traffic)."""
    if not names:
        raise CommandError("aggregate needs at least one array name")
    _refuse_wrapped(state, names, "added")
    arrays = [state.array(n) for n in names]
    total = arrays[0]
    for a in arrays[1:]:
        if a.shape != total.shape:
            raise CommandError(f"shapes differ: {total.shape} vs {a.shape}")
        total = total + a
    state.arrays[out] = total
    return {"name": out, "shape": list(total.shape)}


@command("open")
async def open_(state: ServerState, name: str, label: str = "") -> dict[str, Any]:
    """Reveal secure array ``name`` to all servers (and the driver); log the opening."""
    _refuse_wrapped(state, [name], "opened")
    x = state.array(name)
    values = np.asarray(await state.runtime.output(x))
    if x.sectype.bit_length <= 62:
        values = values.astype(np.int64)
    state.reveal_log.append({"seq": len(state.reveal_log), "name": name, "label": label,
                             "shape": list(values.shape)})
    return {"name": name, "values": values}


@command("open_to")
async def open_to(state: ServerState, name: str, host: str, port: int, round: int = 0,
                  phase: str = "reveal", label: str = "", receiver: int = 0) -> dict[str, Any]:
    """Open secure array ``name`` to server ``receiver`` only (``mpc.output(x, receivers=)``);
    that server writes it to ``host:port`` as one OPENED_SUM frame of fixed-width elements
    (values mod p). Returns the bytes written (0 at the other servers)."""
    _refuse_wrapped(state, [name], "opened")
    x = state.array(name)
    values = await state.runtime.output(x, receivers=[int(receiver)])
    state.reveal_log.append({"seq": len(state.reveal_log), "name": name, "label": label,
                             "shape": list(x.shape), "receivers": [int(receiver)]})
    if state.pid != int(receiver):
        return {"name": name, "bytes": 0}
    p = x.sectype.field.modulus  # the array's own field: its bit length may not be the default
    elems = np.array([int(v) % p for v in np.asarray(values).reshape(-1)], dtype=object)
    data = Frame(FrameKind.OPENED_SUM, -3 - state.pid, int(round), phase,
                 encode_elements(elems, element_bytes(p))).encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    return {"name": name, "bytes": len(data)}


@command("openings")
async def openings(state: ServerState) -> dict[str, Any]:
    """Every runtime.output call recorded by the opening counter (module docstring)."""
    return OPENINGS.report()


@command("reveal_log")
async def reveal_log(state: ServerState) -> list[dict[str, Any]]:
    return list(state.reveal_log)


@command("arrays")
async def arrays(state: ServerState) -> dict[str, Any]:
    """Names and shapes of the secure arrays held (names only, never values)."""
    return {"secure": {n: list(a.shape) for n, a in state.arrays.items()},
            "additive": {n: int(a[0].size) for n, a in state.additive.items()}}


@command("drop")
async def drop(state: ServerState, names: list[str]) -> list[str]:
    for n in names:
        state.arrays.pop(n, None)
        state.additive.pop(n, None)
    return sorted(state.arrays)


@command("counters")
async def counters(state: ServerState) -> dict[str, Any]:
    """Cumulative MPyC wire counters, bytes received from each client, and the round log
    since the last call (:func:`wire.drain_events`)."""
    return {"wire": wire.snapshot(state.runtime).to_dict(),
            "client_bytes": {str(k): v for k, v in state.inbox.bytes_from.items()},
            "events": wire.drain_events(state.runtime)}


@command("setup_counters")
async def setup_counters(state: ServerState) -> dict[str, list[int]]:
    """MPyC connection-handshake and peer-list-digest bytes per peer, taken right after
    start-up."""
    return state.extras["setup_wire"]


@command("shutdown")
async def shutdown(state: ServerState) -> str:
    state.stopping = True
    return "bye"


@command("release")
async def release(state: ServerState) -> str:
    """End this driver's session; MPyC stays connected for the next one."""
    await state.runtime.barrier()  # every party has finished the session's traffic
    state.reset_session()
    state.releasing = True
    return "released"


@command("drop_session")
async def drop_session(state: ServerState) -> str:
    """End a session in which no MPyC step ran (a driver that refused these servers after
    ``ping``: wrong order or count): no barrier, since the other parties may not be in it."""
    if state.arrays or state.reveal_log:
        raise CommandError("drop_session after secure steps: use release")
    state.reset_session()
    state.releasing = True
    return "dropped"

