"""Tabular data in the private-pgm format: integer codes per column plus a public domain.

Owns the value type every other module passes around (:class:`Table`), marginal counting,
the CSV + domain-JSON loader with its input validation, the seeded train/test split and the
public coarsening rule for large domains.
"""

from __future__ import annotations

import json
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
        from mbi import Dataset, Domain

        return Dataset({c: self.values[:, j] for j, c in enumerate(self.columns)},
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
