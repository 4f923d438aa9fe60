"""Graphical-model adapter over private-pgm (``mbi`` 2.0): fitting, fast exact marginals,
the AIM size filter, log-likelihood and synthetic data.

The model is a Markov random field P(x) ∝ exp(Σ_c θ_c(x_c)) over the cliques measured so far.
``mbi``'s ``model.project`` JIT-compiles variable elimination per new clique (~1 s each here;
PGM-NOTES), so marginals for candidate scoring are computed instead by one opt_einsum
contraction per clique over exp(θ_c − max θ_c), normalised and scaled to the model's total:
exact up to float64 rounding.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_enable_compilation_cache", False)

import mbi  # noqa: E402
import numpy as np  # noqa: E402
import opt_einsum  # noqa: E402
from mbi import junction_tree  # noqa: E402

from flaimsim.mechanisms.data import Table  # noqa: E402

Clique = tuple[str, ...]


@dataclass(frozen=True)
class Measurement:
    """A noisy answer y = M_q(D) + N(0, σ² I) for clique q (float vector, C order)."""

    clique: Clique
    values: np.ndarray
    sigma: float

    def to_mbi(self) -> mbi.LinearMeasurement:
        return mbi.LinearMeasurement(np.asarray(self.values, dtype=float), self.clique,
                                     stddev=float(self.sigma))


def merge_by_clique(measurements: Sequence[Measurement]) -> list[Measurement]:
    """One measurement per clique: the inverse-variance weighted mean ȳ with
    σ̄ = (Σ 1/σ_i²)^(−1/2).

    Exact for mbi's squared-L2 loss, Σ_i ‖y_i − μ‖²/σ_i² = ‖ȳ − μ‖²/σ̄² + const, so the fit is
    the same; it keeps the number of loss terms (and JAX recompilation) to the number of
    distinct cliques when a marginal is measured again (AIM repeats, FLAIM's proxy).
    """
    groups: dict[Clique, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault(tuple(m.clique), []).append(m)
    out = []
    for clique, ms in groups.items():
        if len(ms) == 1:
            out.append(ms[0])
            continue
        weights = np.array([1.0 / m.sigma ** 2 for m in ms])
        mean = sum(w * np.asarray(m.values, dtype=float) for w, m in zip(weights, ms))
        out.append(Measurement(clique, mean / weights.sum(), float(weights.sum() ** -0.5)))
    return out


def mbi_domain(columns: Sequence[str], sizes: Sequence[int]) -> mbi.Domain:
    return mbi.Domain(tuple(columns), tuple(int(s) for s in sizes))


@dataclass
class GraphicalModel:
    """A fitted model plus the fitting settings used to refit it with warm starts."""

    domain: mbi.Domain
    mrf: mbi.MarkovRandomField | None = None
    iters_warm: int = 200
    iters_cold: int = 1000
    _log_tables: dict[Clique, np.ndarray] = field(default_factory=dict, repr=False)

    @staticmethod
    def for_table(table: Table, iters_warm: int = 200, iters_cold: int = 1000
                  ) -> "GraphicalModel":
        return GraphicalModel(mbi_domain(table.columns, table.sizes), None, iters_warm,
                              iters_cold)

    # ---- fitting ---------------------------------------------------------------------
    def fit(self, measurements: Sequence[Measurement], iters: int | None = None,
            known_total: float | None = None) -> "GraphicalModel":
        """Mirror descent on all measurements, warm-started from the current model."""
        if not measurements:
            raise ValueError("cannot fit a model without measurements")
        if iters is None:
            iters = self.iters_cold if self.mrf is None else self.iters_warm
        self.mrf = mbi.estimation.MirrorDescent().estimate(
            self.domain, [m.to_mbi() for m in merge_by_clique(measurements)],
            known_total=known_total,
            iters=int(iters), warm_start=self.mrf)
        self._log_tables = {}
        return self

    @property
    def fitted(self) -> mbi.MarkovRandomField:
        if self.mrf is None:
            raise RuntimeError("the model has not been fitted yet")
        return self.mrf

    @property
    def cliques(self) -> list[Clique]:
        return [tuple(c) for c in self.fitted.cliques]

    @property
    def total(self) -> float:
        return float(self.fitted.total)

    # ---- exact marginals ---------------------------------------------------------------
    def _shifted_log_tables(self) -> dict[Clique, np.ndarray]:
        if not self._log_tables:
            for cl in self.fitted.cliques:
                theta = np.asarray(self.fitted.potentials[cl].values, dtype=float)
                self._log_tables[tuple(cl)] = theta - theta.max()
        return self._log_tables

    def _contract(self, target: Sequence[str]) -> tuple[np.ndarray, float]:
        """(v, s) with Σ_{x∖target} Π_c exp(θ_c − max θ_c) = v·exp(s), over ``target``.

        Factors are contracted pairwise along opt_einsum's greedy path and each intermediate
        is divided by its maximum (its log added to s): one product over many sharp cliques
        would underflow to zero (seen on Adult). Attributes that no clique mentions
        contribute a uniform factor; ``target=()`` gives log Z as log v + s.
        """
        tables = self._shifted_log_tables()
        label = {a: i for i, a in enumerate(self.domain.attributes)}
        ops: list[tuple[np.ndarray, list[int]]] = [
            (np.exp(logt), [label[a] for a in cl]) for cl, logt in tables.items()]
        covered = {label[a] for cl in tables for a in cl}
        ops += [(np.ones(self.domain[a]), [label[a]]) for a in target
                if label[a] not in covered]
        wanted = [label[a] for a in target]
        sym = opt_einsum.get_symbol
        equation = ",".join("".join(sym(i) for i in idx) for _, idx in ops) + "->" + "".join(
            sym(i) for i in wanted)
        path, _ = opt_einsum.contract_path(equation, *[arr.shape for arr, _ in ops],
                                           optimize="greedy", shapes=True)
        log_scale = 0.0
        for step in path:
            picked = [ops[i] for i in step]
            for i in sorted(step, reverse=True):
                ops.pop(i)
            keep = set(wanted).union(*[set(idx) for _, idx in ops])
            out_idx = [i for i in sorted({i for _, idx in picked for i in idx}) if i in keep]
            args: list = []
            for arr, idx in picked:
                args += [arr, idx]
            out = np.einsum(*args, out_idx)
            peak = float(out.max())
            if peak > 0:
                out, log_scale = out / peak, log_scale + math.log(peak)
            ops.append((out, out_idx))
        (arr, idx), = ops
        return np.transpose(arr, [idx.index(i) for i in wanted]), log_scale

    def marginal(self, clique: Sequence[str]) -> np.ndarray:
        """Model counts M̂_q (scaled to the model's total), flattened in C order over ``clique``."""
        clique = tuple(clique)
        if self.fitted.marginals.supports(clique):
            fac = self.fitted.marginals.project(clique).transpose(clique)
            vals = np.asarray(fac.values, dtype=float)
            return (vals / vals.sum() * self.total).ravel()
        out, _ = self._contract(clique)
        return (out / out.sum() * self.total).ravel()

    def marginals(self, cliques: Sequence[Sequence[str]]) -> dict[Clique, np.ndarray]:
        return {tuple(c): self.marginal(c) for c in cliques}

    # ---- log-likelihood ----------------------------------------------------------------
    def log_partition(self) -> float:
        """log Z of exp(Σ_c θ_c), over the full domain (uncovered attributes uniform)."""
        covered = {a for cl in self._shifted_log_tables() for a in cl}
        uncovered = sum(math.log(self.domain[a]) for a in self.domain.attributes
                        if a not in covered)
        value, log_scale = self._contract(())
        return math.log(float(value)) + log_scale + uncovered

    def nll(self, table: Table) -> float:
        """Mean negative log-likelihood of ``table``'s records (nats per record)."""
        if table.n == 0:
            raise ValueError("cannot compute NLL on an empty table")
        tables = self._shifted_log_tables()
        logp = np.zeros(table.n)
        for cl, logt in tables.items():
            idx = tuple(table.column(a) for a in cl)
            logp += logt[idx]
        return float(-(logp.mean() - self.log_partition()))

    # ---- AIM size filter and generation ------------------------------------------------
    def size_mb(self, extra: Sequence[Clique] = ()) -> float:
        """Junction-tree size in MB (mbi's rule) of the model cliques plus ``extra``."""
        cliques = (self.cliques if self.mrf is not None else []) + [tuple(c) for c in extra]
        return float(junction_tree.hypothetical_model_size(self.domain, cliques))

    def in_model(self, clique: Sequence[str]) -> bool:
        return self.mrf is not None and any(set(clique) <= set(c) for c in self.cliques)

    def synthetic(self, rows: int, seed: int) -> Table:
        """``rows`` synthetic records. mbi samples with numpy's global RNG: seeded here."""
        np.random.seed(seed % 2**32)
        ds = self.fitted.synthetic_data(rows=int(rows))
        cols = list(self.domain.attributes)
        values = np.stack([np.asarray(ds.to_dict()[c], dtype=np.int64) for c in cols], axis=1)
        return Table(tuple(cols), tuple(self.domain.shape), values)

    def clique_table_bytes(self, element_bytes: int = 8) -> int:
        """Bytes of the model's clique tables (what a FLAIM server broadcasts)."""
        return int(sum(self.domain.size(c) for c in self.fitted.cliques) * element_bytes)


def filter_by_size(model: GraphicalModel, candidates: Sequence[Clique], max_size_mb: float,
                   spent_fraction: float) -> list[Clique]:
    """AIM's size filter: keep r if the junction tree of (cliques ∪ {r}) is at most
    max_size · (spent / ρ) MB, or r already lies inside a model clique."""
    limit = max_size_mb * spent_fraction
    return [r for r in candidates if model.in_model(r) or model.size_mb([r]) <= limit]
