"""Graphical-model adapter: fitting, exact marginals, the AIM size filter, log-likelihood
and synthetic data, over ``mbi``'s (private-pgm 2.0) domain and junction-tree helpers.

The model is a Markov random field P(x) ∝ exp(Σ_c θ_c(x_c)) over the cliques measured so far.
It is fitted by :mod:`~flaimsim.mechanisms.mirror_descent` (``mbi``'s estimator in numpy:
``mbi``'s JAX version recompiles for every new clique set, i.e. every AIM round, 5–11 s
each on Adult) and kept as log-potentials plus the calibrated junction tree
(:mod:`~flaimsim.mechanisms.junction`). A marginal inside a tree node is read off the tree;
any other (a candidate spanning nodes) is one opt_einsum contraction of the node and
separator marginals on the subtree that covers it, normalised and scaled to the model's
total: exact up to float64 rounding, and no JIT (``mbi``'s ``project`` compiles per clique).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from flaimsim.mechanisms.data import Table
from flaimsim.mechanisms.junction import (ContractionCache, JunctionTree, canonical, contract,
                                          from_canonical, logsumexp, model_size_mb,
                                          summed_axes, to_canonical)
from flaimsim.mechanisms import mbi_setup, memo
from flaimsim.mechanisms.mbi_setup import Domain
from flaimsim.mechanisms.mirror_descent import FitResult, FitSettings, MirrorDescent
from flaimsim.mechanisms.sampling import synthetic_records

if TYPE_CHECKING:  # the whole of mbi imports JAX: only for the mbi fitter (mbi_setup.full)
    import mbi

Clique = tuple[str, ...]


@dataclass(frozen=True)
class Measurement:
    """A noisy answer y = M_q(D) + N(0, σ² I) for clique q (float vector, C order)."""

    clique: Clique
    values: np.ndarray
    sigma: float

    def to_mbi(self) -> mbi.LinearMeasurement:
        mbi = mbi_setup.full()
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


def mbi_domain(columns: Sequence[str], sizes: Sequence[int]) -> Domain:
    return Domain(tuple(columns), tuple(int(s) for s in sizes))


FITTERS = ("numpy", "mbi")


@dataclass
class GraphicalModel:
    """A fitted model plus the fitting settings used to refit it with warm starts.

    ``fitter="numpy"`` (default) runs :mod:`flaimsim.mechanisms.mirror_descent` (no JIT, so
    no recompilation when the cliques change); ``"mbi"`` runs ``mbi``'s JAX MirrorDescent,
    kept for comparison. Either way the fit is stored as numpy log-potentials with the
    calibrated junction tree, which serve marginals, likelihoods and synthetic data.
    ``tol`` switches on the stopping rule of :class:`~flaimsim.mechanisms.mirror_descent.
    FitSettings` (the iteration counts become caps).
    """

    domain: Domain
    iters_warm: int = 200
    iters_cold: int = 1000
    tol: float | None = None
    fitter: str = "numpy"
    result: FitResult | None = field(default=None, repr=False)
    _log_tables: dict[Clique, np.ndarray] = field(default_factory=dict, repr=False)
    # 1/μ of the fitted tree's separators, shared by the round's candidate marginals
    _separators: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, init=False,
                                                           repr=False)
    _steps: ContractionCache = field(default_factory=ContractionCache, init=False, repr=False)
    _mrf: mbi.MarkovRandomField | None = field(default=None, repr=False)
    # memo (:mod:`~flaimsim.mechanisms.memo`): size of (model cliques ∪ {r}) per r, valid
    # while the model's clique set is the one in the key
    _sizes: tuple[tuple[Clique, ...], dict[Clique, float]] = field(
        default=((), {}), repr=False)

    def __post_init__(self) -> None:
        if self.fitter not in FITTERS:
            raise ValueError(f"unknown fitter {self.fitter!r}; choose one of {FITTERS}")

    @staticmethod
    def for_table(table: Table, iters_warm: int = 200, iters_cold: int = 1000,
                  tol: float | None = None, fitter: str = "numpy") -> "GraphicalModel":
        return GraphicalModel(mbi_domain(table.columns, table.sizes), iters_warm, iters_cold,
                              tol, fitter)

    # ---- fitting ---------------------------------------------------------------------
    def fit(self, measurements: Sequence[Measurement], iters: int | None = None,
            known_total: float | None = None, tol: float | None = None) -> "GraphicalModel":
        """Mirror descent on all measurements (merged per clique), warm-started from the
        current model; ``tol`` (default: the model's) stops it early on a flat loss."""
        if not measurements:
            raise ValueError("cannot fit a model without measurements")
        if iters is None:
            iters = self.iters_cold if self.result is None else self.iters_warm
        settings = FitSettings(int(iters), self.tol if tol is None else tol)
        merged = merge_by_clique(measurements)
        problem = MirrorDescent(self.domain, [(m.clique, m.values, m.sigma) for m in merged],
                                self.result.tree if self.result else None)
        warm = dict(zip(self.result.tree.cliques, self.result.potentials)) if self.result \
            else None
        if self.fitter == "numpy":
            self.result = problem.run(settings, warm, known_total)
        else:
            self.result = fit_with_mbi(problem, merged, settings, warm, known_total)
        self._log_tables, self._mrf = {}, None
        self._separators, self._steps = {}, ContractionCache()
        return self

    @property
    def tree(self) -> JunctionTree:
        if self.result is None:
            raise RuntimeError("the model has not been fitted yet")
        return self.result.tree

    @property
    def cliques(self) -> list[Clique]:
        """The potentials' cliques (the maximal measured ones, spelled as measured)."""
        return list(self._spelled())

    def _spelled(self) -> dict[Clique, int]:
        if self.result is None:
            raise RuntimeError("the model has not been fitted yet")
        return {c: k for k, c in enumerate(self.result.spelled)}

    @property
    def potentials(self) -> dict[Clique, np.ndarray]:
        """θ per clique, axes in the clique's own order (what FLAIM broadcasts)."""
        pots = self.tree_potentials()
        return {c: from_canonical(self.domain, c, pots[k]) for c, k in self._spelled().items()}

    def tree_potentials(self) -> list[np.ndarray]:
        return self.result.potentials if self.result is not None else []

    @property
    def total(self) -> float:
        if self.result is None:
            raise RuntimeError("the model has not been fitted yet")
        return float(self.result.total)

    @property
    def fitted(self) -> mbi.MarkovRandomField:
        """The model as an ``mbi.MarkovRandomField`` (for interoperability and tests)."""
        if self._mrf is None:
            mbi, jax = mbi_setup.full(), mbi_setup.jax
            cliques = self.cliques
            pots = self.potentials
            mu = self.tree.clique_marginals(self.result.node_marginals)
            fac = {c: mbi.Factor(self.domain.project(c), jax.numpy.asarray(pots[c]))
                   for c in cliques}
            marg = {c: mbi.Factor(self.domain.project(c), jax.numpy.asarray(
                from_canonical(self.domain, c, mu[k]))) for c, k in self._spelled().items()}
            self._mrf = mbi.MarkovRandomField(
                potentials=mbi.CliqueVector(self.domain, cliques, fac),
                marginals=mbi.CliqueVector(self.domain, cliques, marg), total=self.total)
        return self._mrf

    # ---- exact marginals ---------------------------------------------------------------
    def _shifted_log_tables(self) -> dict[Clique, np.ndarray]:
        if not self._log_tables:
            for cl, theta in zip(self.tree.cliques, self.tree_potentials()):
                self._log_tables[cl] = theta - theta.max()
        return self._log_tables

    def _contract(self, target: Sequence[str]) -> tuple[np.ndarray, float]:
        """(v, s) with Σ_{x∖target} Π_c exp(θ_c − max θ_c) = v·exp(s) (see ``contract``)."""
        tables = self._shifted_log_tables()
        return contract(self.domain, [(np.exp(t), c) for c, t in tables.items()], target)

    def marginal(self, clique: Sequence[str]) -> np.ndarray:
        """Model counts M̂_q (scaled to the model's total), flattened in C order over ``clique``."""
        clique = tuple(clique)
        held = self.tree.project(self.fitted_nodes, clique)
        if held is not None:  # inside a junction-tree node: read off the calibrated tree
            return from_canonical(self.domain, clique, held).ravel()
        out = from_canonical(self.domain, clique,
                             self.tree.spanning_marginal(self.fitted_nodes, clique,
                                                         self._separators, self._steps))
        mass = float(out.sum())
        if not (math.isfinite(mass) and mass > 0):
            # the contraction underflowed to all zeros (sharp, disagreeing factors: NaiveFLAIM
            # on Marketing at T = 160); values are unchanged wherever it works
            out = from_canonical(self.domain, clique, self._marginal_by_messages(clique))
            mass = float(out.sum())
        return (out / mass * self.total).ravel()

    def _marginal_by_messages(self, clique: Sequence[str]) -> np.ndarray:
        """Domain-ordered P(x_clique) by log-space messages on the junction tree of the model's
        cliques plus ``clique`` (with θ = 0), read off the node that holds it. AIM's size
        filter admits a candidate only if that tree fits the model cap."""
        target = canonical(self.domain, clique)
        tree = JunctionTree(self.domain, list(self.tree.cliques) + [target])
        theta = dict(zip(self.tree.cliques, self.tree_potentials()))
        beliefs = tree.beliefs([theta.get(c, np.zeros(self.domain.project(c).shape))
                                for c in tree.cliques])
        home = tree.node_of(target)
        log_p = logsumexp(beliefs[home], summed_axes(target, tree.nodes[home]))
        p = np.exp(log_p - log_p.max())
        return p / p.sum()

    @property
    def fitted_nodes(self) -> list[np.ndarray]:
        """Calibrated marginals (counts) of the junction-tree nodes, domain-ordered."""
        if self.result is None:
            raise RuntimeError("the model has not been fitted yet")
        return self.result.node_marginals

    def marginals(self, cliques: Sequence[Sequence[str]]) -> dict[Clique, np.ndarray]:
        return {tuple(c): self.marginal(c) for c in cliques}

    # ---- log-likelihood ----------------------------------------------------------------
    def log_partition(self) -> float:
        """log Z of exp(Σ_c θ_c), over the full domain (uncovered attributes uniform)."""
        covered = {a for cl in self._shifted_log_tables() for a in cl}
        uncovered = sum(math.log(self.domain[a]) for a in self.domain.attributes
                        if a not in covered)
        value, log_scale = self._contract(())
        if float(value) > 0 and math.isfinite(float(value)):
            return math.log(float(value)) + log_scale + uncovered
        # Every term of one pairwise product underflowed (sharp factors that disagree, seen
        # in NaiveFLAIM at T = 192 on Marketing): the rescaling between steps cannot help,
        # so pass the junction tree's messages in log space instead.
        return self._log_partition_by_messages() + uncovered

    def _log_partition_by_messages(self) -> float:
        """log Z from the calibrated log-space beliefs: within one connected part of the
        junction tree every node's b_n has log Σ exp b_n = log Z_part, and the parts
        (joined by no message when the tree is a forest) multiply: log Z = Σ_parts."""
        tables = self._shifted_log_tables()
        beliefs = self.tree.beliefs([tables[c] for c in self.tree.cliques])
        total = 0.0
        for node in self.tree.component_roots():
            belief = beliefs[node]
            peak = float(belief.max())
            total += peak + math.log(float(np.exp(belief - peak).sum()))
        return total

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
        cliques = (self.cliques if self.result is not None else []) + [tuple(c) for c in extra]
        return model_size_mb(self.domain, cliques)

    def size_with(self, candidate: Clique) -> float:
        """``size_mb([candidate])``, memoised per model clique set (the size depends on the
        cliques alone, not on the fitted values)."""
        if not memo.enabled():
            return self.size_mb([candidate])
        key = tuple(self.cliques) if self.result is not None else ()
        if self._sizes[0] != key:
            self._sizes = (key, {})
        return memo.remember(self._sizes[1], candidate, lambda r: self.size_mb([r]))

    def in_model(self, clique: Sequence[str]) -> bool:
        return self.result is not None and any(set(clique) <= set(c) for c in self.cliques)

    def synthetic(self, rows: int, seed: int) -> Table:
        """``rows`` synthetic records (:mod:`~flaimsim.mechanisms.sampling`), seeded."""
        values = synthetic_records(self.tree, self.fitted_nodes, int(rows),
                                   np.random.default_rng(seed))
        return Table(tuple(self.domain.attributes), tuple(self.domain.shape), values)

    def clique_table_bytes(self, element_bytes: int = 8) -> int:
        """Bytes of the model's clique tables (what a FLAIM server broadcasts)."""
        return int(sum(self.domain.size(c) for c in self.cliques) * element_bytes)


def filter_by_size(model: GraphicalModel, candidates: Sequence[Clique], max_size_mb: float,
                   spent_fraction: float) -> list[Clique]:
    """AIM's size filter: keep r if the junction tree of (cliques ∪ {r}) is at most
    max_size · (spent / ρ) MB, or r already lies inside a model clique."""
    limit = max_size_mb * spent_fraction
    return [r for r in candidates if model.in_model(r) or model.size_with(r) <= limit]


def fit_with_mbi(problem: MirrorDescent, merged: Sequence[Measurement], settings: FitSettings,
                 warm: dict[Clique, np.ndarray] | None, known_total: float | None
                 ) -> FitResult:
    """The same fit by ``mbi``'s JAX MirrorDescent (recompiles per clique set), stored in
    the numpy form. Its tolerance test runs every 50 iterations, its count rounds up to 50."""
    domain = problem.domain
    mbi, jax = mbi_setup.full(), mbi_setup.jax
    start = None
    if warm:
        start = mbi.CliqueVector(domain, list(warm), {
            c: mbi.Factor(domain.project(c), jax.numpy.asarray(t)) for c, t in warm.items()})
    mrf = mbi.estimation.MirrorDescent().estimate(
        domain, [m.to_mbi() for m in merged], known_total=known_total, iters=settings.iters,
        warm_start=start, tol=settings.tol, patience=settings.patience)
    pots = [to_canonical(domain, c, np.asarray(mrf.potentials[c].values, dtype=float))
            for c in problem.spelled]
    total = float(mrf.total)
    nodes, _, loss, _ = problem.evaluate(pots, total)
    return FitResult(problem.tree, problem.spelled, pots, nodes, total, loss, settings.iters,
                     float("nan"))
