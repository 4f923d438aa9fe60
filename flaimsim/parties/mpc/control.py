"""The driver's side of the control connections to m compute servers, in lockstep.

:class:`ServerCommands` connects to every server's control address, sends each command to all
servers at once (:meth:`ServerCommands.call`) and waits for the m replies under a deadline; any
failure (a party exits, an error at any party, a reply past the timeout) goes to the owner's
``_fail``, which kills every party and raises :class:`PartyFailure`. On top of ``call``: the
servers' field, wire counters and round logs, :meth:`ServerCommands.measure` (charge a block's
MPyC traffic to a ledger), openings and the reveal log, and whether the group is private
(threshold t >= 1).

It is a mixin of :class:`flaimsim.parties.mpc.launcher.ServerLauncher` (and so of
``RemoteServers``), which owns the processes, the watchdog (``_check_alive``, ``_fail``) and the
attributes named below.
"""

from __future__ import annotations

import selectors
import socket
import subprocess
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from flaimsim.parties.mpc.field import FieldSpec
from flaimsim.parties.ledger import Ledger
from flaimsim.parties.transport import (
    DRIVER, Frame, FrameKind, TransportError, dumps, loads, read_frame_sync)
from flaimsim.parties.mpc.faults import connect_reason, process_state
from flaimsim.parties.mpc.wire import WireSnapshot, add_wire_rows, step_events
from flaimsim.parties import profile

NOT_PRIVATE_NOTE = ("not private (t=0): with m=2 MPyC shares equal the secrets; "
                    "this run only shows the shape of the costs")


class PartyFailure(RuntimeError):
    """A compute server died, failed a command, or missed its deadline; all were killed."""


class ServerCommands:
    """Commands to m servers over their control connections (a mixin: see the module)."""

    m: int
    threshold: int
    bit_length: int
    start_timeout: float
    command_timeout: float
    procs: list[subprocess.Popen[bytes]]
    control: list[socket.socket]
    info: list[dict[str, Any]]
    last_events: list[dict[str, Any]]
    _seq: int
    _closed: bool
    _fields: dict[int, FieldSpec]

    # The owner's (ServerLauncher, RemoteServers): where the servers listen, and the watchdog.
    @property
    def control_addresses(self) -> list[tuple[str, int]]:
        raise NotImplementedError

    def _check_alive(self, doing: str) -> None:
        """Raise :class:`PartyFailure` if a party has exited (``doing`` says when)."""
        raise NotImplementedError

    def _fail(self, reason: str) -> None:
        """Kill every party and raise :class:`PartyFailure` with ``reason``."""
        raise NotImplementedError

    # ---- privacy ------------------------------------------------------------------------------
    @property
    def private(self) -> bool:
        return self.threshold >= 1

    @property
    def privacy_note(self) -> str:
        return "" if self.private else NOT_PRIVATE_NOTE

    # ---- connecting ---------------------------------------------------------------------------
    def _connect_control(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        socks: list[socket.socket | None] = [None] * self.m
        try:
            self._connect_loop(socks, deadline)
        except BaseException:
            for s in socks:
                if s is not None:
                    s.close()
            raise
        self.control = [s for s in socks if s is not None]

    def _connect_loop(self, socks: list[socket.socket | None], deadline: float) -> None:
        why: dict[int, str] = {}
        while not all(socks):
            self._check_alive("starting")
            for i in range(self.m):
                if socks[i] is None:
                    try:
                        s = socket.create_connection(self.control_addresses[i], 1.0)
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        socks[i] = s
                    except OSError as exc:
                        why[i] = connect_reason(exc)
            if not all(socks):
                if time.monotonic() > deadline:
                    missing = "; ".join(f"server {i} at {self._where(i)}: {why.get(i, '?')}"
                                        for i in range(self.m) if socks[i] is None)
                    self._fail(f"could not connect within {self.start_timeout} s to {missing}")
                time.sleep(0.05)

    def _where(self, i: int) -> str:
        host, port = self.control_addresses[i]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _stalled(self, done: Sequence[bool]) -> str:
        """Which servers had not replied, and in what state their processes are."""
        parts = []
        for i, ok in enumerate(done):
            if ok:
                continue
            state = process_state(self.procs[i].pid) if i < len(self.procs) else None
            parts.append(f"server {i}" + (f" (pid {self.procs[i].pid}) {state}" if state
                                          else f" at {self._where(i)}"))
        stopped = [p for p in parts if "stopped" in p]
        head = (f"{'; '.join(stopped)} (the others wait for it)" if stopped
                else f"no reply from {', '.join(parts)}")
        return head

    # ---- commands -----------------------------------------------------------------------------
    def call(self, cmd: str, timeout: float | None = None,
             per_party: Sequence[dict[str, Any]] | None = None, **kwargs: Any) -> list[Any]:
        """Run command ``cmd`` at every server (same kwargs, plus ``per_party[i]``).

        Returns the m results in party order. ``timeout`` (seconds, default
        ``command_timeout``) and ``per_party`` belong to the driver, so server commands must
        not use these keyword names. Any failure (a party exits, an error at any party, the
        timeout) kills all servers and raises :class:`PartyFailure`.
        """
        if self._closed or not self.control:
            raise PartyFailure(f"servers are not running (command {cmd!r})")
        timeout = self.command_timeout if timeout is None else timeout
        seq, self._seq = self._seq, self._seq + 1
        deadline = time.monotonic() + timeout
        try:
            shared = None if per_party else dumps({"seq": seq, "cmd": cmd, "kwargs": kwargs})
            for i, s in enumerate(self.control):
                payload = shared or dumps({"seq": seq, "cmd": cmd,
                                           "kwargs": dict(kwargs, **per_party[i])})
                s.settimeout(max(1.0, timeout))
                s.sendall(Frame(FrameKind.CONTROL, DRIVER, 0, "setup", payload).encode())
        except OSError as exc:
            self._check_alive(f"sending {cmd!r}")
            self._fail(f"could not send {cmd!r}: {exc}")
        replies: list[Any] = [None] * self.m
        done = [False] * self.m
        with selectors.DefaultSelector() as sel:
            for i, s in enumerate(self.control):
                sel.register(s, selectors.EVENT_READ, i)
            while not all(done):
                left = deadline - time.monotonic()
                if left <= 0:
                    self._fail(f"command {cmd!r} exceeded its timeout of {timeout} s "
                               f"(--party-timeout): {self._stalled(done)}")
                for key, _ in sel.select(min(0.2, left)):
                    i = key.data
                    try:
                        key.fileobj.settimeout(max(1.0, left))  # type: ignore[union-attr]
                        rep = loads(read_frame_sync(key.fileobj).payload)  # type: ignore[arg-type]
                    except (TransportError, ValueError, KeyError) as exc:
                        self._fail(f"server {i} at {self._where(i)} answered {cmd!r} with "
                                   f"something that is not a flaimsim reply ({exc}): is a "
                                   "flaimsim server listening there?")
                    except (OSError, ConnectionError):
                        if cmd == "shutdown":
                            rep = {"seq": seq, "ok": True, "result": "closed"}
                        else:  # the party is probably exiting: let its exit code show
                            try:
                                if i < len(self.procs):
                                    self.procs[i].wait(2.0)
                            except subprocess.TimeoutExpired:
                                pass
                            self._check_alive(f"running {cmd!r}")
                            self._fail(f"lost the control connection of server {i} at "
                                       f"{self._where(i)} during {cmd!r}")
                    if rep.get("seq") != seq:
                        self._fail(f"server {i} replied to #{rep.get('seq')}, expected #{seq}")
                    if not rep["ok"]:
                        self._fail(f"command {cmd!r} failed at server {i}: {rep['error']}")
                    replies[i], done[i] = rep["result"], True
                    sel.unregister(key.fileobj)
                if cmd != "shutdown":
                    self._check_alive(f"running {cmd!r}")
        return replies

    # ---- conveniences -------------------------------------------------------------------------
    @property
    def field_spec(self) -> FieldSpec:
        """The field of the servers' default SecInt(bit_length)."""
        return FieldSpec.from_info(self.info[0])

    def field_spec_for(self, bit_length: int | None = None) -> FieldSpec:
        """The field of SecInt(bit_length) at the servers (asked once per bit length)."""
        if bit_length is None or bit_length == self.bit_length:
            return self.field_spec
        if bit_length not in self._fields:
            info = self.call("field_info", bit_length=bit_length)
            if any(i != info[0] for i in info):
                raise PartyFailure(f"servers disagree on the field of SecInt({bit_length})")
            self._fields[bit_length] = FieldSpec(int(info[0]["modulus"]), self.m,
                                                 self.threshold)
        return self._fields[bit_length]

    @property
    def client_addresses(self) -> list[tuple[str, int]]:
        """Where clients send their share frames: the address each server publishes."""
        return [tuple(i["client_address"]) if i.get("client_address") else a  # type: ignore
                for i, a in zip(self.info, self.control_addresses)]

    def counters(self, timeout: float | None = None) -> list[WireSnapshot]:
        """Every server's wire counters; keeps the round logs they drained (``last_events``)."""
        replies = self.call("counters", timeout)
        self.last_events = [r.get("events", {"start": 0, "events": []}) for r in replies]
        return [WireSnapshot.from_dict(r["wire"]) for r in replies]

    def step_events(self, before: Sequence[WireSnapshot], after: Sequence[WireSnapshot]
                    ) -> list[list[tuple[Any, ...]]]:
        """The servers' round logs between ``before`` and ``after``, the last two calls of
        :meth:`counters`."""
        return step_events(before, after, self.last_events)

    @contextmanager
    def measure(self, ledger: Ledger, round: int, phase: str, op: str | None = None
                ) -> Iterator[list[WireSnapshot]]:
        """Charge the MPyC traffic of the block to ``ledger`` as ``server:i -> server:j`` rows.

        Yields a list that holds the per-server differences once the block is done. The
        block's operations (sections; untagged work: ``op``, default the phase) go to the
        run's profile (:mod:`flaimsim.parties.profile`).
        """
        diffs: list[WireSnapshot] = []
        before = self.counters()
        yield diffs
        after = self.counters()
        events = self.step_events(before, after)
        diffs.extend(add_wire_rows(ledger, before, after, round, phase, events))
        for o in profile.mpc_step_ops(events, round, phase, op or phase):
            profile.record(o.round, o.phase, o.op, o.bytes, o.messages, o.rounds, o.seconds)

    def open(self, name: str, label: str = "", timeout: float | None = None) -> Any:
        """Open secure array ``name`` (recorded in every server's reveal log)."""
        return self.call("open", timeout, name=name, label=label)[0]["values"]

    def reveal_log(self) -> list[dict[str, Any]]:
        logs = self.call("reveal_log")
        if any(lg != logs[0] for lg in logs):
            raise PartyFailure(f"servers disagree on what was revealed: {logs}")
        return logs[0]
