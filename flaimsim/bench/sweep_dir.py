"""A sweep directory: its layout, each cell's key, reading finished cells back (a corrupt
cell file is named and set aside in ``cells/corrupt/``), and the summary ``sweep.csv``.
Running the cells is :mod:`flaimsim.bench.sweep`'s; this module only stores and reads.

Layout of a sweep directory ``DIR``::

    DIR/sweep-config.json          the resolved base configuration and the axes (a later
                                   sweep into DIR adds its cells to the list)
    DIR/cells/<key>.json           one finished cell: its config, record and notes
    DIR/cells/<key>.ledger.csv     that cell's communication ledger
    DIR/sweep.csv                  one row per finished cell: every record field
    DIR/failures.json              cells that raised (retried on the next run)

A cell's key is readable (protocol, data set, partition, ε, T, seed) plus a hash of the
options that differ from ``RunConfig``'s defaults, so that changing any option never reuses a
stale result, while a new option added with a default (which keeps the old behaviour) leaves
every finished cell's key as it was: a long sweep survives the code growing an option. A cell
counts as done when its JSON exists (written last, atomically) and its stored configuration
agrees with the wanted one on every option both know (:func:`stale_options`): a cell run
under an option's old default is set aside in ``cells/stale/`` and run again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from flaimsim.protocols.config import RunConfig
from flaimsim.safe_output import open_atomic

CELLS = "cells"
CORRUPT = "corrupt"  # cells/corrupt/: cell files that could not be read, set aside


def non_default_options(config: RunConfig) -> dict[str, Any]:
    """The options of ``config`` that differ from a default ``RunConfig``'s."""
    defaults = RunConfig().to_dict()
    return {k: v for k, v in config.to_dict().items() if k not in defaults or v != defaults[k]}


def cell_key(config: RunConfig) -> str:
    """``<protocol>-<dataset>-<partition>-e<ε>-T<T>-s<seed>-<hash of the non-default
    options>`` (module docstring)."""
    digest = hashlib.sha1(json.dumps(non_default_options(config), sort_keys=True, default=str)
                          .encode()).hexdigest()[:8]
    return (f"{config.protocol}-{config.dataset}-{config.partition}-e{config.epsilon:g}"
            f"-T{config.rounds}-s{config.seed}-{digest}")


def read_config(out: Path) -> dict[str, Any]:
    """DIR/sweep-config.json (``{}`` when absent); :class:`CellError` when unreadable."""
    path = out / "sweep-config.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CellError(f"{path}: not valid JSON ({exc}); move it aside to start the "
                        "sweep's list of cells afresh") from None
    if not isinstance(doc, dict):
        raise CellError(f"{path}: expected a JSON object")
    return doc


@dataclass(frozen=True)
class Cell:
    """One finished cell as read back: its record and where its ledger is."""

    key: str
    record: dict[str, Any]
    ledger_path: Path | None
    config: dict[str, Any] = field(default_factory=dict)   # the options it ran with

    def ledger(self):
        """The cell's ledger, parsed once per file version: a report reads each ledger
        for several tables and plots (Adult's grid: 180 reads of 44 files, 3.3 s)."""
        if self.ledger_path is None or not self.ledger_path.is_file():
            raise FileNotFoundError(f"cell {self.key}: ledger not found at {self.ledger_path}")
        return _read_ledger(self.ledger_path)


# Parsed ledgers by (path, mtime, size), least recently used first; at most _LEDGER_ROWS rows
# (a 44-cell Adult grid has 174 k).
_LEDGERS: "OrderedDict[tuple, Any]" = OrderedDict()
_LEDGER_ROWS = 600_000


def _read_ledger(path: Path):
    from flaimsim.parties.ledger import Ledger

    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _LEDGERS:
        _LEDGERS.move_to_end(key)
        return _LEDGERS[key]
    ledger = Ledger.read_csv(path)
    _LEDGERS[key] = ledger
    rows = sum(len(v.rows) for v in _LEDGERS.values())
    while len(_LEDGERS) > 1 and rows > _LEDGER_ROWS:
        rows -= len(_LEDGERS.popitem(last=False)[1].rows)
    return ledger


class CellError(ValueError):
    """A cell file that cannot be read (cut, empty or of the wrong shape), named."""


def read_cell(path: Path) -> Cell:
    """One cell JSON; :class:`CellError` naming the file when it is not a finished cell."""
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CellError(f"{path}: not a complete cell file (cut or empty?): {exc}") from None
    if not isinstance(d, dict) or not isinstance(d.get("key"), str) \
            or not isinstance(d.get("record"), dict):
        raise CellError(f"{path}: not a cell file (expected an object with 'key' and "
                        f"'record')")
    ledger = d.get("ledger")
    config = d.get("config")
    return Cell(d["key"], d["record"], path.parent / ledger if ledger else None,
                config if isinstance(config, dict) else {})


def stale_options(cell: Cell, config: RunConfig) -> list[str]:
    """Options on which a finished cell and ``config`` disagree (both knowing them):
    non-empty when a default changed after the cell ran."""
    stored = cell.config
    wanted = json.loads(json.dumps(config.to_dict(), default=str))
    return sorted(k for k in stored.keys() & wanted.keys() if stored[k] != wanted[k])


def set_aside(path: Path, folder: str = "corrupt") -> Path:
    """Move a cell file (and its ledger) to ``cells/<folder>/`` (``corrupt``, or ``stale``
    for a cell run under an option's old default); where it went."""
    corrupt = path.parent / folder
    corrupt.mkdir(exist_ok=True)
    target = corrupt / path.name
    os.replace(path, target)
    ledger = path.with_name(path.name[:-len(".json")] + ".ledger.csv")
    if ledger.is_file():
        os.replace(ledger, corrupt / ledger.name)
    return target


def load_cells(out_dir: str | Path, keys: Iterable[str] | None = None,
               on_corrupt: Callable[[CellError], None] | None = None) -> list[Cell]:
    """Finished cells of a sweep directory (those listed in sweep-config.json if present).
    A corrupt cell file is passed to ``on_corrupt`` and skipped (default: one line on
    stderr naming it)."""
    out = Path(out_dir)
    cells_dir = out / CELLS
    if not cells_dir.is_dir():
        raise FileNotFoundError(f"{out} is not a sweep directory (no {CELLS}/ folder)")
    if keys is None and (out / "sweep-config.json").is_file():
        keys = read_config(out).get("cells")
    paths = ([cells_dir / f"{k}.json" for k in keys] if keys is not None
             else sorted(p for p in cells_dir.glob("*.json") if not p.name.startswith(".")))
    cells = []
    for p in paths:
        if not p.is_file():
            continue
        try:
            cells.append(read_cell(p))
        except CellError as exc:
            (on_corrupt or _warn_corrupt)(exc)
    return drop_duplicates(cells)


def effective_options(cell: Cell, defaults: dict[str, Any]) -> str:
    """The options a cell ran with, an option it predates read as today's default
    (``defaults``, JSON-shaped; it behaved so): equal for two cells that are the same
    computation under any key scheme."""
    return json.dumps({k: cell.config.get(k, v) for k, v in defaults.items()}, sort_keys=True)


def drop_duplicates(cells: Sequence[Cell]) -> list[Cell]:
    """The cells with each computation once, the last listed kept: a sweep folder's list
    keeps the keys of earlier sweeps, and when the key scheme changed (session 3: a key
    hashes only non-default options) the same protocol, T and seed under the same options
    was listed under its old key and its new one, and counted twice in the means."""
    defaults = json.loads(json.dumps(RunConfig().to_dict(), default=str))

    def identity(c: Cell) -> tuple:
        if not c.config:
            return (c.key,)
        return (effective_options(c, defaults), *(str(c.record.get(k)) for k in
                                        ("protocol", "dataset", "rounds", "seed")))

    last = {identity(c): i for i, c in enumerate(cells)}
    return [c for i, c in enumerate(cells) if last[identity(c)] == i]


def _warn_corrupt(exc: CellError) -> None:
    print(f"flaimsim: skipping a corrupt cell: {exc} (a resumed sweep reruns it)",
          file=sys.stderr)


def _csv_value(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return ";".join(map(str, v))
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return "" if v is None else v


def write_sweep_csv(out_dir: str | Path, keys: Sequence[str] | None = None) -> Path:
    """DIR/sweep.csv: one row per finished cell, every record field plus cell and ledger."""
    out = Path(out_dir)
    cells = load_cells(out, keys)
    columns: list[str] = ["cell"]
    for c in cells:
        columns += [k for k in c.record if k not in columns]
    columns.append("ledger")
    path = out / "sweep.csv"
    with open_atomic(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for c in cells:
            row = {k: _csv_value(v) for k, v in c.record.items()}
            row["cell"] = c.key
            row["ledger"] = (str(c.ledger_path.relative_to(out)) if c.ledger_path else "")
            w.writerow(row)
    return path


__all__ = ["CELLS", "CORRUPT", "Cell", "CellError", "cell_key", "read_cell", "set_aside",
           "load_cells", "read_config", "write_sweep_csv"]
