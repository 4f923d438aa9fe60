"""Safe output: every file flaimsim writes goes through this module.

Two things live here.

**Atomic files.** A file is written to a temporary file in the same folder (so that the
rename cannot cross a file system), flushed and ``fsync``-ed, then renamed over the target
with ``os.replace``, and the folder is ``fsync``-ed so the rename itself survives a crash.
A reader (a resume, ``table``, a browser) sees the old complete file or the new complete
file, never a cut one; a failed write (full disk, read-only file system, a size limit)
leaves the old file in place and no temporary behind, and raises :class:`OutputError`
naming the file and the reason in one line. Use::

    write_text(path, text)              # str
    write_bytes(path, data)             # bytes
    write_json(path, obj)               # json.dumps(obj, indent=2, default=str)
    with open_atomic(path, newline="") as fh:   # a text handle: csv writers, to_csv
        ...
    with atomic_path(path) as tmp:      # a path for writers that want one (savefig);
        fig.savefig(tmp)                # tmp keeps path's suffix

**The ``--out`` folder.** :meth:`OutFolder.claim` is called before anything runs. It
creates the folder, takes an exclusive ``flock`` on ``DIR/.flaimsim.lock`` (released by
the kernel when the process ends, however it ends, so a crash never leaves a stale lock),
writes a probe file to prove the folder is writable, and refuses a folder that holds an
earlier run's files (:data:`RUN_FILES`) unless ``force`` is given, in which case those
files are removed first, so that old ledgers never lie beside a new ``result.json``. A
second writer gets ``OutputError`` naming the folder and the pid that holds it. A sweep
claims its folder with ``resumable=True``: earlier cells are its own to keep.

Adding a new output (e.g. ``report.html``): write it with ``folder.write_text(name,
text)`` (or :func:`write_text` on ``folder.path / name``) and, if it belongs to one run,
add its name or glob to :data:`RUN_FILES` so that ``--force`` clears it with the rest.

This module imports nothing from flaimsim, so that every layer may use it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Iterator

LOCK_NAME = ".flaimsim.lock"
# The files one run writes into --out (globs): what --force removes before a new run.
RUN_FILES = ("result.json", "config.json", "ledger-*.csv", "privacy-*.json",
             "privacy-events-*.json", "table.csv", "table.md", "report.html")


class OutputError(OSError):
    """An output that cannot be written, with the file (or folder) and the reason."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.errno = code

    def __str__(self) -> str:
        return str(self.args[0])


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno == errno.EFBIG:
        return "file too large for the file system or the process's size limit"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems do not open folders; the rename still happened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_for(path: Path) -> Path:
    # Hidden, unique per writer, and keeping the suffix (matplotlib picks the format by it).
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
                          f"{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; on a clean exit it is fsync-ed and renamed onto
    ``path``; on any error it is removed and ``path`` is left as it was."""
    target = Path(path)
    tmp = _temp_for(target)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(exc.errno, f"cannot write {target}: {_reason(exc)}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    _fsync_dir(target.parent)


@contextlib.contextmanager
def open_atomic(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` on a temporary file, renamed onto ``path`` once closed."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh


def write_bytes(path: str | Path, data: bytes) -> Path:
    with open_atomic(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, default=str))


class OutFolder:
    """An output folder held by this process (see the module docstring)."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd

    @classmethod
    def claim(cls, path: str | Path, force: bool = False, resumable: bool = False,
              option: str = "--out") -> "OutFolder":
        """Create, lock and probe ``path``; refuse a second writer, and (unless
        ``resumable``) an earlier run's files without ``force``."""
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise OutputError(errno.ENOTDIR, f"{option} {folder} is a file, not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(exc.errno, f"{option} {folder}: cannot create the folder: "
                              f"{_reason(exc)}") from exc
        try:
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(exc.errno, f"{option} {folder} is not writable: "
                              f"{_reason(exc)}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(errno.EBUSY, f"{option} {folder} is in use by another flaimsim "
                              f"run (pid {holder}); wait for it to finish or choose another "
                              f"{option}") from None
        claimed = cls(folder, fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            probe = folder / ".flaimsim-probe"
            write_text(probe, "flaimsim checks that this folder is writable\n")
            probe.unlink()
            if not resumable:
                earlier = claimed.run_files()
                if earlier and not force:
                    names = ", ".join(p.name for p in earlier[:3])
                    more = f" and {len(earlier) - 3} more" if len(earlier) > 3 else ""
                    raise OutputError(errno.EEXIST, f"{option} {folder} already holds an "
                                      f"earlier run ({names}{more}); pass --force to replace "
                                      f"it, or choose another {option}")
                for p in earlier:
                    p.unlink()
        except OSError as exc:
            claimed.release()
            if isinstance(exc, OutputError):
                raise
            raise OutputError(exc.errno, f"{option} {folder} is not writable: "
                              f"{_reason(exc)}") from exc
        return claimed

    def run_files(self) -> list[Path]:
        """The files of an earlier run in this folder (:data:`RUN_FILES`)."""
        found: dict[Path, None] = {}
        for pattern in RUN_FILES:
            for p in sorted(self.path.glob(pattern)):
                if p.is_file():
                    found[p] = None
        return list(found)

    def write_text(self, name: str, text: str) -> Path:
        return write_text(self.path / name, text)

    def write_json(self, name: str, obj: Any, indent: int | None = 2) -> Path:
        return write_json(self.path / name, obj, indent)

    def release(self) -> None:
        """Drop the lock (the lock file stays: removing it would race a waiting writer)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> "OutFolder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["OutputError", "OutFolder", "RUN_FILES", "atomic_path", "open_atomic",
           "write_bytes", "write_text", "write_json"]
