"""Compute servers started ahead of the protocol that uses them.

Three MPyC server processes take about a second and a half to import and connect on two
cores. A run of several protocols (the main job) knows from the start that DistAIM will need
them, so :func:`prestart_servers` starts a :class:`ServerLauncher` in a background thread
while the data set is prepared and the protocols before DistAIM run. :func:`connect_servers`
then takes it instead of starting its own, when m and
the launcher options are the same; the time spent waiting for it, if any, is DistAIM's.

A prestarted launcher is one fresh session: it is handed out once, and one that nobody claims
is closed by :func:`release_prestarted` (the interpreter's exit kills it otherwise). If the
background start failed, ``connect_servers`` starts the servers itself and the first error is
kept in :data:`LAST_ERROR` (it is reported by the fresh start's own failure if it recurs).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from flaimsim.parties.mpc.launcher import (LauncherConfigError, RemoteServers, ServerLauncher,
                                           install_signal_cleanup)

LAST_ERROR: list[BaseException] = []


@dataclass
class _Pending:
    thread: threading.Thread
    started: float
    result: dict[str, Any] = field(default_factory=dict)


_PENDING: dict[tuple[Any, ...], _Pending] = {}


def _key(m: int, options: dict[str, Any]) -> tuple[Any, ...]:
    return (int(m),) + tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                    for k, v in options.items()))


def prestart_servers(m: int, **options: Any) -> None:
    """Start m local servers with ``ServerLauncher(m, **options)`` in the background."""
    key = _key(m, options)
    if key in _PENDING:
        return
    install_signal_cleanup()          # the main thread's handlers, before the thread starts
    started = time.perf_counter()
    result: dict[str, Any] = {}

    def start() -> None:
        try:
            result["launcher"] = ServerLauncher(m=m, **options).start()
        except BaseException as exc:  # noqa: BLE001 - reported through LAST_ERROR
            result["error"] = exc
        result["ready_s"] = time.perf_counter() - started

    thread = threading.Thread(target=start, name="flaimsim-server-prestart", daemon=True)
    pending = _Pending(thread, started, result)
    _PENDING[key] = pending
    pending.thread.start()


def claim(m: int, options: dict[str, Any]) -> ServerLauncher | None:
    """The prestarted launcher for exactly these options (waiting for it), else None."""
    pending = _PENDING.pop(_key(m, options), None)
    if pending is None:
        return None
    pending.thread.join()
    if "error" in pending.result:
        LAST_ERROR.append(pending.result["error"])
        return None
    launcher: ServerLauncher = pending.result["launcher"]
    launcher.prestart_ready_s = pending.result["ready_s"]
    return launcher


def release_prestarted() -> int:
    """Close every prestarted launcher nobody claimed; returns how many were closed."""
    closed = 0
    while _PENDING:
        _, pending = _PENDING.popitem()
        pending.thread.join()
        launcher = pending.result.get("launcher")
        if launcher is not None:
            launcher.close()
            closed += 1
    return closed


def connect_servers(m: int, servers_at: Sequence[tuple[str, int]] | None = None,
                    **launcher_options: Any) -> ServerLauncher:
    """Started servers: ``RemoteServers(servers_at)`` if addresses are given, else the ones
    this module started ahead with the same options, else m spawned here with
    ``launcher_options``."""
    if servers_at:
        if len(servers_at) != m:
            raise LauncherConfigError(f"{len(servers_at)} server addresses for m={m} servers")
        opts = {k: v for k, v in launcher_options.items()
                if k in ("start_timeout", "command_timeout")}
        return RemoteServers(servers_at, **opts).start()
    prestarted = claim(m, launcher_options)
    return prestarted or ServerLauncher(m=m, **launcher_options).start()


__all__ = ["prestart_servers", "claim", "release_prestarted", "connect_servers", "LAST_ERROR"]
