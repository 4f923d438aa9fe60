"""Start m compute-server processes on loopback, keep them for a run, and watch them.

:class:`ServerLauncher` picks free ports (bind to port 0), starts
``python -m flaimsim.parties.mpc.server_loop`` once per party in its own process group and keeps
the processes for every round of a run; its commands go to all servers in lockstep
(``call``: :mod:`flaimsim.parties.mpc.control`). A watchdog runs while waiting for
replies: if a party exits, a command fails at any party, or a reply takes longer than the
timeout, every party's process group is killed and :class:`PartyFailure` is raised with each
party's exit code and stderr tail. Closing (context manager, ``close()``, interpreter exit via
``atexit``, or SIGTERM/SIGINT to the driver: :func:`install_signal_cleanup` runs on every
start) leaves no party process running. The servers watch for themselves too (``server.py``):
a server whose driver or peer disconnects, or whose command overruns, exits on its own.

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
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import IO, Any, Sequence

from flaimsim.parties.mpc.field import FieldSpec
from flaimsim.parties.transport import (
    DRIVER, Frame, FrameKind, TransportError, dumps, loads, read_frame_sync)
from flaimsim.parties.mpc.faults import blame, connect_reason
from flaimsim.parties.mpc.control import (  # NOT_PRIVATE_NOTE: importable from here too
    NOT_PRIVATE_NOTE, PartyFailure, ServerCommands)

EXIT_PORT_IN_USE = 98  # mirrors mpc_server.EXIT_PORT_IN_USE (not imported: it imports mpyc.runtime)


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


def port_in_use(host: str, port: int) -> bool:
    """True if ``port`` on ``host`` cannot be bound now (another program holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


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


class ServerLauncher(ServerCommands):
    """m MPyC compute servers on this machine, driven over control connections."""

    def __init__(self, m: int = 3, threshold: int | None = None, bit_length: int = 32,
                 host: str = "127.0.0.1", start_timeout: float = 60.0,
                 command_timeout: float = 120.0, load: Sequence[str] = (),
                 port_retries: int = 3, ports: tuple[Sequence[int], Sequence[int]] | None = None,
                 python: str = sys.executable, server_timeout: float | None = None,
                 sec_param: int | None = None, network: Any = None,
                 ports_option: str = "--base-port") -> None:
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
        self.ports_option = ports_option   # the user's option that moves the ports (messages)
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

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "ServerLauncher":
        attempts = 1 if self.fixed_ports else max(1, self.port_retries)
        for attempt in range(attempts):
            try:
                self._launch()
                return self
            except PortInUseError as exc:
                self.kill()
                if attempt + 1 == attempts or not exc.port:   # port 0: no free port at all
                    if self.fixed_ports or not exc.port:
                        raise
                    raise PortInUseError(f"the servers could not bind their ports on {attempts} "
                                         f"tries (last: port {exc.port} in use): choose the "
                                         f"ports with {self.ports_option}", exc.port) from None
        raise AssertionError("unreachable")

    def _port_roles(self) -> list[tuple[int, str]]:
        return ([(p, f"server {i}'s MPyC port") for i, p in enumerate(self.mpc_ports)]
                + [(p, f"server {i}'s control port") for i, p in enumerate(self.control_ports)])

    def _check_fixed_ports(self) -> None:
        """Fixed ports: one line naming the first one in use and the option, before any
        server starts."""
        for port, role in self._port_roles():
            if port_in_use(self.host, port):
                ports = sorted(self.mpc_ports + self.control_ports)
                span = (f"{ports[0]}..{ports[-1]}" if ports[-1] - ports[0] == len(ports) - 1
                        else ", ".join(map(str, ports)))
                raise PortInUseError(
                    f"port {port} in use on {self.host} ({role}) by another program: "
                    f"choose another {self.ports_option} (the servers use ports {span})", port)

    def _launch(self) -> None:
        install_signal_cleanup()
        self.kill()
        self._closed, self.control, self.info = False, [], []
        if self.fixed_ports:
            self.mpc_ports, self.control_ports = map(list, self.fixed_ports)
            self._check_fixed_ports()
        else:
            try:
                ports = free_ports(2 * self.m)
            except OSError as exc:   # every port grabbed
                raise PortInUseError(f"no free port on this host for the {self.m} servers "
                                     f"({exc.strerror}): free some, or choose the ports with "
                                     f"{self.ports_option}", 0) from None
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
            if self.network is not None:  # -P routes through relays: compare the real list
                cmd += ["--compare-peers",
                        ",".join(f"{self.host}:{p}" for p in self.mpc_ports)]
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
                raise PortInUseError(f"control port {port} in use by another process; choose "
                                     f"the ports with {self.ports_option}", port)

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
        exited = [(i, p, p.poll()) for i, p in enumerate(self.procs)]
        exited = [(i, p, rc) for i, p, rc in exited if rc is not None]
        if not exited:
            return
        for i, p, rc in exited:
            tail = self.stderr_tail(i)
            match = re.search(r"port in use: .*?port (\d+)", tail)
            if rc == EXIT_PORT_IN_USE and match:
                port = int(match.group(1))
                msg = self._report(f"server {i} could not bind: port {port} in use; choose "
                                   f"the ports with {self.ports_option}")
                self.kill()
                raise PortInUseError(msg, port)
        time.sleep(0.2)  # let the consequences land too, so that the cause can be told apart
        exited = [(i, p, p.poll()) for i, p in enumerate(self.procs) if p.poll() is not None]
        self._fail(blame(exited, doing))

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
        self.info = self._ping_each()
        self._check_parties()
        return self

    def _ping_each(self) -> list[dict[str, Any]]:
        """``ping`` every server on its own: one that does not answer as a flaimsim server is
        named with the reason, and the others' sessions are dropped (they keep serving)."""
        seq, self._seq = self._seq, self._seq + 1
        frame = Frame(FrameKind.CONTROL, DRIVER, 0, "setup",
                      dumps({"seq": seq, "cmd": "ping", "kwargs": {}})).encode()
        deadline = time.monotonic() + self.start_timeout
        info: list[dict[str, Any] | None] = [None] * self.m
        why: dict[int, str] = {}
        for i, s in enumerate(self.control):
            try:
                s.settimeout(max(1.0, deadline - time.monotonic()))
                s.sendall(frame)
                rep = loads(read_frame_sync(s).payload)
                if rep.get("seq") != seq or not rep.get("ok"):
                    raise TransportError(f"unexpected reply {str(rep)[:80]}")
                info[i] = rep["result"]
            except (socket.timeout, TimeoutError):
                why[i] = (f"accepted the connection but sent no reply within "
                          f"{self.start_timeout:g} s (--connect-timeout; not a flaimsim "
                          "server, or one still waiting for its peers?)")
            except (TransportError, ValueError, KeyError) as exc:
                why[i] = f"answered, but not as a flaimsim server ({exc})"
            except OSError as exc:
                why[i] = f"closed the connection ({connect_reason(exc)}; busy with another " \
                         "driver?)"
        if why:
            self.info = [x for x in info if x is not None]
            answered = [i for i, x in enumerate(info) if x is not None]
            self._drop(answered)
            self.kill()
            raise PartyFailure("; ".join(f"server {i} at {self._where(i)} {w}"
                                         for i, w in sorted(why.items()))
                               + " (the servers that answered keep serving)")
        return [x for x in info if x is not None]

    def _drop(self, parties: Sequence[int]) -> None:
        """``drop_session`` at ``parties`` only, each on its own (best effort)."""
        seq, self._seq = self._seq, self._seq + 1
        frame = Frame(FrameKind.CONTROL, DRIVER, 0, "setup",
                      dumps({"seq": seq, "cmd": "drop_session", "kwargs": {}})).encode()
        for i in parties:
            try:
                self.control[i].settimeout(15.0)
                self.control[i].sendall(frame)
                read_frame_sync(self.control[i])
            except (OSError, TransportError, ValueError):
                pass

    def _check_parties(self) -> None:
        where = [self._where(i) for i in range(self.m)]
        sizes = {int(info["m"]) for info in self.info}
        if sizes != {self.m}:  # the count first: the order cannot be right if it is wrong
            self._refuse(f"--servers-at lists {self.m} addresses, but the servers there "
                         f"belong to a group of {' and '.join(map(str, sorted(sizes)))}: "
                         "list every server's --control address, in --party order")
        wrong = [f"{where[i]} is party {info['pid']}" for i, info in enumerate(self.info)
                 if info["pid"] != i]
        if wrong:
            self._refuse(f"--servers-at lists the servers out of order ({'; '.join(wrong)}): "
                         "list the --control addresses in --party order, 0 first")
        peer_lists = {tuple(info.get("peers") or ()) for info in self.info}
        if len(peer_lists) > 1:
            lists = "; ".join(f"{where[i]} has {','.join(info.get('peers') or ['?'])}"
                              for i, info in enumerate(self.info))
            self._refuse(f"the servers were started with different --peers lists ({lists}): "
                         "restart them with one list")
        for key in ("threshold", "modulus", "bit_length", "mix32_64bit"):
            values = {info[key] for info in self.info}
            if len(values) != 1:
                self._refuse(f"servers disagree on {key}: {values}")
        self.threshold = int(self.info[0]["threshold"])
        self.bit_length = int(self.info[0]["bit_length"])
        missing = sorted({"distaim_score"} - set(self.info[0]["commands"]))
        if missing:
            self._refuse(f"servers lack commands {missing}: start them with `flaimsim serve`")

    def _refuse(self, reason: str) -> None:
        """Refuse these servers without harming them: end the session (nothing secure ran)
        so that they wait for the next driver, then raise :class:`PartyFailure`."""
        self._drop(range(len(self.control)))  # servers without it exit, as before
        self.kill()
        raise PartyFailure(f"{reason} (the servers keep serving)")

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

