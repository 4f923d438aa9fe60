"""Start m compute-server processes on loopback, drive them in lockstep, and watch them.

:class:`ServerLauncher` picks free ports (bind to port 0), starts
``python -m flaimsim.parties.mpc.server_loop`` once per party in its own process group, keeps the
processes for every round of a run, and sends each command to all servers over their control
connections (:meth:`ServerLauncher.call`). A watchdog runs while waiting for replies: if a
party exits, a command fails at any party, or a reply takes longer than the timeout, every
party's process group is killed and :class:`PartyFailure` is raised with each party's exit code
and stderr tail. Closing (context manager, ``close()``, interpreter exit via ``atexit``, or
SIGTERM/SIGINT to the driver: :func:`install_signal_cleanup` runs on every start) leaves no
party process running. The servers watch for themselves too (``server.py``): a server whose
driver or peer disconnects, or whose command overruns, exits on its own.

:class:`RemoteServers` drives servers that are already running on their own hosts
(``flaimsim serve``) instead of spawning them: same commands and watchdog, but closing
releases the session (the servers stay up for the next driver) instead of shutting them down.

With m = 2 MPyC runs with t = 0, where every share equals the secret: such a run is
``private == False`` and :attr:`ServerLauncher.privacy_note` says so for every output.
"""

from __future__ import annotations

import atexit
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from contextlib import contextmanager
from typing import IO, Any, Iterator, Sequence

from flaimsim.parties.mpc.field import FieldSpec
from flaimsim.parties.ledger import Ledger
from flaimsim.parties.transport import (
    DRIVER, Frame, FrameKind, dumps, loads, read_frame_sync)
from flaimsim.parties.mpc.wire import WireSnapshot, add_wire_rows, step_events
from flaimsim.parties import profile

EXIT_PORT_IN_USE = 98  # mirrors mpc_server.EXIT_PORT_IN_USE (not imported: it imports mpyc.runtime)
NOT_PRIVATE_NOTE = ("not private (t=0): with m=2 MPyC shares equal the secrets; "
                    "this run only shows the shape of the costs")


class PartyFailure(RuntimeError):
    """A compute server died, failed a command, or missed its deadline; all were killed."""


class PortInUseError(PartyFailure):
    """A server could not bind its port (``port`` names it)."""

    def __init__(self, msg: str, port: int) -> None:
        super().__init__(msg)
        self.port = port


class LauncherConfigError(ValueError):
    """Launcher parameters that cannot work (e.g. 2t >= m)."""


def free_ports(n: int, host: str = "") -> list[int]:
    """n distinct ports that were free a moment ago (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


_LIVE: "weakref.WeakSet[ServerLauncher]" = weakref.WeakSet()


@atexit.register
def _kill_live_launchers() -> None:
    for launcher in list(_LIVE):
        launcher.kill()


_PREVIOUS_HANDLERS: dict[int, Any] = {}


def _on_signal(signum: int, frame: Any) -> None:
    """Kill every live launcher's servers, then do what the signal did before."""
    _kill_live_launchers()
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    if callable(previous):  # e.g. SIGINT's KeyboardInterrupt
        previous(signum, frame)
    elif previous != signal.SIG_IGN:  # SIG_DFL: end the way the signal would have
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def install_signal_cleanup(signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> bool:
    """Make SIGTERM/SIGINT kill every live launcher's servers first (chaining the previous
    handlers). Only the main thread may set handlers; elsewhere this does nothing (the servers'
    own watchdogs still end them when this process dies). True if installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in signals:
        current = signal.getsignal(sig)
        if current is not _on_signal:
            _PREVIOUS_HANDLERS[sig] = current
            signal.signal(sig, _on_signal)
    return True


class ServerLauncher:
    """m MPyC compute servers on this machine, driven over control connections."""

    def __init__(self, m: int = 3, threshold: int | None = None, bit_length: int = 32,
                 host: str = "127.0.0.1", start_timeout: float = 60.0,
                 command_timeout: float = 120.0, load: Sequence[str] = (),
                 port_retries: int = 3, ports: tuple[Sequence[int], Sequence[int]] | None = None,
                 python: str = sys.executable, server_timeout: float | None = None,
                 sec_param: int | None = None, network: Any = None) -> None:
        if m < 2:
            raise LauncherConfigError(f"need at least 2 servers, got m={m}")
        t = (m - 1) // 2 if threshold is None else threshold
        if t < 0 or 2 * t >= m:
            raise LauncherConfigError(f"threshold t={t} needs 0 <= 2t < m={m}")
        if ports is not None and (len(ports[0]) != m or len(ports[1]) != m):
            raise LauncherConfigError("ports must be (m MPyC ports, m control ports)")
        self.m, self.threshold, self.bit_length, self.host = m, t, bit_length, host
        self.start_timeout, self.command_timeout = start_timeout, command_timeout
        self.load, self.port_retries, self.fixed_ports, self.python = (
            list(load), port_retries, ports, python)
        self._server_timeout = server_timeout
        self.sec_param = sec_param   # MPyC's -K (statistical security); None: its default
        self.network = network   # emulated peer links (flaimsim.parties.netem), or None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []
        self.control: list[socket.socket] = []
        self.mpc_ports: list[int] = []
        self.control_ports: list[int] = []
        self.info: list[dict[str, Any]] = []
        self._seq = 0
        self._fields: dict[int, FieldSpec] = {}
        self.last_events: list[dict[str, Any]] = []
        self._closed = False
        self.prestart_ready_s: float | None = None   # set by warm_start when prestarted

    # ---- privacy ------------------------------------------------------------------------------
    @property
    def private(self) -> bool:
        return self.threshold >= 1

    @property
    def privacy_note(self) -> str:
        return "" if self.private else NOT_PRIVATE_NOTE

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "ServerLauncher":
        attempts = 1 if self.fixed_ports else max(1, self.port_retries)
        for attempt in range(attempts):
            try:
                self._launch()
                return self
            except PortInUseError:
                self.kill()
                if attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        install_signal_cleanup()
        self.kill()
        self._closed, self.control, self.info = False, [], []
        if self.fixed_ports:
            self.mpc_ports, self.control_ports = map(list, self.fixed_ports)
        else:
            ports = free_ports(2 * self.m)
            self.mpc_ports, self.control_ports = ports[:self.m], ports[self.m:]
        peer_lists = self._peer_lists()
        env = dict(os.environ, MPYC_MIX32_64BIT="1", PYTHONUNBUFFERED="1")
        self.procs, self.logs = [], []
        _LIVE.add(self)
        for i in range(self.m):
            peers = [a for h, p in peer_lists[i] for a in ("-P", f"{h}:{p}")]
            cmd = [self.python, "-m", "flaimsim.parties.mpc.server_loop", *peers, "-I", str(i),
                   "-T", str(self.threshold), "--bit-length", str(self.bit_length),
                   "--mix32-64bit", "--control-host", self.host,
                   "--control-port", str(self.control_ports[i]),
                   "--connect-timeout", str(self.start_timeout),
                   "--command-timeout", str(self.server_command_timeout)]
            if self.sec_param is not None:
                cmd += ["-K", str(int(self.sec_param))]
            for mod in self.load:
                cmd += ["--load", mod]
            logf = tempfile.TemporaryFile(prefix=f"flaimsim-server{i}-")
            self.logs.append(logf)
            self.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                               stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True))
        self._connect_control()
        self.info = self.call("ping", timeout=self.start_timeout)
        for i, (info, proc) in enumerate(zip(self.info, self.procs)):
            if info["os_pid"] != proc.pid:  # another program took our control port first
                port = self.control_ports[i]
                self.kill()
                raise PortInUseError(f"control port {port} in use by another process", port)

    def _peer_lists(self) -> list[list[tuple[str, int]]]:
        """Each party's ``-P`` list. MPyC party i connects to every j > i at entry j (and
        listens on its own); with a network, entry j is the relay of link i → j."""
        own = [(self.host, p) for p in self.mpc_ports]
        if self.network is None:
            return [own] * self.m
        from flaimsim.parties.ledger import server
        from flaimsim.parties.netem import emulator

        em = emulator(self.network)
        return [[a if j <= i else em.route(server(i), server(j), a) for j, a in enumerate(own)]
                for i in range(self.m)]

    @property
    def server_command_timeout(self) -> float:
        """The servers' own limit on one command: beyond the driver's, so the driver's
        watchdog normally fires first and reports every party's stderr."""
        if self._server_timeout is not None:
            return self._server_timeout
        return 2 * self.command_timeout + 60

    @property
    def control_addresses(self) -> list[tuple[str, int]]:
        return [(self.host, p) for p in self.control_ports]

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
        while not all(socks):
            self._check_alive("starting")
            for i in range(self.m):
                if socks[i] is None:
                    try:
                        s = socket.create_connection(self.control_addresses[i], 1.0)
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        socks[i] = s
                    except OSError:
                        pass
            if not all(socks):
                if time.monotonic() > deadline:
                    self._fail(f"control ports not open within {self.start_timeout} s")
                time.sleep(0.05)

    def __enter__(self) -> "ServerLauncher":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 15.0) -> None:
        """Shut the servers down in step (MPyC barrier), then kill whatever is left."""
        if self._closed:
            return
        try:
            if self.procs and all(p.poll() is None for p in self.procs) and self.control:
                self.call("shutdown", timeout=timeout)
                deadline = time.monotonic() + timeout
                for p in self.procs:
                    p.wait(max(0.1, deadline - time.monotonic()))
        except (PartyFailure, subprocess.TimeoutExpired, OSError):
            pass
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill every party's process group and wait for it; close sockets and logs."""
        self._kill_processes()
        for s in self.control:
            s.close()
        self.control = []
        for f in self.logs:
            f.close()
        self.logs = []
        self._closed = True
        _LIVE.discard(self)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    # ---- watchdog -----------------------------------------------------------------------------
    def stderr_tail(self, i: int, nbytes: int = 3000) -> str:
        f = self.logs[i]
        f.flush()
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - nbytes))
        return f.read().decode(errors="replace")

    def _check_alive(self, doing: str) -> None:
        for i, p in enumerate(self.procs):
            rc = p.poll()
            if rc is not None:
                tail = self.stderr_tail(i)
                match = re.search(r"port in use: .*?port (\d+)", tail)
                if rc == EXIT_PORT_IN_USE and match:
                    port = int(match.group(1))
                    msg = self._report(f"server {i} could not bind: port {port} in use")
                    self.kill()
                    raise PortInUseError(msg, port)
                self._fail(f"server {i} (pid {p.pid}) exited with code {rc} while {doing}")

    def _report(self, reason: str) -> str:
        parts = [reason]
        for i, p in enumerate(self.procs):
            rc = p.poll()
            parts.append(f"--- server {i} (pid {p.pid}, exit code {rc}) stderr tail ---")
            parts.append(self.stderr_tail(i).rstrip() or "(empty)")
        return "\n".join(parts)

    def _kill_processes(self) -> None:
        """SIGKILL every party's process group, then reap the processes."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def _fail(self, reason: str) -> None:
        self._kill_processes()  # first, so that the stderr tails are final
        msg = self._report(reason) if self.logs else reason
        self.kill()
        raise PartyFailure(msg)

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
            for i, s in enumerate(self.control):
                kw = dict(kwargs, **(per_party[i] if per_party else {}))
                payload = dumps({"seq": seq, "cmd": cmd, "kwargs": kw})
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
                    self._fail(f"command {cmd!r} exceeded its timeout of {timeout} s")
                for key, _ in sel.select(min(0.2, left)):
                    i = key.data
                    try:
                        key.fileobj.settimeout(max(1.0, left))  # type: ignore[union-attr]
                        rep = loads(read_frame_sync(key.fileobj).payload)  # type: ignore[arg-type]
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
                            self._fail(f"lost the control connection of server {i} during {cmd!r}")
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


class RemoteServers(ServerLauncher):
    """m compute servers already running on their hosts (``flaimsim serve``), party i at
    control address ``addresses[i]``. Nothing is spawned or killed here: closing releases the
    session (MPyC stays up for the next driver); a failure closes the control connections,
    which makes every server exit by its own watchdog."""

    def __init__(self, addresses: Sequence[tuple[str, int]], start_timeout: float = 60.0,
                 command_timeout: float = 120.0) -> None:
        super().__init__(m=max(2, len(addresses)), start_timeout=start_timeout,
                         command_timeout=command_timeout)
        if len(addresses) < 2:
            raise LauncherConfigError(f"need at least 2 server addresses, got {len(addresses)}")
        self.addresses = [(str(h), int(p)) for h, p in addresses]
        self.fixed_ports = None

    @property
    def control_addresses(self) -> list[tuple[str, int]]:
        return list(self.addresses)

    def start(self) -> "RemoteServers":
        install_signal_cleanup()
        self.kill()
        self._closed, self.control, self.info = False, [], []
        _LIVE.add(self)
        self._connect_control()
        self.info = self.call("ping", timeout=self.start_timeout)
        self._check_parties()
        return self

    def _check_parties(self) -> None:
        where = [f"{h}:{p}" for h, p in self.addresses]
        for i, info in enumerate(self.info):
            if info["pid"] != i or info["m"] != self.m:
                self._fail(f"{where[i]} is MPyC party {info['pid']} of {info['m']}, but is "
                           f"listed as party {i} of {self.m} (order --servers-at by --party)")
        for key in ("threshold", "modulus", "bit_length", "mix32_64bit"):
            values = {info[key] for info in self.info}
            if len(values) != 1:
                self._fail(f"servers disagree on {key}: {values}")
        self.threshold = int(self.info[0]["threshold"])
        self.bit_length = int(self.info[0]["bit_length"])
        missing = sorted({"distaim_score"} - set(self.info[0]["commands"]))
        if missing:
            self._fail(f"servers lack commands {missing}: start them with `flaimsim serve`")

    def close(self, timeout: float = 15.0) -> None:
        """Release the session; the servers wait for the next driver."""
        if self._closed:
            return
        try:
            if self.control:
                self.call("release", timeout=timeout)
        except (PartyFailure, OSError):
            pass
        finally:
            self.kill()

    def _kill_processes(self) -> None:
        """Nothing to kill here: closing the control connections makes the servers exit."""
        for s in self.control:
            s.close()

    @property
    def hosts(self) -> list[str]:
        return [f"{h}:{p}" for h, p in self.addresses]

