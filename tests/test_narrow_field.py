"""The narrow field for DistAIM's bits (flaimsim.parties.mpc.narrow_field), under 3 real parties.

Exactness against plain numpy; what server 0 learns beyond the openings (its V) is uniform and
useless to an attacker; and the attack that guesses x from V works once the mask U_C is
removed, so the guard is what stops it.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from flaimsim.bench.narrow_check import MAX_COUNT, check_narrow_field
from flaimsim.parties.mpc.narrow_field import NARROW_BITS, NARROW_PRIME, mulmod

pytestmark = pytest.mark.timeout(300)
L = MAX_COUNT.bit_length()


def test_mulmod_matches_python_integers_at_the_edges() -> None:
    rng = np.random.default_rng(0)
    a = np.r_[rng.integers(0, NARROW_PRIME, 5000), [0, 1, NARROW_PRIME - 1, NARROW_PRIME - 1]]
    b = np.r_[rng.integers(0, NARROW_PRIME, 5000), [NARROW_PRIME - 1, NARROW_PRIME - 1, 1,
                                                    NARROW_PRIME - 1]]
    got = mulmod(a.astype(np.int64), b.astype(np.int64), NARROW_PRIME)
    assert [int(v) for v in got] == [int(x) * int(y) % NARROW_PRIME for x, y in zip(a, b)]


@pytest.fixture(scope="module")
def guarded() -> dict:
    return check_narrow_field(cells=4000)


def test_bits_prefix_products_scores_and_moves_back_are_exact(guarded) -> None:
    assert guarded["narrow"] and guarded["field_bits"] > 62   # the path under test ran
    assert guarded["bits_exact"] and guarded["below_exact"]
    assert guarded["l1_exact"] and guarded["to_wide_exact"]


def test_server0_view_of_the_bits_is_uniform_and_does_not_give_x(guarded) -> None:
    v, x = np.array(guarded["view_bits_v"]), np.array(guarded["x"])
    fixed = v[4:len(x) // 2]                     # every one of these cells has x = 5
    counts = np.bincount(fixed >> (L - 5), minlength=32)
    assert chisquare(counts).pvalue > 1e-3
    hits = np.mean(v == x % (1 << L))            # the attacker's guess: V is x mod 2^l
    assert hits < 0.02                           # chance is 2^-10


def test_server0_view_when_moving_back_is_uniform(guarded) -> None:
    v = np.array(guarded["view_to_wide_v"], dtype=np.int64)   # V = (7 + U_C) mod P
    counts = np.bincount(v >> (NARROW_BITS - 4), minlength=16)
    assert chisquare(counts).pvalue > 1e-3


def test_without_the_mask_u_c_server0_reads_every_count() -> None:
    exposed = check_narrow_field(cells=600, drop_guard=True)
    assert exposed["bits_exact"]                 # the protocol still computes...
    v, x = np.array(exposed["view_bits_v"]), np.array(exposed["x"])
    assert np.array_equal(v, x % (1 << L))       # ...and server 0 now sees x itself


@pytest.mark.parametrize("sharing", ["compact", "shamir"])
def test_distaim_servers_at_kappa_52_score_select_and_measure_exactly(sharing: str) -> None:
    """The compute servers' commands at κ = 52 (the counts' field above 2^62, so the bits are
    narrow), with a wrapped compact sum and with plain Shamir counts: the far candidate wins
    at a huge ε, a measurement at tiny σ returns x itself
    (moved back from the narrow field), and server 0 sends more in the decomposition than
    the others (its V inputs: the narrow path ran)."""
    from flaimsim.parties.distaim.engines import MpcEngine
    from flaimsim.parties.distaim.options import DistAimOptions
    from flaimsim.parties.ledger import Ledger

    engine = MpcEngine(Ledger(), DistAimOptions(m=3, max_count=1000, sharing=sharing,
                                                sec_param=52))
    engine.decompose_chunk = 5
    try:
        x = np.array([5, 5, 5, 5, 900, 0, 5, 5, 5, 5, 5, 7], dtype=np.int64)
        vectors = {0: x, 1: np.zeros_like(x)}
        engine.share(0, [0, 1], vectors.__getitem__)
        engine.decompose(0)
        engine.score(0, [0, 4, 8], [4, 4, 4], np.full(x.size, 5.0), 0.1, [1.0] * 3, 1e4)
        sent = {}
        for row in engine.ledger.rows:
            if row.phase == "score":
                sent[row.sender] = sent.get(row.sender, 0) + row.bytes
        assert sent["server:0"] > 1.1 * max(sent["server:1"], sent["server:2"])  # V inputs
        index, _ = engine.select(0, 500.0, 1.0)
        assert index == 1
        values, _ = engine.measure(0, 4, 8, 0.01)
        assert np.array_equal(values, x[4:])
    finally:
        engine.close()


@pytest.mark.timeout(600)
def test_modelled_bytes_equal_the_wire_per_phase_with_the_narrow_field(tmp_path, monkeypatch):
    """A real DistAIM run at κ = 52 (the narrow path) against the cost table calibrated for it:
    bytes per phase equal to the byte (the table is fitted on the same code)."""
    from flaimsim.protocols.config import RunConfig
    from flaimsim.protocols.distaim import run_distaim

    monkeypatch.setenv("FLAIMSIM_CACHE", str(tmp_path))
    cfg = RunConfig(protocol="distaim", dataset="synthfs", mpc="real", rounds=2, seed=0,
                    clients=5, synthfs_features=4, synthfs_records=40, max_bins=5,
                    workload_marginals=3, iters_round=30, iters_final=60, mpc_security=52,
                    check_model=True)
    result = run_distaim(cfg)
    check = result.record["model_check"]
    score_sent: dict[str, int] = {}
    for row in result.ledger.rows:
        if row.phase == "score":
            score_sent[row.sender] = score_sent.get(row.sender, 0) + row.bytes
    assert score_sent["server:0"] > score_sent["server:1"]   # V's inputs: the narrow path ran
    assert set(check["measured_bytes"]) == {"share-inputs", "score", "select", "measure"}
    assert "-k52-" in check["table"]
    assert check["max_abs_relative_error"] == 0.0
