"""Exact inference on a junction tree in plain numpy: the marginal oracle of the fitter.

A :class:`JunctionTree` is built once per clique set (``mbi``'s triangulation and spanning
tree, which are networkx and need no compilation) and then evaluates, for any log-potentials
θ on those cliques, the calibrated node marginals of P(x) ∝ exp(Σ_c θ_c(x_c)) by log-space
HUGIN message passing (the algorithm of ``mbi.marginal_oracles.message_passing_hugin``).

Every array is held with its attributes in domain order, so a separator's axes appear in
the same relative order in both nodes and messages move between nodes by ``reshape`` alone
(no transposes, no einsum parsing): with the few-thousand-cell trees AIM builds, the cost of
a call is its ~10 numpy calls per message, with no JIT to compile when the cliques change.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import numpy as np
import opt_einsum

from flaimsim.mechanisms import memo
from flaimsim.mechanisms.kernels import (_add, _compiled, broadcast_apply, peak_and_shift,
                                         peak_over, sum_over)
from flaimsim.mechanisms.mbi_setup import Domain, junction_tree

Clique = tuple[str, ...]
Axes = tuple[int, ...]


def canonical(domain: Domain, clique: Sequence[str]) -> Clique:
    """``clique``'s attributes in domain order (the layout of every internal array)."""
    return tuple(domain.canonical(tuple(clique)))


def to_canonical(domain: Domain, clique: Sequence[str], values: np.ndarray) -> np.ndarray:
    """A table over ``clique`` (flat C order or shaped) re-laid out in domain order."""
    clique = tuple(clique)
    table = np.asarray(values, dtype=float).reshape(domain.project(clique).shape)
    target = canonical(domain, clique)
    return np.transpose(table, [clique.index(a) for a in target])


def from_canonical(domain: Domain, clique: Sequence[str], table: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_canonical`: a domain-ordered table laid out in ``clique``'s order."""
    source = canonical(domain, clique)
    return np.transpose(table, [source.index(a) for a in tuple(clique)])


def embed_shape(domain: Domain, sub: Clique, sup: Clique) -> tuple[int, ...]:
    """Shape that broadcasts a domain-ordered table over ``sub`` into one over ``sup``."""
    return tuple(domain[a] if a in sub else 1 for a in sup)


def summed_axes(sub: Clique, sup: Clique) -> Axes:
    """Axes of a domain-ordered table over ``sup`` that are summed out to reach ``sub``."""
    return tuple(i for i, a in enumerate(sup) if a not in sub)


def logsumexp(x: np.ndarray, axes: Axes) -> np.ndarray:
    """log Σ exp(x) over ``axes`` (the others kept, in order), shifted by the max for range.

    Written as direct ufunc calls, in place where an array is fresh: the fitter calls this
    ~10 times per step on tables of a few thousand cells, where numpy's per-call overhead is
    most of the cost. The values are those of the plain expression, bit for bit (tested)."""
    if not axes:
        return x
    both = peak_and_shift(x, axes)
    if both is not None:
        shifted, peak = both
    else:
        peak = peak_over(x, axes)
        if not math.isfinite(_add(peak, axis=None)):  # a −inf table (structural zero):
            peak = np.where(np.isfinite(peak), peak, 0.0)  # shift by 0
        shifted = broadcast_apply(np.subtract, x, peak)
    np.exp(shifted, out=shifted)
    out = sum_over(shifted, axes)
    np.log(out, out=out)
    out += peak.reshape(out.shape)
    return out


_max = np.maximum.reduce


@dataclass(frozen=True)
class Message:
    """One HUGIN message i → j: sum node i over ``axes``; broadcast shapes in j and in i."""

    source: int
    target: int
    axes: Axes
    shape_in_target: tuple[int, ...]
    shape_in_source: tuple[int, ...]


class JunctionTree:
    """The junction tree of a clique set, with each clique assigned to one node."""

    def __init__(self, domain: Domain, cliques: Sequence[Sequence[str]]):
        self.domain = domain
        self.cliques: list[Clique] = [canonical(domain, c) for c in cliques]
        jtree, self.elimination_order = junction_tree.make_junction_tree(
            domain, [tuple(c) for c in cliques])
        self.nodes: list[Clique] = [canonical(domain, n) for n in
                                    junction_tree.maximal_cliques(jtree)]
        index = {n: i for i, n in enumerate(self.nodes)}
        self.node_shapes = [tuple(domain.project(n).shape) for n in self.nodes]
        # each clique lives in the smallest node that contains it (mbi's clique_mapping rule)
        self.home = [min((i for i, n in enumerate(self.nodes) if set(c) <= set(n)),
                         key=lambda i: domain.size(self.nodes[i])) for c in self.cliques]
        self.embed = [embed_shape(domain, c, self.nodes[h]) for c, h in zip(self.cliques,
                                                                             self.home)]
        self.messages: list[Message] = []
        for i, j in junction_tree.message_passing_order(jtree):
            a, b = self.nodes[index[canonical(domain, i)]], self.nodes[index[canonical(domain, j)]]
            sep = tuple(x for x in a if x in b)
            self.messages.append(Message(index[a], index[b], summed_axes(sep, a),
                                         embed_shape(domain, sep, b), embed_shape(domain, sep, a)))

        self.edges = sorted({tuple(sorted((m.source, m.target))) for m in self.messages})
        # axes of each clique's home node summed out to reach it (clique_marginals)
        self.clique_axes = [summed_axes(c, self.nodes[h]) for c, h in zip(self.cliques,
                                                                          self.home)]
        self._node_of: dict[Clique, int | None] = {}   # memo: pure functions of the tree
        self._steiner: dict[Clique, tuple[list[int], list[tuple[int, int]]]] = {}
        self._compiled_pass = False   # not built yet

    def node_of(self, clique: Sequence[str]) -> int | None:
        """The smallest node containing ``clique``, or None."""
        return memo.remember(self._node_of, tuple(clique), self._find_node)

    def _find_node(self, clique: Sequence[str]) -> int | None:
        scope = set(clique)
        fits = [i for i, n in enumerate(self.nodes) if scope <= set(n)]
        return min(fits, key=lambda i: np.prod(self.node_shapes[i])) if fits else None

    def beliefs(self, potentials: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Calibrated unnormalised log-marginals of every node.

        ``potentials[k]`` is θ for ``self.cliques[k]``, domain-ordered. After the collect and
        distribute passes, b_n(x_n) = log Σ_{x ∖ x_n} exp(Σ_c θ_c) + const for each node.
        """
        beliefs = [np.zeros(s) for s in self.node_shapes]
        for k, theta in enumerate(potentials):  # in place: the same sums, no copies
            broadcast_apply(np.add, beliefs[self.home[k]], theta.reshape(self.embed[k]),
                            out=beliefs[self.home[k]])
        sent: dict[tuple[int, int], np.ndarray] = {}
        for m in self.messages:
            back = sent.get((m.target, m.source))
            tau = beliefs[m.source] if back is None else broadcast_apply(
                np.subtract, beliefs[m.source], back.reshape(m.shape_in_source))
            msg = logsumexp(tau, m.axes)
            sent[(m.source, m.target)] = msg
            # in place: no other reference to a node's belief array is held
            broadcast_apply(np.add, beliefs[m.target], msg.reshape(m.shape_in_target),
                            out=beliefs[m.target])
        return beliefs

    def component_roots(self) -> list[int]:
        """One node of each connected part of the tree (a forest when no message joins two
        parts), the lowest index of each."""
        parent = list(range(len(self.nodes)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for a, b in self.edges:
            parent[find(a)] = find(b)
        roots: dict[int, int] = {}
        for i in range(len(self.nodes)):
            roots.setdefault(find(i), i)
        return list(roots.values())

    def node_marginals(self, potentials: Sequence[np.ndarray], total: float,
                       flat: np.ndarray | None = None) -> list[np.ndarray]:
        """Node marginals as counts: μ_n = total · exp(b_n − log Σ exp b_n).

        ``flat``: the same potentials laid end to end in one float64 buffer, in clique order
        (as the fitter holds them); then the pass runs compiled where it can
        (:mod:`~flaimsim.mechanisms.compiled_pass`: the same values, fewer calls)."""
        if flat is not None:
            compiled = self.compiled_pass()
            if compiled is not None:
                return compiled.node_marginals(flat, total)
        out = []
        for p in self.beliefs(potentials):  # fresh arrays: normalised in place
            np.subtract(p, _max(p, axis=None), out=p)
            np.exp(p, out=p)
            p *= total / _add(p, axis=None)
            out.append(p)
        return out

    def compiled_pass(self):
        """The tree's compiled pass, built on first use; None where the numpy path stays (no
        numba, ``FLAIMSIM_COMPILED=0``, or a sum numpy orders otherwise)."""
        if self._compiled_pass is False:
            from flaimsim.mechanisms.compiled_pass import CompiledPass

            self._compiled_pass = CompiledPass.for_tree(self) if _compiled() else None
        return self._compiled_pass

    def clique_marginals(self, nodes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """μ_c for each clique, summed from its home node's marginal."""
        return [nodes[h] if not axes else sum_over(nodes[h], axes)
                for h, axes in zip(self.home, self.clique_axes)]

    def project(self, nodes: Sequence[np.ndarray], clique: Sequence[str]) -> np.ndarray | None:
        """Domain-ordered marginal on ``clique`` if one node holds it, else None."""
        target = canonical(self.domain, clique)
        h = self.node_of(target)
        if h is None:
            return None
        return sum_over(nodes[h], summed_axes(target, self.nodes[h]))

    def steiner(self, clique: Sequence[str]) -> tuple[list[int], list[tuple[int, int]]]:
        """The smallest subforest whose nodes cover ``clique``: leaves that are not needed
        are pruned until every leaf holds an attribute of ``clique`` no other node gives."""
        return memo.remember(self._steiner, tuple(clique), self._find_steiner)

    def _find_steiner(self, clique: Sequence[str]) -> tuple[list[int], list[tuple[int, int]]]:
        wanted = set(clique)
        terminals = {self.node_of((a,)) for a in wanted}
        keep = set(range(len(self.nodes)))
        edges = set(self.edges)
        pruned = True
        while pruned:
            pruned = False
            for n in sorted(keep - terminals):
                degree = sum(n in e for e in edges)
                if degree <= 1:
                    keep.discard(n)
                    edges = {e for e in edges if n not in e}
                    pruned = True
        return sorted(keep), sorted(edges)

    def spanning_marginal(self, nodes: Sequence[np.ndarray], clique: Sequence[str],
                          separators: dict[tuple[int, int], np.ndarray] | None = None,
                          steps: ContractionCache | None = None) -> np.ndarray:
        """Domain-ordered marginal on any ``clique``, from node and separator marginals:
        P(x_S) = Π_{n∈S} μ_n / Π_{(i,j)∈S} μ_{i∩j} over the Steiner subforest S, then summed
        to ``clique`` (0/0 = 0: a separator value of mass 0 has no mass in either node).
        ``separators``: 1/μ per edge, and ``steps``: the contraction steps, both filled and
        reused across calls on the same ``nodes``."""
        target = canonical(self.domain, clique)
        keep, edges = self.steiner(target)
        ops = [(nodes[n], self.nodes[n]) for n in keep]
        names: list[Hashable] = [("node", n) for n in keep]
        for i, j in edges:
            names.append(("separator", i, j))
            sep = tuple(a for a in self.nodes[i] if a in self.nodes[j])
            inverse = None if separators is None else separators.get((i, j))
            if inverse is None:
                inverse = self._separator_inverse(nodes[i], i, sep)
                if separators is not None:
                    separators[(i, j)] = inverse
            ops.append((inverse, sep))
        with np.errstate(over="ignore", invalid="ignore"):
            value, _ = contract(self.domain, ops, target, names, steps)
        return value

    def _separator_inverse(self, node: np.ndarray, i: int, sep: Clique) -> np.ndarray:
        mu = sum_over(node, summed_axes(sep, self.nodes[i]))
        # A separator mass below 1/DBL_MAX (seen on Census) gives 1/μ = inf and a
        # non-finite marginal, which GraphicalModel.marginal detects and recomputes in
        # log space; the overflow is expected there, not a fault to print.
        with np.errstate(over="ignore"):
            return np.divide(1.0, mu, out=np.zeros_like(mu), where=mu > 0)


def greedy_elimination_cliques(domain: Domain, cliques: Sequence[Sequence[str]]
                               ) -> list[frozenset[str]]:
    """The cliques {a} ∪ N(a) met while eliminating ``mbi``'s greedy order.

    ``mbi.junction_tree.greedy_order`` picks, among the remaining attributes in domain order,
    the first whose clique {a} ∪ N(a) has the fewest cells (1 for an attribute no clique
    mentions); here the interaction graph is kept as adjacency sets and only the eliminated
    attribute's neighbours are re-costed, which is what makes the size filter cheap.
    """
    attrs = list(domain.attributes)
    size = dict(zip(attrs, domain.shape))
    adjacent: dict[str, set[str]] = {a: set() for a in attrs}
    covered: set[str] = set()
    for c in cliques:
        covered.update(c)
        for a in c:
            adjacent[a].update(b for b in c if b != a)

    def cost(a: str) -> int:
        return math.prod(size[b] for b in adjacent[a] | {a}) if a in covered else 1

    costs = {a: cost(a) for a in attrs}
    remaining = list(attrs)
    out = []
    while remaining:
        a = min(remaining, key=costs.__getitem__)  # first minimum in domain order
        remaining.remove(a)
        near = adjacent.pop(a)
        out.append(frozenset(near | {a}))
        for b in near:
            adjacent[b].discard(a)
            adjacent[b].update(near - {b})
        for b in near:
            costs[b] = cost(b)
    return out


def model_size_mb(domain: Domain, cliques: Sequence[Sequence[str]]) -> float:
    """``mbi.junction_tree.hypothetical_model_size``: 8-byte cells over the junction tree's
    nodes, in MB. The nodes are the maximal elimination cliques (the maximal cliques of the
    triangulated graph). A tree-shaped graph is eliminated leaf-first by ``mbi``, so that case
    is handed to ``mbi`` itself.

    The size depends on the cliques only through their interaction graph (edges and
    covered attributes): memoised on those (:mod:`~flaimsim.mechanisms.memo`), so the many
    candidates of a round that add no edge to the model's graph cost one computation."""
    edges = frozenset(frozenset(e) for c in cliques for e in itertools.combinations(c, 2))
    if len(_SIZES) >= 200_000:
        _SIZES.clear()
    key = (tuple(domain.attributes), tuple(domain.shape), edges,
           frozenset(a for c in cliques for a in c))
    return memo.remember(_SIZES, key, lambda _: _model_size_mb(domain, cliques, edges))


_SIZES: dict[tuple, float] = {}


def _model_size_mb(domain: Domain, cliques: Sequence[Sequence[str]],
                   edges: frozenset[frozenset[str]]) -> float:
    attrs = list(domain.attributes)
    if edges and len(edges) == len(attrs) - 1:  # possibly a tree: mbi's other branch
        return float(junction_tree.hypothetical_model_size(domain, [tuple(c) for c in cliques]))
    elim = greedy_elimination_cliques(domain, cliques)
    nodes = {c for c in elim if not any(c < other for other in elim)}
    size = dict(zip(attrs, domain.shape))
    cells = sum(math.prod(size[a] for a in c) for c in nodes)
    return cells * 8 / 2**20


@functools.lru_cache(maxsize=4096)
def _greedy_path(equation: str, shapes: tuple[tuple[int, ...], ...]
                 ) -> tuple[tuple[int, ...], ...]:
    """opt_einsum's greedy contraction path: a function of the equation and shapes only."""
    path, _ = opt_einsum.contract_path(equation, *shapes, optimize="greedy", shapes=True)
    return tuple(tuple(step) for step in path)


@dataclass
class ContractionCache:
    """Pairwise contraction steps of one fitted model, kept for the next marginal that takes
    the same step on the same named operands (a round's candidates share many first steps:
    a node's table times a separator's inverse, summed to the same attributes). Holds at
    most ``limit`` cells; a refit must start a new one (the names then mean other tables)."""

    entries: dict[tuple, tuple[np.ndarray, float | None]] = field(default_factory=dict)
    cells: int = 0
    limit: int = 8_000_000


def contract(domain: Domain, operands: Sequence[tuple[np.ndarray, Sequence[str]]],
             target: Sequence[str], names: Sequence[Hashable | None] | None = None,
             cache: ContractionCache | None = None) -> tuple[np.ndarray, float]:
    """(v, s) with Σ_{x∖target} Π_k F_k = v·exp(s), over ``target`` (in its order).

    Factors are contracted pairwise along opt_einsum's greedy path and each intermediate is
    divided by its maximum (its log added to s): one product of many sharp factors would
    underflow to zero (seen on Adult). Target attributes no factor mentions get a uniform
    factor; ``target=()`` gives log Σ_x Π_k F_k as log v + s.

    ``names``: a name per operand (None: unnamed) that identifies its table in ``cache``; a
    step on named operands only is looked up there (the same einsum, so the same bits) and
    names its result by the step, so that later steps on it can be looked up too.
    """
    label = {a: i for i, a in enumerate(domain.attributes)}
    if names is None:
        names = [None] * len(operands)
    ops: list[tuple[np.ndarray, list[int], Hashable | None]] = [
        (arr, [label[a] for a in attrs], name) for (arr, attrs), name in zip(operands, names)]
    covered = {i for _, idx, _ in ops for i in idx}
    ops += [(np.ones(domain[a]), [label[a]], ("uniform", a)) for a in target
            if label[a] not in covered]
    wanted = [label[a] for a in target]
    sym = opt_einsum.get_symbol
    equation = ",".join("".join(sym(i) for i in idx) for _, idx, _ in ops) + "->" + "".join(
        sym(i) for i in wanted)
    shapes = tuple(arr.shape for arr, _, _ in ops)
    path = (_greedy_path(equation, shapes) if memo.enabled()
            else _greedy_path.__wrapped__(equation, shapes))
    log_scale = 0.0
    for step in path:
        picked = [ops[i] for i in step]
        for i in sorted(step, reverse=True):
            ops.pop(i)
        keep = set(wanted).union(*[set(idx) for _, idx, _ in ops])
        out_idx = [i for i in sorted({i for _, idx, _ in picked for i in idx}) if i in keep]
        key = None
        if cache is not None and all(name is not None for _, _, name in picked):
            key = (tuple((name, tuple(idx)) for _, idx, name in picked), tuple(out_idx))
        found = None if key is None else cache.entries.get(key)
        if found is None:
            found = _contract_step(picked, out_idx)
            if key is not None and cache.cells + found[0].size <= cache.limit:
                cache.entries[key] = found
                cache.cells += found[0].size
        out, log_peak = found
        if log_peak is not None:
            log_scale = log_scale + log_peak
        ops.append((out, out_idx, key))
    (arr, idx, _), = ops
    return np.transpose(arr, [idx.index(i) for i in wanted]), log_scale


def _contract_step(picked: Sequence[tuple[np.ndarray, list[int], Hashable | None]],
                   out_idx: list[int]) -> tuple[np.ndarray, float | None]:
    """One pairwise einsum onto ``out_idx``, divided by its maximum (and that maximum's log;
    None where the maximum is not positive and nothing was divided)."""
    # np.einsum takes labels 0..51 only: number this step's attributes locally (Covtype
    # has 55 attributes)
    local = {i: n for n, i in enumerate(sorted({i for _, idx, _ in picked for i in idx}))}
    args: list = []
    for arr, idx, _ in picked:
        args += [arr, [local[i] for i in idx]]
    out = np.einsum(*args, [local[i] for i in out_idx])
    peak = float(out.max())
    if peak > 0:
        return out / peak, math.log(peak)
    return out, None
