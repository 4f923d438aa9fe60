"""``flaimsim data fetch census|covtype``: download, verify, move into place, prepare.

A raw file travels in four steps, and only the last one makes it visible:

1. **download** into ``<cache>/raw/.partial/<name>.<url digest>.part`` (HTTP GET with a
   ``Range`` header resuming a previous part, a socket timeout, retries with exponential
   back-off, a tqdm progress bar); a local folder given by ``--from`` is read in place;
2. **check the bytes** against the source's published SHA-256, when one is pinned;
3. **check the structure and the records**: every line has the data set's number of fields,
   the number of data lines is the documented one, and the SHA-256 of the data lines equals
   the pin (:mod:`flaimsim.datasets.catalog`); a source in another layout (plain text, or no
   header where the raw folder has one, as UCI's ``covtype.data.gz``) is rewritten in the raw
   folder's layout (gzip, the data set's header line when it has one) into a hidden temporary;
4. **move into place** with ``os.replace``.

A failure at step 2 or 3 deletes the part and the rewritten copy; one at step 1 keeps the part
(hidden, named ``.part``) so the next run resumes it. Every error names the URL.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from flaimsim.datasets.catalog import REMOTE, RemoteFile, Source
from flaimsim.datasets.store import fetched_raw_dir, sha256_file
from flaimsim.mechanisms.raw_data import RAW_SPECS, RawSpec

_BLOCK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"


class FetchError(ValueError):
    """A download or a downloaded file that cannot be used; the message names the URL."""


@dataclass(frozen=True)
class FetchOptions:
    """``timeout``: seconds a connect or a read may block; ``retries``: further attempts after
    a network failure (an HTTP 4xx is final), waiting ``backoff · 2^k`` seconds before each."""

    timeout: float = 60.0
    retries: int = 3
    backoff: float = 2.0
    progress: bool = True


# ---- step 1: download -----------------------------------------------------------------------

def _is_url(origin: str) -> bool:
    return "://" in origin


def sources_for(file: RemoteFile, origin: str | None) -> tuple[Source, ...]:
    """The catalog's public sources, or ``origin/<name>`` for a mirror (URL or folder)."""
    if origin is None:
        return file.sources
    if _is_url(origin):
        return (Source(origin.rstrip("/") + "/" + urllib.request.quote(file.name)),)
    return (Source(str(Path(origin).expanduser() / file.name)),)


def _transient(exc: BaseException) -> str:
    """What went wrong, in a few words, for a network failure worth retrying."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out (no data within the timeout)"
    return f"{type(exc).__name__}: {exc}"


def download(url: str, part: Path, options: FetchOptions, label: str) -> None:
    """GET ``url`` into ``part``, resuming from its current length when the server honours
    ``Range``; retry transient failures. Raises :class:`FetchError` naming the URL."""
    for attempt in range(options.retries + 1):
        start = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": "flaimsim-data-fetch"}
        if start:
            headers["Range"] = f"bytes={start}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                        timeout=options.timeout) as response:
                if start and response.status != 206:
                    start = 0  # the server sent the whole file: start over
                expected = None if response.length is None else start + response.length
                _copy_body(response, part, start, expected, options, label)
            if expected is not None and part.stat().st_size != expected:
                raise http.client.IncompleteRead(b"", expected - part.stat().st_size)
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start:  # the part is stale or complete: start over
                part.unlink(missing_ok=True)
                error = f"HTTP {exc.code} {exc.reason}"
            elif exc.code < 500 and exc.code not in (408, 429):
                raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            else:
                error = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            error = _transient(exc)
        if attempt < options.retries:
            time.sleep(options.backoff * 2 ** attempt)
    kept = ""
    if part.is_file() and part.stat().st_size:
        kept = f"; the partial download is kept in {part.parent} and resumed by the next fetch"
    else:
        part.unlink(missing_ok=True)
    raise FetchError(f"{url}: {error}, after {options.retries + 1} attempt(s){kept}")


def _copy_body(response: http.client.HTTPResponse, part: Path, start: int, expected: int | None,
               options: FetchOptions, label: str) -> None:
    from tqdm import tqdm

    with open(part, "ab" if start else "wb") as out, \
            tqdm(total=expected, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                 desc=label, disable=not options.progress, leave=False,
                 file=sys.stderr) as bar:
        while block := response.read1(_BLOCK):  # what has arrived: a stall keeps it
            out.write(block)
            bar.update(len(block))


# ---- step 3: structure, records and the pinned digest ---------------------------------------

@dataclass(frozen=True)
class Checked:
    """What step 3 found: data lines, their SHA-256, whether the source had a header and
    was gzip-compressed."""

    rows: int
    lines_sha256: str
    had_header: bool
    gzipped: bool


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == _GZIP_MAGIC


def _open_bytes(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _fields(line: bytes) -> list[bytes]:
    if b'"' in line:
        import csv

        return [f.encode() for f in next(csv.reader([line.decode("utf-8", "replace")]))]
    return line.split(b",")


def _data_lines(path: Path, spec: RawSpec, origin: str, header: list[bool]
                ) -> Iterator[bytes]:
    """The data lines of ``path`` without line ends, checking every line's field count;
    ``header[0]`` is set when the first line is the data set's header."""
    n_fields = len(spec.columns)
    names = [c.encode() for c in spec.columns]
    try:
        with _open_bytes(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                if line_no == 1 and [f.strip() for f in _fields(line)] == names:
                    header[0] = True
                    continue
                count = len(_fields(line)) if b'"' in line else line.count(b",") + 1
                if count != n_fields:
                    raise FetchError(f"{origin}: line {line_no} has {count} field(s); "
                                     f"{spec.name} has {n_fields}: not this data set's file")
                yield line
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise FetchError(f"{origin}: the file is truncated or corrupt ({exc})") from None


def _consume(batch: list[bytes], digest, out: gzip.GzipFile | None) -> int:
    """Hash (and write) a batch of data lines, each ended by a newline; empty the batch."""
    if not batch:
        return 0
    block = b"\n".join(batch) + b"\n"
    digest.update(block)
    if out is not None:
        out.write(block)
    n = len(batch)
    batch.clear()
    return n


def check_file(path: Path, file: RemoteFile, spec: RawSpec, origin: str,
               rewrite_to: Path | None = None) -> Checked:
    """Check ``path`` (gzip or text) against ``file``'s documented rows and pinned data-line
    digest; write it in the raw layout to ``rewrite_to`` on the way. Raises FetchError."""
    digest, rows, header = hashlib.sha256(), 0, [False]
    raw_out = open(rewrite_to, "wb") if rewrite_to is not None else None
    out = None
    if raw_out is not None:
        out = gzip.GzipFile(filename=file.name, mode="wb", mtime=0, fileobj=raw_out)
        if spec.header:
            out.write(",".join(spec.columns).encode() + b"\n")
    try:
        batch: list[bytes] = []
        for line in _data_lines(path, spec, origin, header):
            batch.append(line)
            if len(batch) >= 8192:
                rows += _consume(batch, digest, out)
        rows += _consume(batch, digest, out)
    finally:
        if out is not None and raw_out is not None:
            out.close()
            raw_out.close()
    if rows != file.rows:
        raise FetchError(f"{origin}: {rows:,} data line(s), {file.name} documents "
                         f"{file.rows:,}: the file is truncated or not the documented one")
    if digest.hexdigest() != file.lines_sha256:
        raise FetchError(f"{origin}: SHA-256 of the data lines is {digest.hexdigest()}, "
                         f"expected {file.lines_sha256} (the copy the project checked)")
    return Checked(rows, digest.hexdigest(), header[0], _is_gzip(path))


# ---- steps 1-4 for one file, then a data set -------------------------------------------------

def fetch_file(file: RemoteFile, spec: RawSpec, dest: Path, origin: str | None,
               options: FetchOptions) -> Path:
    """Bring ``file`` into ``dest`` from its first source that works (all four steps)."""
    errors = []
    for source in sources_for(file, origin):
        try:
            return _fetch_from(source, file, spec, dest, options)
        except FetchError as exc:
            errors.append(str(exc))
    raise FetchError("; ".join(errors))


def _fetch_from(source: Source, file: RemoteFile, spec: RawSpec, dest: Path,
                options: FetchOptions) -> Path:
    partial = dest / ".partial"
    local = not _is_url(source.url)
    if local:
        staged = Path(source.url)
        if not staged.is_file():
            raise FetchError(f"{source.url}: no such file")
    else:
        partial.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(source.url.encode()).hexdigest()[:12]
        staged = partial / f"{file.name}.{key}.part"
        download(source.url, staged, options, file.name)
    tmp = dest / f".{file.name}.tmp{os.getpid()}"
    try:
        if source.sha256 is not None and sha256_file(staged) != source.sha256:
            raise FetchError(f"{source.url}: SHA-256 of the download is "
                             f"{sha256_file(staged)}, expected {source.sha256}")
        checked = check_file(staged, file, spec, source.url)
        if checked.gzipped and checked.had_header == spec.header:  # already the raw layout
            shutil.copyfile(staged, tmp)
        else:
            check_file(staged, file, spec, source.url, rewrite_to=tmp)
        os.replace(tmp, dest / file.name)
    except FetchError:
        if not local:
            staged.unlink(missing_ok=True)  # refused: nothing to resume from
        raise
    finally:
        tmp.unlink(missing_ok=True)
    if not local:
        staged.unlink(missing_ok=True)
    return dest / file.name


def fetch(name: str, origin: str | None = None, options: FetchOptions = FetchOptions(),
          dest: Path | None = None, catalog: dict[str, tuple[RemoteFile, ...]] = REMOTE,
          force: bool = False) -> list[Path]:
    """Fetch every raw file of ``name`` into ``dest`` (default: the data cache's raw folder).
    A file already there is checked again (structure, rows, digest) instead of downloaded,
    unless ``force``; one that fails the check is fetched anew."""
    if name not in catalog:
        raise FetchError(f"nothing to fetch for {name!r}: fetchable data sets are "
                         f"{', '.join(sorted(catalog))} (Adult, Magic and Marketing ship "
                         f"with the package)")
    spec = RAW_SPECS[name]
    dest = Path(dest) if dest is not None else fetched_raw_dir()
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for file in catalog[name]:
        target = dest / file.name
        if target.is_file() and not force:
            try:
                check_file(target, file, spec, str(target))
                paths.append(target)
                continue
            except FetchError:
                target.unlink()  # it fails its pins: not to be used
        paths.append(fetch_file(file, spec, dest, origin, options))
    return paths


# ---- the command ----------------------------------------------------------------------------

def add_fetch_parser(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "fetch", help="download a large data set's raw files into the data cache, verify "
        "them (structure, documented rows, pinned SHA-256) and prepare it")
    p.add_argument("name", choices=sorted(REMOTE))
    p.add_argument("--from", dest="origin", default=None, metavar="URL_OR_DIR",
                   help="a mirror holding the raw folder's file names (a base URL or a local "
                        "folder) instead of the public sources (docs/data.md)")
    p.add_argument("--timeout", type=float, default=FetchOptions.timeout,
                   help="seconds a connect or read may stall (default %(default)s)")
    p.add_argument("--retries", type=int, default=FetchOptions.retries,
                   help="further attempts after a network failure (default %(default)s)")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.add_argument("--no-prepare", action="store_true",
                   help="only fetch and verify; do not code the set into the cache")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from flaimsim.mechanisms.raw_data import prepared_dir

    if args.timeout <= 0 or args.retries < 0:
        raise FetchError("--timeout must be > 0 and --retries >= 0")
    options = FetchOptions(timeout=args.timeout, retries=args.retries,
                           progress=sys.stderr.isatty())
    paths = fetch(args.name, args.origin, options, force=args.force)
    for path, file in zip(paths, REMOTE[args.name]):
        print(f"{file.name}: {file.rows:,} data lines, SHA-256 of the data lines as pinned "
              f"-> {path}")
    if not args.no_prepare:
        out = prepared_dir(args.name, raw_dir=paths[0].parent)
        print(f"{args.name}: prepared (the paper's subsample) -> {out}; "
              f"`--dataset {args.name}` now reads it")
    return 0


__all__ = ["FetchError", "FetchOptions", "Checked", "check_file", "download", "fetch",
           "fetch_file", "sources_for", "add_fetch_parser", "command"]
