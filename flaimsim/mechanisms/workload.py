"""The workload W, its candidates W+ (downward closure) and their weights.

W: all k-way attribute sets in column order, of which ``num_marginals`` are drawn without
replacement by ``numpy.random.default_rng(seed)`` (the paper's seed is 123). On Adult with the
domain file's column order this gives 161 candidates (14 one-way, 83 two-way, 64 three-way)
and 2,870,490 cells. Weight of a candidate r: w_r = Σ_{s∈W} |r ∩ s|.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

Clique = tuple[str, ...]


@dataclass(frozen=True)
class Workload:
    """Workload marginals, candidate marginals W+ (one-ways first) and candidate weights."""

    domain: tuple[tuple[str, int], ...]
    marginals: tuple[Clique, ...]
    candidates: tuple[Clique, ...]
    weights: tuple[float, ...]

    @property
    def sizes(self) -> dict[str, int]:
        return dict(self.domain)

    def n_cells(self, clique: Sequence[str]) -> int:
        sizes = self.sizes
        return int(np.prod([sizes[a] for a in clique], dtype=np.int64))

    @property
    def one_ways(self) -> tuple[Clique, ...]:
        """Every attribute's one-way marginal, measured in AIM's initialisation.

        Equal to the one-ways of W+ whenever the workload covers every attribute (Adult,
        SynthFS); otherwise the uncovered attributes are still measured, so that the model
        spans the whole domain, and d1 counts them.
        """
        return tuple((a,) for a, _ in self.domain)

    @property
    def answered(self) -> tuple[Clique, ...]:
        """Every marginal a protocol may measure: W+ then any one-way W+ lacks."""
        return self.candidates + tuple(c for c in self.one_ways if c not in self.candidates)

    @property
    def total_cells(self) -> int:
        return sum(self.n_cells(c) for c in self.candidates)

    def weight(self, clique: Clique) -> float:
        return self.weights[self.candidates.index(clique)]

    def summary(self) -> dict[str, int]:
        by_order = {f"candidates_{k}way": sum(1 for c in self.candidates if len(c) == k)
                    for k in sorted({len(c) for c in self.candidates})}
        return {"workload_marginals": len(self.marginals), "candidates": len(self.candidates),
                "cells": self.total_cells, **by_order}


def downward_closure(marginals: Sequence[Clique]) -> list[Clique]:
    """Every non-empty subset of every marginal, ordered by size then first appearance."""
    seen: dict[Clique, None] = {}
    for k in range(1, max((len(m) for m in marginals), default=0) + 1):
        for m in marginals:
            for sub in itertools.combinations(m, k):
                seen.setdefault(sub, None)
    return list(seen)


def candidate_weights(candidates: Sequence[Clique], marginals: Sequence[Clique]) -> list[float]:
    """w_r = Σ_{s∈W} |r ∩ s|."""
    return [float(sum(len(set(r) & set(s)) for s in marginals)) for r in candidates]


def make_workload(domain: Mapping[str, int], degree: int = 3, num_marginals: int | None = 64,
                  seed: int = 123, marginals: Sequence[Clique] | None = None) -> Workload:
    """Seeded random ``degree``-way workload (or the given ``marginals``) with W+ and weights."""
    columns = list(domain)
    if marginals is None:
        if not 1 <= degree <= len(columns):
            raise ValueError(f"degree must be in 1..{len(columns)}, got {degree}")
        every = list(itertools.combinations(columns, degree))
        if num_marginals is not None and num_marginals < len(every):
            if num_marginals < 1:
                raise ValueError("num_marginals must be >= 1")
            picks = np.random.default_rng(seed).choice(len(every), num_marginals, replace=False)
            every = [every[i] for i in picks]
        marginals = every
    for m in marginals:
        unknown = [a for a in m if a not in domain]
        if unknown:
            raise ValueError(f"workload marginal {m} names unknown attributes {unknown}")
    marginals = [tuple(m) for m in marginals]
    cands = downward_closure(marginals)
    return Workload(tuple((a, int(domain[a])) for a in columns), tuple(marginals), tuple(cands),
                    tuple(candidate_weights(cands, marginals)))
