"""Signals for the command line: SIGTERM handled like Ctrl-C, and worker processes that
never outlive their driver.

- :func:`terminate_as_interrupt`: in the driver, SIGTERM raises :class:`Terminated` in the
  main thread (a ``BaseException``, like ``KeyboardInterrupt``), so that ``finally`` blocks
  run (MPC servers stopped, folder lock released) and the command ends in one line with
  exit code 143 (SIGINT: 130).
- :func:`worker_init`: in a pool worker, Ctrl-C to the process group is ignored (the driver
  decides; no traceback from every worker), SIGTERM raises :class:`Terminated` (the cell's
  ``finally`` blocks stop its MPC servers), and a watcher thread ends the worker once its
  parent is gone (a driver killed with SIGKILL leaves no orphans writing cells).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Iterator

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number


class Terminated(SystemExit):
    """SIGTERM arrived (raised in the main thread, as Ctrl-C raises KeyboardInterrupt). A
    ``SystemExit`` with code 143: an idle pool worker that gets it exits without a
    traceback, and ``except Exception`` never swallows it."""

    def __init__(self) -> None:
        super().__init__(143)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside: SIGTERM raises :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """While inside: SIGINT and SIGTERM are ignored (a cleanup that a second Ctrl-C must
    not cut short). Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def stop_processes(procs: list, grace_s: float = 5.0) -> None:
    """SIGTERM each process, wait up to ``grace_s`` in all, then SIGKILL what is left."""
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        with contextlib.suppress(Exception):
            if p.is_alive():
                p.kill()
                p.join(2.0)


def _watch_parent(parent: int, period_s: float) -> None:
    while True:
        time.sleep(period_s)
        if os.getppid() != parent:
            os._exit(143)  # the driver is gone: nobody will read what this worker makes


def worker_init(watch_period_s: float = 1.0) -> None:
    """Pool worker setup (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_terminated)
    threading.Thread(target=_watch_parent, args=(os.getppid(), watch_period_s),
                     name="flaimsim-parent-watch", daemon=True).start()


__all__ = ["EXIT_CODES", "Terminated", "shielded", "stop_processes", "terminate_as_interrupt",
           "worker_init"]
