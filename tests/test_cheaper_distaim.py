"""Issue 12: compact client shares mod 2^b, comparisons priced by the public value, and the
selection / score options (single MPyC party; the 3-party paths run in test_distaim)."""

from __future__ import annotations

import numpy as np
import pytest
from mpyc.runtime import mpc

from flaimsim.mechanisms.dp import report_noisy_max, report_noisy_max_cost
from flaimsim.parties.mpc.field import SharingError
from flaimsim.parties.mpc.input_sharing import (
    compact_pieces, expand_seed_bits, pack_bits, sum_compact, unpack_bits, unwrap)
from flaimsim.parties.distaim.secure_scoring import (SecretBits, count_secint, decompose_counts,
                                                     less_than_pieces, secure_abs_diff_bits,
                                                     secure_l1_bits, secure_l1_bits_full)
from flaimsim.parties.distaim.plan import comparison_plan, round_public_marginal
from flaimsim.protocols.distaim import selection_epsilon


@pytest.mark.parametrize("bits", [1, 5, 8, 11, 16, 23])
def test_pack_bits_round_trip_and_size(bits: int) -> None:
    v = np.random.default_rng(bits).integers(0, 1 << bits, 1001)
    buf = pack_bits(v, bits)
    assert len(buf) == (1001 * bits + 7) // 8
    np.testing.assert_array_equal(unpack_bits(buf, bits, 1001), v)


def test_compact_pieces_reconstruct_mod_2b_and_refuse_out_of_range() -> None:
    x = np.random.default_rng(0).integers(0, 1 << 16, 500)
    masked, seeds = compact_pieces(x, 16, 3)
    pieces = [masked] + [expand_seed_bits(s, x.size, 16) for s in seeds]
    np.testing.assert_array_equal(sum_compact(pieces, 16, x.size), x)
    assert int(expand_seed_bits(seeds[0], 4000, 16).max()) < 1 << 16
    with pytest.raises(SharingError, match="0..2"):
        compact_pieces(np.array([1 << 16]), 16, 3)
    with pytest.raises(SharingError, match="0..2"):
        compact_pieces(np.array([-1]), 16, 3)


def test_unwrap_takes_the_low_bits_of_the_wrapped_sum() -> None:
    b = 10
    x = np.random.default_rng(1).integers(0, 1 << b, 300)
    w = np.random.default_rng(2).integers(0, 3, 300)          # wrap counts 0..m-1
    s = count_secint(1 << b).array(x + w * (1 << b))
    got, bits = unwrap(mpc, s, b)
    np.testing.assert_array_equal(np.asarray(mpc.run(mpc.output(got)), dtype=np.int64), x)
    assert bits.shape == (300, b)
    # decompose_counts(wrapped=True) gives x's bits and x itself, never s
    dec = decompose_counts(s, (1 << b) - 1, wrapped=True)
    np.testing.assert_array_equal(np.asarray(mpc.run(mpc.output(dec.counts)), dtype=np.int64), x)


@pytest.mark.parametrize("l", [1, 5, 16])
def test_secure_low_bits_are_the_low_bits_at_the_edges(l: int) -> None:
    from flaimsim.parties.mpc.bit_decomposition import secure_low_bits
    rng = np.random.default_rng(l)
    s = np.r_[0, 1, (1 << l) - 1, 1 << l, (3 << l) - 1, rng.integers(0, 3 << l, 200)]
    stype = count_secint(1 << 16)               # 20 bits: s < 3·2^16 fits
    got = np.asarray(mpc.run(mpc.output(secure_low_bits(stype.array(s), l))), dtype=np.int64)
    np.testing.assert_array_equal(got, (s[:, None] >> np.arange(l)) & 1)
    with pytest.raises(ValueError, match="bits"):
        secure_low_bits(stype.array(s), stype.bit_length + 1)
    with pytest.raises(ValueError, match="1-D secure integer"):
        secure_low_bits(mpc.SecFxp(32).array(np.zeros(3)), 2)


def test_packed_shares_give_the_same_scores_as_secure_arrays() -> None:
    from flaimsim.parties.mpc.bit_decomposition import PackedShares
    x, c, segments, max_count = _edge_inputs(1)
    stype = count_secint(max_count, 1)
    bits = decompose_counts(stype.array(x), max_count, 1)
    packed_bits = PackedShares.empty(bits.bits.shape, stype)
    packed_below = PackedShares.empty(bits.below.shape, stype)
    packed_bits.put(slice(None), mpc.run(mpc.gather(bits.bits)))
    packed_below.put(slice(None), mpc.run(mpc.gather(bits.below)))
    assert packed_bits.values.dtype == np.uint64       # the 55-bit field fits 8 bytes
    packed = SecretBits(bits.counts, packed_bits, bits.count_bits, 1, packed_below)
    cells = np.arange(3, 250)
    cases = [(bits, packed, c, segments),
             (bits.take(cells), packed.take(cells), c[cells], [100, cells.size - 100])]
    for plain, compact, public_c, segs in cases:
        assert isinstance(compact.bits, PackedShares) and isinstance(compact.below, PackedShares)
        for fn in (secure_l1_bits, secure_l1_bits_full):
            np.testing.assert_array_equal(
                np.asarray(mpc.run(mpc.output(fn(compact, public_c, segs))), dtype=np.int64),
                np.asarray(mpc.run(mpc.output(fn(plain, public_c, segs))), dtype=np.int64))


def _edge_inputs(frac_bits: int) -> tuple[np.ndarray, np.ndarray, list[int], int]:
    """Counts and model values at every edge: 0, powers of two, 2^l − 1, c < 0.5, halves,
    values above 2^l, and random ones; grouped in uneven segments."""
    max_count = 1000                       # l = 10
    rng = np.random.default_rng(frac_bits + 10)
    n = 400
    x = rng.integers(0, 1024, n)
    x[:12] = [0, 0, 1, 1023, 512, 511, 7, 8, 0, 1023, 3, 1000]
    c = rng.uniform(0, 1100, n) * (rng.random(n) < 0.6)
    c[:12] = [0.0, 0.4, 1.0, 1023.0, 512.0, 511.75, 8.0, 8.0, 1030.0, 2048.0, 2.5, 0.124]
    c[12:40] = 2.0 ** rng.integers(0, 11, 28)
    return x, c, [1, 11, 100, 3, 285], max_count


@pytest.mark.parametrize("frac_bits", [0, 1, 3])
def test_priced_comparisons_are_exact_and_cost_what_the_plan_says(frac_bits: int) -> None:
    x, c, segments, max_count = _edge_inputs(frac_bits)
    bits = decompose_counts(count_secint(max_count, frac_bits).array(x), max_count, frac_bits)
    scale = 1 << frac_bits
    c_int = round_public_marginal(c, frac_bits)
    starts = np.r_[0, np.cumsum(segments)[:-1]]
    want = np.add.reduceat(np.abs(x * scale - c_int), starts)
    for fn in (secure_l1_bits, secure_l1_bits_full):
        got = np.asarray(mpc.run(mpc.output(fn(bits, c, segments))), dtype=np.int64)
        np.testing.assert_array_equal(got, want)
    per_cell = np.asarray(mpc.run(mpc.output(secure_abs_diff_bits(bits, c))), dtype=np.int64)
    np.testing.assert_array_equal(per_cell, np.abs(x * scale - c_int))
    plan = comparison_plan(c_int, bits.count_bits, frac_bits)
    assert less_than_pieces(bits, c_int).mults == plan.mults
    # about log2 c multiplications per cell, none for c = 0 or c ≥ 2^(l+f)
    inside = (c_int > 0) & (c_int < 1 << (bits.count_bits + frac_bits))
    assert plan.mults <= int(np.ceil(np.log2(np.maximum(c_int[inside], 1))).sum())
    zeros = comparison_plan(np.zeros(50, dtype=np.int64), bits.count_bits, frac_bits)
    assert zeros.mults == 0 and zeros.steps == 0


def test_report_noisy_max_reference_and_budget() -> None:
    rng = np.random.default_rng(0)
    assert report_noisy_max(np.array([1.0, 50.0, 3.0]), 1000.0, 1.0, rng) == 1
    # same rho per round as the EM: eps_t^2 / 8
    eps, rho, name = selection_epsilon(0.4, "rnm")
    assert eps == pytest.approx(0.2) and rho == pytest.approx(0.4 ** 2 / 8)
    assert report_noisy_max_cost(0.2) == pytest.approx(rho) and name == "report-noisy-max"
    assert selection_epsilon(0.4, "gumbel")[1] == pytest.approx(0.4 ** 2 / 8)


@pytest.mark.parametrize("frac_bits", [0, 2, 5])
def test_secure_l2_distance_is_within_stated_tau(frac_bits: int) -> None:
    from flaimsim.parties.distaim.plan import l2_distances
    from flaimsim.parties.distaim.secure_em import em_fxp_type
    from flaimsim.parties.distaim.secure_l2 import l2_count_secint, secure_l2_distances, sum_squares
    from flaimsim.parties.distaim.plan import STATED_TAU

    n_max = 48842
    rng = np.random.default_rng(frac_bits)
    segments = [1, 1, 4, 60, 3, 900, 2]
    n = sum(segments)
    x = rng.integers(0, 40, n)
    c = rng.uniform(0, 40, n) * (rng.random(n) < 0.5)
    x[0], c[0] = n_max, 0.0                 # the largest distance: a whole marginal off
    x[1], c[1] = 0, 0.0                     # distance 0
    x[-2:], c[-2:] = [3, 0], [3.0, 0.4]     # distance 0 after rounding
    x[6:66] = 0
    c[6:66] = n_max / 60                    # large model values
    secint = l2_count_secint(n_max, frac_bits)
    xs = secint.array(x)
    got = mpc.run(mpc.output(secure_l2_distances(xs, sum_squares(xs, segments), c, segments,
                                                 n_max, frac_bits, em_fxp_type(2.0 ** 31))))
    want = l2_distances(x, c, segments, frac_bits)
    assert np.max(np.abs(np.asarray(got, dtype=float) - want)) < STATED_TAU


@pytest.mark.parametrize("frac_bits", [0, 2])
def test_lazy_l1_from_priced_bits_and_segment_counts_is_exact(frac_bits: int) -> None:
    """Lazy decomposition: bits of the priced cells only (round_f(c) > 0) plus Σ_r x per
    segment, given apart or as the one record count N of consistent marginals, give the plain
    L1 exactly."""
    from flaimsim.parties.distaim.plan import priced_cells
    rng = np.random.default_rng(frac_bits)
    segments, n_records, max_count = [4, 9, 1, 30], 700, 1000
    # Consistent marginals: every segment sums to the same N; a third of the model zero.
    x = np.concatenate([rng.multinomial(n_records, rng.dirichlet(np.ones(n))) for n in segments])
    c = rng.uniform(0, 300, x.size) * (rng.random(x.size) < 0.66)
    c[:3] = [0.2, 0.0, 1030.0]                    # below a unit, zero, above 2^l
    stype = count_secint(max_count, frac_bits)
    c_int = round_public_marginal(c, frac_bits)
    priced = priced_cells(c_int)
    assert 0 < priced.size < x.size
    starts = np.r_[0, np.cumsum(segments)[:-1]]
    want = np.add.reduceat(np.abs(x * (1 << frac_bits) - c_int), starts)
    bits = decompose_counts(stype.array(x[priced]), max_count, frac_bits)
    per_segment = stype.array(np.add.reduceat(x, starts))
    for counts in (per_segment, stype(n_records)):
        got = secure_l1_bits(bits, c, segments, segment_counts=counts)
        np.testing.assert_array_equal(np.asarray(mpc.run(mpc.output(got)), dtype=np.int64), want)
    full = decompose_counts(stype.array(x), max_count, frac_bits)
    got = np.asarray(mpc.run(mpc.output(secure_l1_bits(full, c, segments))), dtype=np.int64)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(Exception, match="priced cells"):
        secure_l1_bits(full, c, segments, segment_counts=per_segment)


def test_decomposed_cells_claim_each_cell_once_and_anchor_on_the_smallest_candidate() -> None:
    from flaimsim.parties.distaim.plan import (DecomposedCells, anchor_cells, kept_cells,
                                               scored_priced_cells)
    done = DecomposedCells.of(10)
    np.testing.assert_array_equal(done.claim(np.array([7, 2, 2, 5])), [2, 5, 7])
    np.testing.assert_array_equal(done.claim(np.array([5, 6, 7])), [6])
    assert done.claim(np.zeros(0, dtype=np.int64)).size == 0 and done.count == 4
    with pytest.raises(ValueError, match="outside"):
        done.claim(np.array([3, 10]))
    # eager: with at most 6 cells left, a claim of a new cell takes all that are left
    assert done.claim(np.array([5]), eager_below=6).size == 0     # nothing new: nothing
    np.testing.assert_array_equal(done.claim(np.array([0]), eager_below=6), [0, 1, 3, 4, 8, 9])
    assert done.count == 10
    np.testing.assert_array_equal(anchor_cells([4, 2, 3], 9), [4, 5])
    np.testing.assert_array_equal(anchor_cells([], 3), [0, 1, 2])
    np.testing.assert_array_equal(kept_cells([6, 0], [3, 2]), [6, 7, 8, 0, 1])
    np.testing.assert_array_equal(
        scored_priced_cells([6, 0], [3, 2], np.array([0.0, 0.6, 2.0, 0.2, 0.0]), 0), [7, 8])
    np.testing.assert_array_equal(
        scored_priced_cells([6, 0], [3, 2], np.array([0.0, 0.6, 2.0, 0.2, 0.0]), 2), [7, 8, 0])
