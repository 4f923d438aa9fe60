"""``flaimsim data list``: each of the paper's data sets, where this machine has it, or the
command that gets it."""

from __future__ import annotations

import argparse
from pathlib import Path

from flaimsim.datasets.catalog import REMOTE
from flaimsim.datasets.store import SHIPPED_DIR, data_cache
from flaimsim.mechanisms.data import DataError, default_data_dir
from flaimsim.mechanisms.raw_data import RAW_SPECS, RawDataError, raw_dir_for

PAPER_SETS = ("adult", "magic", "marketing", "census", "covtype")


def locate(name: str) -> tuple[str, Path | None]:
    """(where, folder): ``package``, ``cache``, ``elsewhere`` (an env folder or a mirror) or
    ``missing`` (folder None)."""
    try:
        folder = raw_dir_for(name) if name in RAW_SPECS else default_data_dir(name)
    except (DataError, RawDataError):
        return "missing", None
    if folder.name.startswith(f"{name}-shipped-"):  # the shipped copy, unpacked
        return "package", folder
    for label, root in (("package", SHIPPED_DIR), ("cache", data_cache())):
        if folder.resolve().is_relative_to(root.resolve()):
            return label, folder
    return "elsewhere", folder


def command(args: argparse.Namespace) -> int:
    for name in PAPER_SETS:
        where, folder = locate(name)
        if folder is None:
            how = (f"`flaimsim data fetch {name}`" if name in REMOTE
                   else "not provided (docs/data.md)")
            print(f"{name:<10} missing    get it with {how}")
        else:
            print(f"{name:<10} {where:<10} {folder}")
    print(f"data cache: {data_cache()} ($FLAIMSIM_DATA); sources and licences: docs/data.md")
    return 0


def add_list_parser(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser("list", help="the paper's data sets: where each is found here "
                                         "(package, cache, a mirror) or how to get it")
    p.set_defaults(func=command)


__all__ = ["PAPER_SETS", "locate", "command", "add_list_parser"]
