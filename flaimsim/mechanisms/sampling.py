"""Synthetic records from a calibrated junction tree (``mbi``'s ``synthetic_data``, method
"round", in numpy with a seeded ``Generator``).

Columns are generated in reverse elimination order. The first is drawn by randomised
rounding of its marginal: ⌊N p_v⌋ copies of each value v plus the remainder spread without
replacement in proportion to the fractional parts, shuffled. Each later column x is drawn
from P(x | parents), where parents are the columns already generated that share a junction
tree node with x (so parents ∪ {x} lie in one node and the conditional is exact). Within a
group of records with the same parents, uniforms are stratified: the r-th of n records (in
random order) gets u = (r + U(0,1)) / n, so each group's values follow its conditional CDF
to within one record, as rounding would.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flaimsim.mechanisms.junction import JunctionTree, canonical


def rounded_column(counts: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` values whose histogram is ``counts`` scaled to ``rows``, randomly rounded."""
    counts = np.asarray(counts, dtype=float).ravel()
    scaled = counts * (rows / counts.sum())
    whole = np.floor(scaled).astype(np.int64)
    extra = rows - int(whole.sum())
    if extra > 0:
        frac = scaled - whole
        whole[rng.choice(counts.size, extra, replace=False, p=frac / frac.sum())] += 1
    return rng.permutation(np.repeat(np.arange(counts.size), whole))


def stratified_uniforms(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """u_i = (rank of i within its group, in random order + U(0,1)) / group size."""
    n = groups.size
    order = rng.permutation(n)
    order = order[np.argsort(groups[order], kind="stable")]
    sizes = np.bincount(groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n) - starts[groups[order]]
    return (ranks + rng.random(n)) / sizes[groups]


def synthetic_records(tree: JunctionTree, nodes: Sequence[np.ndarray], rows: int,
                      rng: np.random.Generator) -> np.ndarray:
    """(rows × d) int64 records, columns in domain order, from node marginals ``nodes``."""
    domain = tree.domain
    if rows < 1:
        raise ValueError(f"need at least one synthetic row, got {rows}")
    attrs = list(domain.attributes)
    out = np.zeros((rows, len(attrs)), dtype=np.int64)
    used: set[str] = set()
    for col in tree.elimination_order[::-1]:
        near = set().union(*[set(n) for n in tree.nodes if col in n])
        parents = [a for a in canonical(domain, near & used)]
        used.add(col)
        if not parents:
            out[:, attrs.index(col)] = rounded_column(tree.project(nodes, (col,)), rows, rng)
            continue
        scope = canonical(domain, parents + [col])
        joint = tree.project(nodes, scope)
        if joint is None:
            raise RuntimeError(f"no junction-tree node holds {scope}")
        joint = np.moveaxis(joint, scope.index(col), -1)
        parent_sizes = joint.shape[:-1]
        table = joint.reshape(-1, joint.shape[-1])
        mass = table.sum(axis=1, keepdims=True)
        cdf = np.cumsum(np.divide(table, mass, out=np.zeros_like(table), where=mass > 0),
                        axis=1)
        config = np.ravel_multi_index([out[:, attrs.index(a)] for a in parents], parent_sizes)
        _, groups = np.unique(config, return_inverse=True)
        u = stratified_uniforms(groups, rng)
        # searchsorted(cdf[config_i], u_i, "right") for all i at once: row k is shifted by 2k
        # (a CDF ends at 1 ± rounding), so one sorted flat array serves every parent value.
        width = cdf.shape[1]
        flat = (cdf + 2.0 * np.arange(cdf.shape[0])[:, None]).ravel()
        choice = np.searchsorted(flat, u + 2.0 * config, side="right") - config * width
        out[:, attrs.index(col)] = np.minimum(choice, domain[col] - 1)
    return out
