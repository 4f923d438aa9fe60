"""The servers' vector Shamir splitting, recombination and wire encoding against MPyC's own."""

from __future__ import annotations

import itertools
import secrets

import numpy as np
import pytest
from mpyc import finfields, thresha
from scipy.stats import chisquare

from flaimsim.parties.mpc import vector_resharing as vr

# MPyC's SecInt fields at 14, 22, 40 and 64 bits (46-, 54-, 72- and 96-bit primes): the
# uint64 path and the Python-int path; and small fields for the distribution tests.
FIELD_BITS = [46, 54, 72, 96]
P_VALUE_FLOOR = 1e-6  # os.urandom cannot be seeded: a floor that a fair draw misses


@pytest.fixture()
def installed():
    vr.install()
    yield
    vr.uninstall()


def prime_field(bits: int) -> type:
    from mpyc.runtime import mpc

    field = mpc.SecInt(bits - 32).field
    assert field.modulus.bit_length() == bits
    return field


def _secrets(p: int, n: int) -> list[int]:
    return [0, 1, p - 1] + [secrets.randbelow(p) for _ in range(n)]


@pytest.mark.parametrize("bits", FIELD_BITS)
@pytest.mark.parametrize("t,m", [(1, 3), (2, 5)])
def test_split_recombines_with_mpyc_and_itself(installed, bits, t, m):
    field = prime_field(bits)
    p = field.modulus
    values = _secrets(p, 500)
    shares = thresha.random_split(field, values, t, m)
    assert len(shares) == m and all(len(row) == len(values) for row in shares)
    for subset in itertools.combinations(range(m), t + 1):
        points = [(i + 1, shares[i]) for i in subset]
        assert thresha.recombine(field, points) == values
        as_lists = [(x, [int(v) for v in row]) for x, row in points]
        assert [v % p for v in vr._ORIGINAL["recombine"](field, as_lists)] == values
    # MPyC's shares, recombined here
    theirs = vr._ORIGINAL["random_split"](field, values, t, m)
    assert thresha.recombine(field, [(i + 1, theirs[i]) for i in range(t + 1)]) == values
    # t shares alone are not enough: they do not determine the secrets
    fewer = thresha.recombine(field, [(i + 1, shares[i]) for i in range(t)]) if t > 1 else None
    assert fewer is None or fewer != values


@pytest.mark.parametrize("bits", FIELD_BITS)
def test_field_elements_in_field_elements_out(installed, bits):
    field = prime_field(bits)
    values = [field(v) for v in _secrets(field.modulus, 20)]
    shares = thresha.random_split(field, values, 1, 3)
    out = thresha.recombine(field, [(1, [field(int(v)) for v in shares[0]]),
                                    (2, [field(int(v)) for v in shares[1]])])
    assert all(isinstance(a, field) for a in out) and out == values


@pytest.mark.parametrize("bits", FIELD_BITS)
def test_field_arrays_are_read_without_iterating(installed, bits, monkeypatch):
    """MPyC's vectorised runtime splits field arrays: their ints are read as one array (one
    field element per value, built by iterating, cost a fifth of a server's busy time)."""
    field = prime_field(bits)
    values = _secrets(field.modulus, 50)
    array = field.array(np.array(values, dtype=object))
    monkeypatch.setattr(type(array), "__iter__", lambda self: pytest.fail("iterated"))
    shares = thresha.random_split(field, array, 1, 3)
    assert thresha.recombine(field, [(1, shares[0]), (3, shares[2])]) == values


@pytest.mark.parametrize("bits", FIELD_BITS)
def test_wire_encoding_is_mpycs_byte_for_byte(installed, bits):
    field = prime_field(bits)
    values = _secrets(field.modulus, 300)
    ours = field.to_bytes(values)
    assert ours == vr._ORIGINAL["to_bytes"](field, values)
    assert field.to_bytes(np.array(values, dtype=object)) == ours
    assert len(ours) == field.byte_length * len(values)
    assert field.from_bytes(ours) == values == vr._ORIGINAL["from_bytes"](field, ours)
    assert all(type(v) is int for v in field.from_bytes(ours))


@pytest.mark.parametrize("bits", FIELD_BITS)
def test_values_too_wide_raise_as_mpyc_does(installed, bits):
    field = prime_field(bits)
    with pytest.raises(OverflowError):
        field.to_bytes([1 << (8 * field.byte_length)])
    with pytest.raises(OverflowError):
        field.to_bytes([-1])


def test_other_fields_and_points_go_to_mpyc(installed):
    gf2 = finfields.GF(finfields.gfpx.GFpX(2).next_irreducible(2 ** 7))
    values = [gf2(5), gf2(9)]
    shares = thresha.random_split(gf2, values, 1, 3)
    assert [gf2(v) for v in thresha.recombine(gf2, [(1, shares[0]), (2, shares[1])])] == values
    field = prime_field(54)
    shares = thresha.random_split(field, [7, 11], 1, 3)
    at_1 = thresha.recombine(field, [(2, shares[1]), (3, shares[2])], x_rs=[1])
    assert [v % field.modulus for v in at_1[0]] == [int(shares[0][0]), int(shares[0][1])]


def test_install_and_uninstall():
    vr.install()
    vr.install()  # idempotent
    assert thresha.random_split is vr.random_split
    vr.uninstall()
    assert thresha.random_split is not vr.random_split
    assert finfields.PrimeFieldElement.to_bytes.__func__ is \
        finfields.FiniteFieldElement.to_bytes.__func__


@pytest.mark.parametrize("order", [2, 7, 1000, (1 << 64) - 59, 1 << 64, (1 << 89) - 1])
def test_uniform_below_is_uniform(order):
    """Chi-square over 50 equal-width buckets of [0, order) (order itself for tiny ones)."""
    n = 100_000
    draws = vr.uniform_below(order, n)
    assert len(draws) == n
    values = np.array([int(v) for v in draws], dtype=object)
    assert values.min() >= 0 and values.max() < order
    buckets = min(order, 50)
    index = np.array([v * buckets // order for v in values], dtype=np.int64)
    counts = np.bincount(index, minlength=buckets)
    assert chisquare(counts).pvalue > P_VALUE_FLOOR


def test_share_of_a_fixed_secret_is_uniform(installed):
    """With t = 1, f(1) = s + c: uniform on GF(p) whatever s (here GF(101), s = 42)."""
    field = finfields.GF(101)
    shares = thresha.random_split(field, [42] * 50_500, 1, 3)
    for row in shares:
        counts = np.bincount(np.array([int(v) for v in row]), minlength=101)
        assert chisquare(counts).pvalue > P_VALUE_FLOOR


def test_bench_resharing_rows_and_state():
    """The bench checks both recombinations itself; it leaves MPyC's functions in place."""
    from flaimsim.bench.resharing_bench import bench_resharing

    out = bench_resharing(elements=2_000, count_bits=(14, 64))
    assert [r["field_bits"] for r in out["rows"]] == [46, 96]
    assert all(r["mpyc_s"] > 0 and r["vector_s"] > 0 for r in out["rows"])
    assert thresha.random_split is not vr.random_split
