"""Where the data sets live: the copies shipped in the package, the data cache, mirrors.

Lookup order for a data set (first hit wins):

1. an explicit folder: ``--data-dir``, ``FLAIMSIM_<NAME>_DIR`` (private-pgm files) or
   ``FLAIMSIM_RAW_DIR`` / ``--from`` (raw files);
2. the copy shipped in this package (Adult, Magic, Marketing: ``flaimsim/datasets/files``);
3. the data cache ``$FLAIMSIM_DATA`` (default ``$FLAIMSIM_CACHE/data``, i.e.
   ``~/.cache/flaimsim/data``), where ``flaimsim data fetch`` puts Census and Covtype;
4. a ``shared/data`` folder beside the checkout (the project's own mirror; optional).

This module imports nothing from flaimsim, so the loaders can use it from any layer.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent / "files"

# SHA-256 of the shipped private-pgm CSVs once decompressed: private-pgm's data/adult.csv
# as the project checked it (48,842 records). Checked every time the copy is unpacked.
SHIPPED_PGM_SHA256 = {
    "adult": "de1b8341b65de6081d50863b9c15b90ed976e7e47322a7efc37968db98705400",
}


def cache_root() -> Path:
    """flaimsim's cache: ``$FLAIMSIM_CACHE``, else ``~/.cache/flaimsim`` (cost tables,
    embeddings, k-means splits, data)."""
    return Path(os.environ.get("FLAIMSIM_CACHE", Path.home() / ".cache" / "flaimsim"))


def data_cache() -> Path:
    """``$FLAIMSIM_DATA``, else ``$FLAIMSIM_CACHE/data``, else ``~/.cache/flaimsim/data``."""
    if os.environ.get("FLAIMSIM_DATA"):
        return Path(os.environ["FLAIMSIM_DATA"])
    return cache_root() / "data"


def fetched_raw_dir() -> Path:
    """Where ``flaimsim data fetch`` moves verified raw files."""
    return data_cache() / "raw"


def mirror_dirs(*parts: str) -> list[Path]:
    """``shared/data/<parts>`` beside the working directory's parent, beside the checkout,
    or two levels up (git worktrees): the project's own optional mirror."""
    repo_root = Path(__file__).resolve().parents[2]
    tail = Path("shared", "data", *parts)
    found: dict[Path, Path] = {}
    for path in (Path.cwd() / ".." / tail, repo_root / ".." / tail,
                 repo_root / ".." / ".." / tail):
        found.setdefault(path.resolve(), path)
    return list(found.values())


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class ShippedDataError(ValueError):
    """A shipped copy that is missing, damaged, or cannot be unpacked."""


def shipped_pgm_dir(name: str) -> Path | None:
    """A folder holding the shipped ``<name>.csv`` and ``<name>-domain.json``, unpacked into
    the data cache on first use (checked against its pinned SHA-256, moved into place
    atomically); None when the package ships no such set."""
    packed = SHIPPED_DIR / f"{name}.csv.gz"
    domain = SHIPPED_DIR / f"{name}-domain.json"
    if name not in SHIPPED_PGM_SHA256 or not (packed.is_file() and domain.is_file()):
        return None
    pinned = SHIPPED_PGM_SHA256[name]
    out = data_cache() / f"{name}-shipped-{pinned[:12]}"
    if (out / f"{name}.csv").is_file() and (out / f"{name}-domain.json").is_file():
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".{name}.csv.tmp{os.getpid()}"
        digest = hashlib.sha256()
        with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
            while block := src.read(1 << 20):
                digest.update(block)
                dst.write(block)
        if digest.hexdigest() != pinned:
            tmp.unlink()
            raise ShippedDataError(f"the shipped {packed} is damaged: SHA-256 "
                                   f"{digest.hexdigest()}, expected {pinned}; reinstall "
                                   f"flaimsim")
        tmp_domain = out / f".{name}-domain.json.tmp{os.getpid()}"
        tmp_domain.write_bytes(domain.read_bytes())
        os.replace(tmp_domain, out / f"{name}-domain.json")  # concurrent unpackers: atomic
        os.replace(tmp, out / f"{name}.csv")  # last: its presence means the copy is whole
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ShippedDataError(f"cannot unpack the shipped {name} data into {out} ({exc}); "
                               f"set FLAIMSIM_DATA to a writable folder") from exc
    return out


__all__ = ["SHIPPED_DIR", "data_cache", "fetched_raw_dir", "mirror_dirs", "sha256_file",
           "shipped_pgm_dir", "ShippedDataError"]
