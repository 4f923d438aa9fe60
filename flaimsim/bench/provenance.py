"""Which code made a figure, when and where: the stamp on every generated table, report
and plot (``commit``, ``date``, ``machine``)."""

from __future__ import annotations

import os
import time
from importlib import metadata
from pathlib import Path


def provenance() -> dict[str, str]:
    """Which code made the figures, when and where: the flaimsim commit (``git`` in the
    package's checkout, with ``+dirty`` for uncommitted changes), UTC date, host and cores."""
    import subprocess

    here = Path(__file__).resolve().parents[1]   # the flaimsim package folder
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit = (commit + ("+dirty" if dirty else "")) if commit else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if not commit:   # an installed copy without its git checkout: the package version
        try:
            commit = f"flaimsim {metadata.version('flaimsim')} (no git)"
        except metadata.PackageNotFoundError:
            commit = "flaimsim (no git, version unknown)"
    return {"commit": commit,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{os.uname().nodename}, {os.cpu_count()} cores, "
                       f"{os.uname().sysname} {os.uname().machine}"}
