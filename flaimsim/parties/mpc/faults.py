"""Who failed, in words a user can act on: the compute server to blame when several have
exited (the cause before its consequences), a stalled server's process state, and why a
control connection could not be made. Used by :mod:`flaimsim.parties.mpc.launcher`."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any, Sequence

SERVER_PROGRAM = "flaimsim.parties.mpc.server_loop"  # what `python -m` runs for a server

# Exit codes that are consequences of another party's failure (server.py's EXIT_*).
CONSEQUENCES = {3: "its driver connection dropped", 5: "an MPyC peer disconnected"}


def blame(exited: Sequence[tuple[int, Any, int]], doing: str) -> str:
    """Who failed first: a server killed by a signal, then one that exited by itself, before
    those that only followed (peer or driver lost); the followers are named as such."""
    def rank(item: tuple[int, Any, int]) -> tuple[int, int]:
        i, _, rc = item
        return (0 if rc < 0 else 2 if rc in CONSEQUENCES else 1, i)

    ordered = sorted(exited, key=rank)
    i, p, rc = ordered[0]
    how = (f"was killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with code {rc}")
    text = f"server {i} (pid {p.pid}) {how} while {doing}"
    rest = [f"server {j} exited with code {c}" + (f" ({CONSEQUENCES[c]})" if c in CONSEQUENCES
                                                  else "") for j, _, c in ordered[1:]]
    return text + (f"; then {', '.join(rest)}" if rest else "")


def process_state(pid: int) -> str | None:
    """"stopped (SIGSTOP?)" etc. from /proc (Linux); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            code = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    return {"T": "is stopped (SIGSTOP or SIGTSTP)", "t": "is stopped by a debugger",
            "Z": "has exited", "D": "is blocked in the kernel (disk or network)"}.get(
                code, "is running")


def server_processes(ppid: int) -> dict[int, list[str]]:
    """The compute-server processes whose parent is ``ppid``: pid -> command line (from /proc,
    Linux; processes that vanish while being read are skipped)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == ppid and SERVER_PROGRAM in argv:
            out[int(entry)] = argv
    return out


def connect_reason(exc: OSError) -> str:
    """Why a control connection failed, in words a user can act on."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listening there: is `flaimsim serve` running?)"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "no answer (host unreachable or the port filtered?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return exc.strerror or str(exc)
