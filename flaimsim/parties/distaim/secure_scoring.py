"""Secure L1 scoring of candidate marginals (DistAIM's select step, the dominant MPC cost).

The servers hold secret counts x (one concatenated vector over all candidate marginals, each
value in 0..N) as a secure integer array; the model's marginals c (scaled by the model's public
total) are public. For each candidate r (a segment of the vector) we compute

    L1_r = Σ_{i∈r} |x_i·2^f − round(c_i·2^f)| · 2^−f

secretly, then u_r = aim_score_from_l1(L1_r, σ, n_r, w_r) (the shared plain formula).

Method ("bits once, then comparisons priced by the public value"):
- at most once per contributor set and cell (lazily: only the cells some round prices, see
  :func:`priced_cells`): bits b_{i,j} of x_i (l = bit length of the public bound N) by
  ``bit_decomposition.secure_low_bits``, and the prefix products Z_h = [x < 2^h] for every h (l − 1
  multiplications per cell; :func:`prefix_zero_products`);
- per round, [x < c] for a public c with top bit h needs only the bits below h, from
  Z_{h+1}: about log2 c multiplications per cell, none when round(c) = 0
  (:func:`less_than_pieces`); Σ_r |x − c| = Σ_r (x − c) − 2 Σ_r (x − c)[x < c] is one inner
  product per candidate (one reshare per candidate, not per cell).
- :func:`secure_l1_bits_full` keeps the previous full-length method (l multiplications per
  cell and round) as the baseline.

Rounding: c is rounded publicly to the grid 2^−f, so the computed L1 is exact for round_f(c):
the per-cell error versus the real c is at most 2^−(f+1) (0.5 for f = 0). This rounding is of a
public, post-processed value and is the same for neighbouring data sets, so it does not enter
the sensitivity: ‖x − round_f(c)‖₁ still changes by at most 1 when one record is added/removed.

Measured (``flaimsim bench scoring``: 3 parties on loopback, bytes sent per party, Adult-shaped
inputs, l = 16, SecInt20): ~1.6 B per cell and round priced by c, against ~270 B for the
full-length method and ~1,690 B for SecFxp(32) absolute values; ~835 B per cell once per
contributor set for the bits (565 B, ripple carry: ``bit_decomposition``) and the Z_h (270 B),
against 1,445 B with MPyC's ``np_to_bits``.

Types: counts are ``count_secint(N, f)`` (a SecInt whose field holds all intermediate sums);
per-segment L1 and scores are returned in a SecFxp type chosen by the caller
(``flaimsim.parties.secure_em.em_fxp_type``), converted once per candidate (k values, cheap).
All functions return MPyC secure arrays (placeholders) and never open anything: call them from
inside an MPyC coroutine or open with ``await mpc.output(...)`` / ``mpc.run(mpc.output(...))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from mpyc.runtime import mpc

from flaimsim.mechanisms.scores import aim_score_from_l1
from flaimsim.parties.distaim.plan import (SecureScoringError, comparison_plan, l1_count_bits,
                                          priced_cells, round_public_marginal)
from flaimsim.parties.mpc.bit_decomposition import PackedShares, secure_low_bits
from flaimsim.parties.mpc.narrow_field import (NARROW_PRIME, narrow_pays, narrow_to_wide,
                                               secure_low_bits_narrow)
from flaimsim.parties.profile import section

@dataclass(frozen=True)
class SecretBits:
    """Secret counts with their bits, computed once per contributor set.

    counts: secure integer array (n,), values in 0..2^count_bits − 1.
    bits: secure integer array (n, count_bits), least significant bit first (or the same as
      :class:`PackedShares`, which the decompose step of a big aggregate keeps).
    frac_bits: f, the public marginal is compared on the grid 2^−f (x is scaled by 2^f).
    below: secure array (count_bits + 1, n), row h = Z_h = [x < 2^h] = Π_{j≥h} (1 − bit_j)
      (Z_l = 1); None when only the full-length comparison (:func:`secure_l1_bits_full`) runs.
    wide: the counts' SecInt type when counts, bits and Z_h are in the narrow field
      (:mod:`flaimsim.parties.mpc.narrow_field`); per-candidate sums move back to it.
    """

    counts: Any
    bits: Any
    count_bits: int
    frac_bits: int
    below: Any = None
    wide: Any = None

    @property
    def n_cells(self) -> int:
        return int(self.counts.shape[0])

    def take(self, cells: np.ndarray) -> "SecretBits":
        """The same secrets restricted to public cell indices (local; e.g. kept candidates).
        Packed bits (:class:`PackedShares`) stay packed."""
        idx = np.asarray(cells, dtype=np.int64)

        def pick(a: Any, index: Any) -> Any:
            return a.take(index) if isinstance(a, PackedShares) else a[index]

        return SecretBits(counts=pick(self.counts, idx), bits=pick(self.bits, idx),
                          count_bits=self.count_bits, frac_bits=self.frac_bits,
                          below=None if self.below is None else pick(self.below, (slice(None), idx)),
                          wide=self.wide)

    @property
    def count_type(self) -> Any:
        """The counts' SecInt type (the wide one when the bits are narrow)."""
        return self.wide if self.wide is not None else type(self.counts).sectype

    def to_count_type(self, values: Any, offset: np.ndarray | int = 0) -> Any:
        """Per-candidate sums computed beside the bits, in :attr:`count_type`: moved back
        exactly when narrow (values + offset must lie in [0, P); offset is public)."""
        if self.wide is None:
            return values
        shift = np.asarray(offset, dtype=np.int64)
        if shift.size and (int(shift.min()) < 0 or int(shift.max()) >= NARROW_PRIME):
            raise SecureScoringError("offset outside the narrow field")
        return narrow_to_wide(values + shift, self.wide) - shift


def count_secint(max_count: int, frac_bits: int = 0) -> type:
    """SecInt type for counts in 0..max_count compared on the grid 2^−frac_bits.

    Bit length bitlen(N) + f + 4: segment sums of |x·2^f − c·2^f| fit with room to spare.
    With N ≤ 2^20 and f ≤ 8 this is a 64-bit field (8 bytes per element on the wire).
    """
    if max_count < 1 or frac_bits < 0:
        raise SecureScoringError(f"need max_count >= 1 and frac_bits >= 0, got {max_count}, {frac_bits}")
    return mpc.SecInt(l1_count_bits(max_count, frac_bits))


def prefix_zero_products(bits: Any) -> Any:
    """Z_h = [x < 2^h] = Π_{j≥h} (1 − bit_j) for h = 0..l as a (l + 1, n) secure array.

    Z_l = 1, Z_{l−1} = 1 − bit_{l−1} (linear), Z_h = Z_{h+1}·(1 − bit_h): l − 1 vectorised
    multiplications per cell, once per contributor set.
    """
    n, l = bits.shape
    cols = bits.T
    stype = type(bits).sectype
    rows = [stype.array(np.ones(n, dtype=np.int64))]
    for h in reversed(range(l)):
        not_bit = 1 - cols[h]
        rows.append(not_bit if h == l - 1 else rows[-1] * not_bit)
    return mpc.np_stack(rows[::-1])


def decompose_counts(counts: Any, max_count: int, frac_bits: int = 0,
                     wrapped: bool = False, prefix: bool = True) -> SecretBits:
    """Bit-decompose secret counts once (l = bitlen(max_count) bits per cell).

    Cost: one :func:`secure_low_bits` per cell (l random bits, one opening, l − 1 products:
    ~565 B per cell per party at l = 16, 3 parties), plus l − 1 products for the prefix
    products Z_h (``prefix``, ~270 B). Redo it whenever the
    contributor set (hence x) changes. ``wrapped``: ``counts`` is a compact sum
    s = x + w·2^l (``input_sharing.unwrap``): the l low bits of s are x's, and the returned
    ``counts`` is x = Σ 2^j bit_j (linear), never s.
    """
    stype = getattr(counts, "sectype", None)
    if stype is None or getattr(stype, "frac_length", 0) != 0 or counts.ndim != 1:
        raise SecureScoringError("counts must be a 1-D secure integer array (SecInt.array)")
    count_bits = int(max_count).bit_length()
    if stype.bit_length < count_bits + frac_bits + 2:
        raise SecureScoringError(
            f"{stype.__name__} too short for counts up to {max_count} with {frac_bits} "
            f"fractional bits; use count_secint({max_count}, {frac_bits})")
    if narrow_pays(stype):   # bits, x and Z_h in the 60-bit field (narrow_field)
        bits = secure_low_bits_narrow(counts, count_bits)
        x = bits @ np.array([1 << j for j in range(count_bits)], dtype=object)
        below = prefix_zero_products(bits) if prefix else None
        return SecretBits(counts=x, bits=bits, count_bits=count_bits, frac_bits=frac_bits,
                          below=below, wide=stype)
    bits = secure_low_bits(counts, count_bits)
    if wrapped:
        counts = mpc.np_from_bits(bits)
    below = prefix_zero_products(bits) if prefix else None
    return SecretBits(counts=counts, bits=bits, count_bits=count_bits, frac_bits=frac_bits,
                      below=below)


def segment_sums(values: Any, segments: Sequence[int]) -> Any:
    """Per-segment sums of a secure 1-D array (local: cumulative sum, then differences)."""
    lengths = np.asarray(segments, dtype=np.int64)
    if lengths.ndim != 1 or len(lengths) == 0 or np.any(lengths < 1):
        raise SecureScoringError("segments must be a non-empty list of positive lengths")
    if int(lengths.sum()) != values.shape[0]:
        raise SecureScoringError(
            f"segment lengths sum to {int(lengths.sum())} but there are {values.shape[0]} cells")
    ends = np.cumsum(lengths) - 1
    cum = np.cumsum(values)[ends]
    if len(lengths) == 1:
        return cum
    return cum - mpc.np_concatenate((type(cum)(np.array([0])), cum[:-1]))


def _secure_less_than_full(bits: SecretBits, c_int: np.ndarray) -> Any:
    """Secret [x_i·2^f < c_i] per cell by the full prefix-product method (l multiplications
    per cell and round: the method before :func:`less_than_pieces`; kept as the baseline)."""
    f, l = bits.frac_bits, bits.count_bits
    if c_int.shape[0] != bits.n_cells:
        raise SecureScoringError(f"public marginal has {c_int.shape[0]} cells, counts {bits.n_cells}")
    top = 1 << (l + f)
    above = (c_int >= top).astype(np.int64)
    c_bits = (np.minimum(c_int, top - 1)[:, None] >> np.arange(l + f)) & 1   # (n, l+f)
    x_bits = bits.bits.T                                                     # (l, n)
    prefix: Any = None      # P_{j+1}; None stands for the public all-ones vector
    lt: Any = None          # Σ γ_j (P_{j+1} − P_j), accumulated from the top bit down
    for j in reversed(range(l + f)):
        gamma = c_bits[:, j]
        if j >= f:          # e_j = x_j if γ_j = 1 else 1 − x_j (linear)
            e = x_bits[j - f] * (2 * gamma - 1) + (1 - gamma)
        else:               # bit j of x·2^f is a public 0: e_j = 1 − γ_j
            e = 1 - gamma
        p_next = e if prefix is None else prefix * e
        term = (1 - e) * gamma if prefix is None else (prefix - p_next) * gamma
        lt = term if lt is None else lt + term
        prefix = p_next
    return lt * (1 - above) + above   # model above every possible count: x < c publicly


@dataclass(frozen=True)
class LessThan:
    """[x_i·2^f < c_i] per cell, as public parts plus secret pieces (nothing is scattered).

    lt_i = [i ∈ above] + Σ_{pieces (cells, values)} values[t] for cells[t] = i. ``mults`` is the
    number of secret multiplications spent (per cell: h_i − max(t0_i, f), see
    :func:`less_than_pieces`).
    """

    above: np.ndarray                  # bool (n,): c ≥ 2^(l+f), so x < c publicly
    cells: np.ndarray                  # int64 (P,): the cell of every piece value
    values: Any                        # secure (P,)
    mults: int


def less_than_pieces(bits: SecretBits, c_int: np.ndarray) -> LessThan:
    """Secret [X_i < c_i] (X = x·2^f) by prefix products priced by the public value c.

    With h = bitlen(c) − 1 and t0 = the lowest set bit of c, the bits of c above h are 0, so
    the prefix product of e_j over j > h is ZX_{h+1} = [X < 2^(h+1)], precomputed once
    (``SecretBits.below``). Going down from h: P_h = ZX_{h+1}·X_h = ZX_{h+1} − ZX_h (free,
    γ_h = 1), P_j = P_{j+1}·e_j for j = h−1..t0 (one multiplication each; local for the f
    public zero bits), and [X < c] = ZX_h + Σ_{j<h, γ_j=1} (P_{j+1} − P_j). Cells with c = 0
    cost nothing (x < 0 is false); cells with c ≥ 2^(l+f) are 1 publicly. Multiplications per
    cell: h − max(t0, f) ≈ log2 c, vectorised over the cells at each bit position.
    """
    f, l = bits.frac_bits, bits.count_bits
    if bits.below is None:
        raise SecureScoringError("decompose_counts(..., prefix=True) first: no Z_h products")
    n = bits.n_cells
    if c_int.shape[0] != n:
        raise SecureScoringError(f"public marginal has {c_int.shape[0]} cells, counts {n}")
    plan = comparison_plan(c_int, l, f)
    top, above, inside, h, t0 = l + f, plan.above, plan.inside, plan.h, plan.t0

    def zx(level: np.ndarray, cells: np.ndarray) -> Any:   # ZX_level = Z_{max(level − f, 0)}
        return bits.below[np.maximum(level - f, 0), cells]

    cells = [inside]
    values = [zx(h[inside], inside)] if inside.size else []
    order = np.zeros(0, dtype=np.int64)
    prev: Any = None
    mults = 0
    for j in range(top - 2, -1, -1):
        keep = np.flatnonzero(t0[order] <= j) if order.size else order
        new = inside[(h[inside] == j + 1) & (t0[inside] <= j)]
        parts, ids = [], [order[keep]]
        if keep.size:
            parts.append(prev[keep])
        if new.size:
            parts.append(zx(h[new] + 1, new) - zx(h[new], new))   # P_h, free
            ids.append(new)
        ids_j = np.concatenate(ids)
        if not ids_j.size:
            order, prev = ids_j, None
            continue
        cur = parts[0] if len(parts) == 1 else mpc.np_concatenate(parts)
        gamma = (c_int[ids_j] >> j) & 1
        ones = np.flatnonzero(gamma)
        if j >= f:
            x_bit = bits.bits[ids_j, j - f]
            p_j = cur * (x_bit * (2 * gamma - 1) + (1 - gamma))
            mults += int(ids_j.size)
            if ones.size:
                cells.append(ids_j[ones])
                values.append(cur[ones] - p_j[ones])
        else:       # bit j of X is a public 0: e_j = 1 − γ_j, P_j = 0 where γ_j = 1
            p_j = cur
            if ones.size:
                cells.append(ids_j[ones])
                values.append(cur[ones])
                zero = np.flatnonzero(gamma == 0)
                ids_j, p_j = ids_j[zero], cur[zero]
        order, prev = ids_j, p_j
    all_cells = np.concatenate(cells) if cells else np.zeros(0, dtype=np.int64)
    if not values:
        stype = type(bits.counts).sectype
        return LessThan(above, all_cells, stype.array(np.zeros(0, dtype=np.int64)), 0)
    vals = values[0] if len(values) == 1 else mpc.np_concatenate(values)
    return LessThan(above, all_cells, vals, mults)


def _group_order(groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable order putting equal public group ids together, and each group's length."""
    return np.argsort(groups, kind="stable"), np.bincount(groups, minlength=n_groups)


def _group_sums(values: Any, groups: np.ndarray, n_groups: int) -> Any:
    """Σ of a secure vector's entries per public group id (local: sort, cumsum, differences)."""
    stype = type(values).sectype
    if values.shape[0] == 0:
        return stype.array(np.zeros(n_groups, dtype=np.int64))
    order, sizes = _group_order(groups, n_groups)
    cum = mpc.np_concatenate((stype.array(np.zeros(1, dtype=np.int64)),
                              np.cumsum(values[order])))
    ends = np.cumsum(sizes)
    return cum[ends] - cum[ends - sizes]


def _group_dots(a: Any, b: Any, groups: np.ndarray, n_groups: int) -> Any:
    """Σ_t a_t b_t per public group id: one reshare per group (empty groups: 0)."""
    stype = type(a).sectype
    order, sizes = _group_order(groups, n_groups)
    a, b = a[order], b[order]
    ends = np.cumsum(sizes)
    zero = stype(0)
    dots = [a[e - z:e] @ b[e - z:e] if z else zero for e, z in zip(ends.tolist(), sizes.tolist())]
    return mpc.np_fromlist(dots)


def secure_abs_diff_bits(bits: SecretBits, public_c: np.ndarray) -> Any:
    """Secret |x_i·2^f − round(c_i·2^f)| per cell (SecInt array, units 2^−f).

    [x < c] by :func:`less_than_pieces` (~log2 c multiplications per cell), summed per cell
    locally, then one multiplication per cell.
    """
    c_int = round_public_marginal(public_c, bits.frac_bits)
    lt_parts = less_than_pieces(bits, c_int)
    lt = _group_sums(lt_parts.values, lt_parts.cells, bits.n_cells) + lt_parts.above
    diff = bits.counts * (1 << bits.frac_bits) - c_int
    return diff * (1 - 2 * lt)


def secure_abs_diff_bits_full(bits: SecretBits, public_c: np.ndarray) -> Any:
    """The same by the full-length method: l + 1 multiplications per cell (depth l)."""
    c_int = round_public_marginal(public_c, bits.frac_bits)
    lt = _secure_less_than_full(bits, c_int)
    diff = bits.counts * (1 << bits.frac_bits) - c_int
    return diff * (1 - 2 * lt)


def _segment_dots(a: Any, b: Any, segments: Sequence[int]) -> Any:
    """Per-segment inner products Σ_{i∈r} a_i b_i: one reshare per segment, not per cell."""
    ends = np.cumsum(np.asarray(segments, dtype=np.int64))
    starts = ends - np.asarray(segments, dtype=np.int64)
    dots = [a[s:e] @ b[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
    return mpc.np_fromlist(dots)


def _check_sum_range(stype: Any, count_bits: int, frac_bits: int, c_int: np.ndarray,
                     segments: Sequence[int]) -> None:
    """Conversion to SecFxp needs L1_r < 2^(L−1) (L: count type bits); public check.

    Uses Σ_{i∈r} x_i ≤ 2^l (a marginal sums to the contributors' count ≤ N), so
    L1_r ≤ (2^l + Σ_r round(c)) · 2^f.
    """
    if int(np.sum(segments)) != c_int.shape[0]:
        return   # reported with a clearer message by the callee
    ends = np.cumsum(np.asarray(segments, dtype=np.int64))
    seg_c = np.diff(np.r_[0, np.cumsum(c_int, dtype=np.int64)[ends - 1]])
    worst = ((1 << count_bits) << frac_bits) + int(seg_c.max())
    limit = 1 << (stype.bit_length - 1)
    if worst >= limit:
        raise SecureScoringError(
            f"model marginal too large for the count type: a segment's L1 may reach {worst} "
            f"(units 2^-{frac_bits}) >= {limit}; check the model total")


def l1_to_fxp(l1_scaled: Any, frac_bits: int, fxp: type) -> Any:
    """Convert per-segment L1 (SecInt, units 2^−f) to ``fxp`` reals (one conversion per value)."""
    converted = mpc.np_fromlist(mpc.convert(mpc.np_tolist(l1_scaled), fxp))
    return converted * 2.0 ** -frac_bits if frac_bits else converted


def _segment_ids(segments: Sequence[int]) -> np.ndarray:
    lengths = np.asarray(segments, dtype=np.int64)
    if lengths.ndim != 1 or len(lengths) == 0 or np.any(lengths < 1):
        raise SecureScoringError("segments must be a non-empty list of positive lengths")
    return np.repeat(np.arange(len(lengths)), lengths)


def secure_l1_bits(bits: SecretBits, public_c: np.ndarray, segments: Sequence[int],
                   fxp: type | None = None, segment_counts: Any = None) -> Any:
    """Secret per-segment L1 ‖x_r − round_f(c_r)‖₁, comparisons priced by c (the default).

    Σ_r |d| = Σ_r d − 2 Σ_r d·[x < c] with d = X − c: [x < c] comes in pieces
    (:func:`less_than_pieces`) and Σ_r d·[x < c] = Σ_r d_above + Σ_{pieces in r} d_cell·piece is
    one inner product per segment (one reshare per candidate, not per cell). [x < c] is 0
    where round_f(c) = 0, so only the priced cells (:func:`priced_cells`) enter the second
    sum, and Σ_r d = 2^f Σ_r x − Σ_r c needs no per-cell secret beyond Σ_r x.

    ``bits`` covers every cell of ``segments`` (then Σ_r x is summed from ``bits.counts``), or,
    with ``segment_counts`` (the secret Σ_r x per segment, or one secret for all of them: every
    marginal of a data set sums to its record count), only the priced cells, in cell order.

    Returns a SecInt array in units 2^−f if ``fxp`` is None, else an ``fxp`` (SecFxp) array of
    reals. ``segments`` are the candidates' cell counts n_r, in the order of the cells.
    """
    f = bits.frac_bits
    c_int = round_public_marginal(public_c, f)
    seg_of = _segment_ids(segments)
    if seg_of.size != c_int.shape[0]:
        raise SecureScoringError(
            f"segment lengths sum to {seg_of.size} but the public marginal has "
            f"{c_int.shape[0]} cells")
    priced = priced_cells(c_int)
    if segment_counts is None:
        if bits.n_cells != seg_of.size:
            raise SecureScoringError(
                f"segment lengths sum to {seg_of.size} but there are {bits.n_cells} cells")
        segment_counts = bits.to_count_type(segment_sums(bits.counts, segments))
        bits = bits.take(priced)
    elif bits.n_cells != priced.size:
        raise SecureScoringError(
            f"{bits.n_cells} cells of bits for {priced.size} priced cells (round_f(c) > 0)")
    stype = bits.count_type
    if fxp is not None:
        _check_sum_range(stype, bits.count_bits, f, c_int, segments)
    k = len(segments)
    seg_c = np.bincount(seg_of, weights=c_int, minlength=k).astype(np.int64)
    c_priced, seg_priced = c_int[priced], seg_of[priced]
    with section("priced comparisons"):
        lt = less_than_pieces(bits, c_priced)
    with section("dot products"):
        diff = bits.counts * (1 << f) - c_priced
        dots = _group_dots(diff[lt.cells], lt.values, seg_priced[lt.cells], k)
        if lt.above.any():
            above = np.flatnonzero(lt.above)
            dots = dots + _group_sums(diff[above], seg_priced[above], k)
    with section("to the counts' field"):   # -Σ_r c ≤ dots ≤ 0 (diff < 0 where x < c)
        dots = bits.to_count_type(dots, seg_c)
    if not hasattr(segment_counts, "shape") or segment_counts.shape == ():
        segment_counts = stype.array(np.zeros(k, dtype=np.int64)) + segment_counts
    l1_scaled = segment_counts * (1 << f) - seg_c - 2 * dots
    with section("score to fixed point"):
        return l1_scaled if fxp is None else l1_to_fxp(l1_scaled, f, fxp)


def secure_l1_bits_full(bits: SecretBits, public_c: np.ndarray, segments: Sequence[int],
                        fxp: type | None = None) -> Any:
    """The previous method, kept as the baseline: full-length prefix products per round
    (l multiplications per cell), then one inner product per segment."""
    c_int = round_public_marginal(public_c, bits.frac_bits)
    if fxp is not None:
        _check_sum_range(bits.count_type, bits.count_bits, bits.frac_bits, c_int, segments)
    lt = _secure_less_than_full(bits, c_int)
    diff = bits.counts * (1 << bits.frac_bits) - c_int
    l1_scaled = bits.to_count_type(segment_sums(diff, segments) - 2 * _segment_dots(diff, lt, segments))
    return l1_scaled if fxp is None else l1_to_fxp(l1_scaled, bits.frac_bits, fxp)


def secure_scores_bits(bits: SecretBits, public_c: np.ndarray, segments: Sequence[int],
                       sigma: float, weights: Sequence[int], fxp: type,
                       segment_counts: Any = None) -> Any:
    """Secret AIM scores u_r = w_r (L1_r − sqrt(2/π) σ n_r) as an ``fxp`` array (k,).

    Integer weights keep the multiplication local (no truncation). ``bits`` and
    ``segment_counts`` as in :func:`secure_l1_bits`.
    """
    w = np.asarray(weights)
    if w.shape != (len(segments),):
        raise SecureScoringError(f"{w.shape[0] if w.ndim else 1} weights for {len(segments)} segments")
    if np.all(w == np.rint(w)):
        w = w.astype(np.int64)
    l1 = secure_l1_bits(bits, public_c, segments, fxp, segment_counts)
    return aim_score_from_l1(l1, sigma, np.asarray(segments, dtype=float), w)


def secure_l1_naive(x_fxp: Any, public_c: np.ndarray, segments: Sequence[int]) -> Any:
    """Baseline: Σ_r |x − c| with one secure absolute value per cell (SecFxp arrays).

    The comparison here is secret against secret-minus-public at the full bit length of the
    type: ~1.4 KB per cell per party at SecFxp(32) (MPC-NOTES), every round.
    """
    c = np.asarray(public_c, dtype=float)
    if c.shape != x_fxp.shape:
        raise SecureScoringError(f"public marginal shape {c.shape} != counts shape {x_fxp.shape}")
    return segment_sums(np.absolute(x_fxp - c), segments)
