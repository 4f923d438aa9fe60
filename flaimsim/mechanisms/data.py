"""Tabular data in the private-pgm format: integer codes per column plus a public domain.

Owns the value type every other module passes around (:class:`Table`), marginal counting,
the CSV + domain-JSON loader with its input validation, the seeded train/test split and the
public coarsening rule for large domains.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

Clique = tuple[str, ...]


class DataError(ValueError):
    """A data file or table that does not match its domain."""


@dataclass(frozen=True)
class Table:
    """N records over named attributes with finite domains.

    ``values[i, j]`` is record i's code for ``columns[j]``, in ``0 .. domain[columns[j]] - 1``.
    """

    columns: tuple[str, ...]
    sizes: tuple[int, ...]
    values: np.ndarray  # (N, d) int64

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[1] != len(self.columns):
            raise DataError(
                f"values must be (N, {len(self.columns)}), got {self.values.shape}")
        if len(self.sizes) != len(self.columns):
            raise DataError("one domain size per column is required")

    @property
    def domain(self) -> dict[str, int]:
        return dict(zip(self.columns, self.sizes))

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    def size(self, clique: Sequence[str]) -> int:
        """Number of cells n_q = prod of |Omega_a| for a in q."""
        dom = self.domain
        return int(np.prod([dom[a] for a in clique], dtype=np.int64))

    def marginal(self, clique: Sequence[str]) -> np.ndarray:
        """Count vector M_q(D) as int64, flattened in C order over ``clique``'s attribute order."""
        idx = [self.columns.index(a) for a in clique]
        shape = tuple(self.sizes[i] for i in idx)
        if not idx:
            return np.array([self.n], dtype=np.int64)
        flat = np.ravel_multi_index(tuple(self.values[:, i] for i in idx), shape)
        return np.bincount(flat, minlength=int(np.prod(shape))).astype(np.int64)

    def subset(self, rows: np.ndarray) -> "Table":
        return Table(self.columns, self.sizes, self.values[rows])

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.columns.index(name)]

    def to_mbi(self):
        """The same records as an ``mbi.Dataset``."""
        from flaimsim.mechanisms.mbi_setup import Domain, full

        return full().Dataset({c: self.values[:, j] for j, c in enumerate(self.columns)},
                       Domain(self.columns, self.sizes))

    @staticmethod
    def concat(tables: Iterable["Table"]) -> "Table":
        tables = list(tables)
        if not tables:
            raise DataError("cannot concatenate zero tables")
        first = tables[0]
        for t in tables[1:]:
            if t.columns != first.columns or t.sizes != first.sizes:
                raise DataError("tables have different domains")
        return Table(first.columns, first.sizes, np.concatenate([t.values for t in tables]))


# --------------------------------------------------------------------------------------------
# Loading: private-pgm format (CSV of integer codes with a header + domain JSON)
# --------------------------------------------------------------------------------------------

_INTEGER_TEXT = r"[+-]?\d{1,18}"  # at most 18 digits: always fits in int64
_NAN_TEXT = {"nan", "na", "n/a", "null", "none", "<na>"}


def load_domain(domain_path: str | Path) -> dict[str, int]:
    """Read a domain JSON ``{column: cardinality}``; the key order is the column order."""
    domain_path = Path(domain_path)
    if not domain_path.is_file():
        raise DataError(f"domain file not found: {domain_path}")
    try:
        raw = json.loads(domain_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{domain_path.name}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{domain_path.name}: the domain must be a non-empty JSON object "
                        f"{{column: cardinality}}, got {type(raw).__name__}")
    for column, size in raw.items():
        # bool is an int subclass in Python; true/false is not a cardinality.
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise DataError(f"{domain_path.name}: column {column!r} has cardinality {size!r}; "
                            f"a positive integer is required")
    return {str(c): int(s) for c, s in raw.items()}


def _cell_error(csv_name: str, column: str, row: int, problem: str) -> DataError:
    return DataError(f"{csv_name}: column {column!r}, row {row}: {problem}")


def _read_header(csv_path: Path) -> list[str]:
    """The first non-blank row, stripped (pandas skips leading blank lines too)."""
    try:
        with open(csv_path, newline="") as handle:
            first = next((row for row in csv.reader(handle) if row), None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path.name}: not a readable CSV text file ({exc})") from exc
    if not first or all(not c.strip() for c in first):
        raise DataError(f"{csv_path.name}: the file is empty (a header row is required)")
    return [c.strip() for c in first]


def _ragged_row_error(csv_path: Path, n_fields: int) -> DataError:
    """The first data row whose number of fields differs from the header's."""
    with open(csv_path, newline="") as handle:
        rows = (row for row in csv.reader(handle) if row)
        next(rows)  # the header
        data_row = 0
        for fields in rows:  # blank lines are skipped, as pandas does
            data_row += 1
            if len(fields) != n_fields:
                return DataError(f"{csv_path.name}: row {data_row} has {len(fields)} fields, "
                                 f"the header has {n_fields}")
    return DataError(f"{csv_path.name}: cannot parse the CSV")


def load_pgm(csv_path: str | Path, domain_path: str | Path) -> Table:
    """Load a private-pgm data set: a CSV of integer codes with a header, plus its domain JSON.

    Columns come in the domain JSON's order. Every cell must be an integer in
    ``0 .. cardinality - 1``. Rows in error messages are 1-based data rows (the header is row 0;
    blank lines are skipped and not counted).
    """
    import pandas as pd

    csv_path = Path(csv_path)
    domain = load_domain(domain_path)
    if not csv_path.is_file():
        raise DataError(f"data file not found: {csv_path}")
    name = csv_path.name
    header = _read_header(csv_path)
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DataError(f"{name}: duplicated column(s) {duplicated} in the header")
    try:
        with warnings.catch_warnings():
            # pandas only warns (and drops data) when a row has more fields than the header.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # Fast path: let pandas infer types; an all-integer column needs no per-cell check.
            frame = pd.read_csv(csv_path, skipinitialspace=True, index_col=False)
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise _ragged_row_error(csv_path, len(header)) from exc
    frame.columns = header  # the stripped names

    missing = [c for c in domain if c not in header]
    if missing:
        raise DataError(f"{name}: missing column(s) {missing} listed in the domain")
    extra = [c for c in header if c not in domain]
    if extra:
        raise DataError(f"{name}: extra column(s) {extra} not in the domain")
    if len(frame) == 0:
        raise DataError(f"{name}: the file has a header but no data rows")

    columns = tuple(domain)
    values = np.empty((len(frame), len(columns)), dtype=np.int64)
    for j, column in enumerate(columns):
        if frame[column].dtype.kind == "i":
            codes = frame[column].to_numpy(dtype=np.int64)
        else:
            codes = _codes_from_text(csv_path, column, header.index(column), domain[column])
        outside = (codes < 0) | (codes >= domain[column])
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise _cell_error(name, column, i + 1,
                              f"value {codes[i]} is outside 0..{domain[column] - 1} "
                              f"({int(outside.sum())} such cell(s) in this column)")
        values[:, j] = codes
    return Table(columns, tuple(domain[c] for c in columns), values)


def _codes_from_text(csv_path: Path, column: str, position: int, size: int) -> np.ndarray:
    """Re-read one column as text and report its first cell that is not an integer literal."""
    import pandas as pd

    name = csv_path.name
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True,
                        index_col=False, usecols=[position])
    text = frame.iloc[:, 0].fillna("").astype(str).str.strip()
    bad = ~text.str.fullmatch(_INTEGER_TEXT).to_numpy(dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        cell = text.iloc[i]
        if cell == "":
            problem = "empty cell"
        elif cell.lower() in _NAN_TEXT:
            problem = f"missing value {cell!r} (NaN)"
        elif cell.lstrip("+-").isdigit():
            problem = f"value {cell} is outside 0..{size - 1}"
        else:
            problem = f"non-integer value {cell!r}"
        raise _cell_error(name, column, i + 1, problem
                          + f" ({int(bad.sum())} bad cell(s) in this column)")
    return text.to_numpy(dtype=str).astype(np.int64)


def _env_var_for(name: str) -> str:
    return "FLAIMSIM_" + "".join(ch if ch.isalnum() else "_" for ch in name).upper() + "_DIR"


def _data_dir_candidates(name: str) -> list[Path]:
    """Where ``name``'s files are looked for, in order (see :func:`default_data_dir`)."""
    from flaimsim.datasets.store import ShippedDataError, mirror_dirs, shipped_pgm_dir

    candidates = []
    env = os.environ.get(_env_var_for(name))
    if env:
        candidates.append(Path(env))
    try:
        shipped = shipped_pgm_dir(name)
    except ShippedDataError as exc:
        raise DataError(str(exc)) from exc
    if shipped is not None:
        candidates.append(shipped)
    return candidates + mirror_dirs(name)


def default_data_dir(name: str) -> Path:
    """The directory holding ``<name>.csv``: the env var ``FLAIMSIM_<NAME>_DIR`` (e.g.
    ``FLAIMSIM_ADULT_DIR``), then the copy shipped in the package (Adult, unpacked into the
    data cache), then the optional mirror ``shared/data/<name>`` beside the working
    directory's parent or the checkout (:func:`flaimsim.datasets.store.mirror_dirs`).
    Raises :class:`DataError` listing what was tried."""
    candidates = _data_dir_candidates(name)
    for directory in candidates:
        if (directory / f"{name}.csv").is_file():
            return directory.resolve()
    tried = ", ".join(str(d / f"{name}.csv") for d in candidates)
    raise DataError(f"data set {name!r} not found; tried {tried}. Pass data_dir or set "
                    f"{_env_var_for(name)}")


def load_dataset(name: str, data_dir: str | Path | None = None) -> Table:
    """Load ``<data_dir>/<name>.csv`` with ``<data_dir>/<name>-domain.json`` (e.g. "adult").

    Without ``data_dir``, a paper data set (magic, covtype, census, marketing) that is not
    found where :func:`default_data_dir` looks is prepared from its raw files into the cache
    (:func:`flaimsim.mechanisms.raw_data.prepared_dir`, with the paper's subsampling)."""
    if data_dir is None:
        from flaimsim.mechanisms.raw_data import RAW_SPECS, prepared_dir

        if name in RAW_SPECS and not any((d / f"{name}.csv").is_file()
                                         for d in _data_dir_candidates(name)):
            data_dir = prepared_dir(name)
    directory = default_data_dir(name) if data_dir is None else Path(data_dir)
    csv_path = directory / f"{name}.csv"
    domain_path = directory / f"{name}-domain.json"
    for path in (csv_path, domain_path):
        if not path.is_file():
            raise DataError(f"data set {name!r}: file not found: {path}")
    return load_pgm(csv_path, domain_path)


# --------------------------------------------------------------------------------------------
# Train/test split and public coarsening
# --------------------------------------------------------------------------------------------

def train_test_split(table: Table, test_fraction: float = 0.1,
                     rng: np.random.Generator | int | None = None) -> tuple[Table, Table]:
    """Seeded random split: ``round(N * test_fraction)`` test records, the rest for training.

    Each part keeps the original record order (rows are chosen by a permutation from ``rng``).
    """
    if rng is None:
        raise ValueError("train_test_split needs rng (a seeded numpy Generator or an int seed)")
    rng = np.random.default_rng(rng)  # a Generator passes through unchanged
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = int(round(table.n * test_fraction))
    if n_test < 1 or n_test > table.n - 1:
        raise DataError(f"cannot split {table.n} record(s) with test_fraction={test_fraction}: "
                        f"both parts must be non-empty")
    order = rng.permutation(table.n)
    test_rows = np.sort(order[:n_test])
    train_rows = np.sort(order[n_test:])
    return table.subset(train_rows), table.subset(test_rows)


def coarsen(table: Table, max_bins: int) -> tuple[Table, dict[str, np.ndarray]]:
    """Public, data-independent coarsening: every attribute with |Omega_a| > B is mapped
    ``code -> code * B // |Omega_a|``, i.e. B groups of consecutive codes of (near) equal width.

    Returns the new table and, per changed attribute, the mapping array old code -> new code.
    Every new code in 0..B-1 is the image of at least one old code (the group width is > 1).
    """
    if isinstance(max_bins, bool) or not isinstance(max_bins, (int, np.integer)) or max_bins < 2:
        raise ValueError(f"max_bins must be an integer >= 2, got {max_bins!r}")
    bins = int(max_bins)
    values = table.values.copy()
    sizes = list(table.sizes)
    mappings: dict[str, np.ndarray] = {}
    for j, (column, size) in enumerate(zip(table.columns, table.sizes)):
        if size > bins:
            mapping = np.arange(size, dtype=np.int64) * bins // size
            mappings[column] = mapping
            values[:, j] = mapping[values[:, j]]
            sizes[j] = bins
    return Table(table.columns, tuple(sizes), values), mappings
