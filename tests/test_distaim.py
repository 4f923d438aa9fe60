"""DistAIM end to end: real MPC with 3 server processes, the ideal functionality with the
calibrated cost model, and their agreement."""

from __future__ import annotations

import os

import numpy as np
import pytest

from flaimsim.parties.distaim.cost_model import CostTable, cache_key, select_bits_for
from flaimsim.parties.distaim.engines import MpcEngine, replay
from flaimsim.parties.distaim.options import DistAimOptions
from flaimsim.parties.ledger import Ledger
from flaimsim.protocols.config import ConfigError, RunConfig
from flaimsim.protocols.distaim import cost_setting, offset_std, run_distaim, score_bound
from flaimsim.protocols.mpc_security import mpyc_option
from flaimsim.protocols.prepare import wire_record_bound
from flaimsim.protocols.prepare import prepare

TINY = dict(protocol="distaim", dataset="synthfs", clients=5, synthfs_features=4,
            synthfs_records=40, max_bins=5, workload_marginals=3, rounds=2, iters_round=30,
            iters_final=60, seed=11)
WALL = ("wall_seconds", "select_s", "estimate_s", "generate_s", "evaluate_s")


@pytest.fixture(scope="module")
def real_run():
    cfg = RunConfig(mpc="real", **TINY)
    return cfg, run_distaim(cfg)


def test_real_run_spends_budget_and_opens_only_indices_and_noisy_marginals(real_run):
    cfg, res = real_run
    rec = res.record
    assert rec["bytes_source"] == "wire" and rec["private"] is True
    assert rec["rho_spent"] == pytest.approx(rec["rho_budget"])
    reveals = res.artifacts["reveals"]
    assert {r["name"] for r in reveals} == {"selected-index", "noisy-marginal"}
    # d1 one-way measurements, then per round one index and one noisy marginal.
    assert sum(r["name"] == "noisy-marginal" for r in reveals) == 4 + cfg.rounds
    assert sum(r["name"] == "selected-index" for r in reveals) == cfg.rounds
    # Counted by the servers' runtime hook, not the commands' log: the same openings, and
    # exactly the revealed elements (one per index, the cells of each noisy marginal).
    assert rec["server_openings_checked"] == len(reveals)
    assert rec["server_opened_elements"] == sum(int(np.prod(r["shape"])) for r in reveals)
    phases = res.ledger.by_phase()
    assert set(phases) == {"setup", "share-inputs", "score", "select", "measure"}
    # MPyC's connection handshakes (the connecting server's 2-byte pid plus PRSS keys, once
    # per pair) and the --peers digests (every ordered pair): written = read (checked when
    # the rows were added); the handshake side is the larger.
    setup = [r for r in res.ledger.rows if r.phase == "setup"]
    assert len(setup) == cfg.servers * (cfg.servers - 1) and all(r.bytes > 12 for r in setup)
    assert len({r.bytes for r in setup}) > 1
    assert all(r.source == "wire" for r in res.ledger.rows)


def test_client_upload_is_compact_formula(real_run):
    """Default compact shares: b = bitlen(public bound) bits per answered cell to server 0,
    a 16-byte seed to each other server, one 14-byte frame header per server."""
    cfg, res = real_run
    data = prepare(cfg)
    cells = sum(data.workload.n_cells(c) for c in data.workload.answered)
    b = wire_record_bound(data).bit_length()
    assert cfg.sharing == "compact" and b == (5 * 40).bit_length()
    expected = (cells * b + 7) // 8 + (cfg.servers - 1) * 16 + cfg.servers * 14
    assert res.record["client_bytes_sent_mean"] == expected
    assert res.record["client_bytes_received_mean"] == 0


@pytest.fixture(scope="module")
def modelled_run(tmp_path_factory):
    """The modelled run exactly as production makes it: its cost table comes from
    load_or_calibrate (default calibration sizes), cached in a fresh directory."""
    cache = tmp_path_factory.mktemp("cost-cache")
    old = os.environ.get("FLAIMSIM_CACHE")
    os.environ["FLAIMSIM_CACHE"] = str(cache)
    try:
        cfg = RunConfig(mpc="model", **TINY)
        runs = run_distaim(cfg), run_distaim(cfg)
    finally:
        if old is None:
            os.environ.pop("FLAIMSIM_CACHE")
        else:
            os.environ["FLAIMSIM_CACHE"] = old
    return cache, runs


@pytest.mark.timeout(900)  # the fixture calibrates the production table once (minutes)
def test_production_cost_table_matches_measured_per_phase(real_run, modelled_run):
    """The cached table a production (--mpc model) run used: its stored fit residual is
    small and it predicts the real run's measured bytes per phase within 2%."""
    cfg, res = real_run
    cache, _ = modelled_run
    files = list(cache.glob("cost-*.json"))
    assert len(files) == 1  # the one table the modelled runs used (calibrated once)
    table = CostTable.from_json(files[0].read_text())
    data = prepare(cfg)
    bound = wire_record_bound(data)
    sb = score_bound(data.workload, bound, offset_std(res.record["sigma"], cfg.servers))
    setting = cost_setting(cfg, data)
    assert table.key == cache_key(3, bound, sb, cfg.score_frac_bits, cfg.score,
                                  select_bits_for(sb, setting.select_epsilon),
                                  mpyc_option(setting.kappa))
    assert 0 <= table.max_relative_residual <= 0.02
    modelled = replay(res.artifacts["steps"], table, cfg.sharing).by_phase()
    measured = res.ledger.by_phase()
    measured.pop("setup")  # the one-off handshakes are not in the cost table
    assert set(modelled) == set(measured)
    for phase, nbytes in measured.items():
        assert modelled[phase] == pytest.approx(nbytes, rel=0.02), phase


@pytest.mark.timeout(900)
def test_check_model_reports_per_phase_agreement(real_run, modelled_run, monkeypatch):
    """--check-model's comparison (the table the modelled runs calibrated, from the cache):
    every phase of the real run priced within 2%, the handshakes left out."""
    from flaimsim.protocols.distaim import check_against_model, model_check_notes
    cfg, res = real_run
    cache, _ = modelled_run
    monkeypatch.setenv("FLAIMSIM_CACHE", str(cache))
    check = check_against_model(cfg, prepare(cfg), res.artifacts["steps"], res.ledger)
    assert not check["calibrated_now"]
    assert set(check["measured_bytes"]) == {"share-inputs", "score", "select", "measure"}
    assert all(check["measured_bytes"][p] > 0 for p in check["measured_bytes"])
    assert check["max_abs_relative_error"] <= 0.02
    assert "share-inputs wire" in model_check_notes(check)[0]
    with pytest.raises(ConfigError, match="check-model"):
        RunConfig(mpc="model", check_model=True)


@pytest.mark.timeout(900)
def test_modelled_run_is_reproducible(modelled_run):
    _, (a, b) = modelled_run
    assert a.record["bytes_source"] == "modelled"
    assert all(r.source == "modelled" for r in a.ledger.rows)
    strip = lambda r: {k: v for k, v in r.items() if k not in WALL}  # noqa: E731
    assert strip(a.record) == strip(b.record)


def test_secure_em_with_huge_epsilon_returns_argmax_three_parties():
    engine = MpcEngine(Ledger(), DistAimOptions(m=3, max_count=1000))
    engine.decompose_chunk = 5      # 12 cells in 3 chunks: the chunked path, packed bits
    try:
        x = np.array([5, 5, 5, 5, 900, 0, 5, 5, 5, 5, 5, 5], dtype=np.int64)
        vectors = {0: x, 1: np.zeros_like(x)}
        engine.share(0, [0, 1], vectors.__getitem__)
        engine.decompose(0)
        c = np.full(x.size, 5.0)  # candidate 1 (cells 4..7) is far from the model
        engine.score(0, [0, 4, 8], [4, 4, 4], c, 0.1, [1.0, 1.0, 1.0], 1e4)
        index, eps_eff = engine.select(0, 500.0, 1.0)
        assert index == 1 and 0 < eps_eff <= 500.0
        assert [s.chunks for s in engine.steps if s.op == "decompose"] == [3]
        names = [r["name"] for r in engine.reveal_log()]
        assert names == ["selected-index"]
    finally:
        engine.close()


class _FreeCost:
    """A cost table that charges nothing: the test compares the engines' steps only."""

    def upload_bytes_per_server(self, sharing, cells):
        return []

    def charge(self, ledger, *args, **kwargs):
        pass


LAZY_STEPS = [(0, 2, ""), (0, 2, ""), (1, 2, ""), (1, 11, "measure")]
# eager below 12 cells: the measurement's call takes the 12 cells left, cell 4 among them
EAGER_STEPS = [(0, 2, ""), (0, 2, ""), (1, 2, ""), (1, 12, "measure")]


@pytest.mark.parametrize("eager, expected", [(0, LAZY_STEPS), (12, EAGER_STEPS)])
def test_lazy_decomposition_same_steps_real_and_ideal_and_measure_needs_bits(
        eager, expected, monkeypatch):
    """Both engines decompose exactly the anchor, then the newly priced cells per score and
    the measured cells not yet decomposed (all that are left once at most ``eager`` are);
    the servers agree (each decompose call checks their count), and a measurement of cells
    never decomposed is refused by the servers."""
    from flaimsim.parties.distaim import engines as distaim_engine
    from flaimsim.parties.distaim.engines import IdealEngine

    monkeypatch.setattr(distaim_engine, "EAGER_DECOMPOSE_CELLS", eager)

    x = np.array([3, 1, 0, 0, 2, 2, 0, 0, 0, 4, 0, 0, 0, 0, 4, 0, 0, 0], dtype=np.int64)
    lengths, offsets = [2, 4, 12], [0, 2, 6]
    vectors = {0: x, 1: np.zeros_like(x)}
    c1 = np.r_[3.0, 1.0, 2.0, 0.0, 0.0, 2.0, np.zeros(12)]      # prices cells 0, 1, 2, 5
    c2 = np.r_[3.0, 1.0, 2.0, 1.0, 0.0, 0.0, 4.0, np.zeros(11)]  # newly prices 3, 6
    real = MpcEngine(Ledger(), DistAimOptions(m=3, max_count=40))
    ideal = IdealEngine(Ledger(), _FreeCost(), np.random.default_rng(0),
                        DistAimOptions(max_count=40))
    try:
        for engine in (real, ideal):
            engine.share(0, [0, 1], vectors.__getitem__, lambda ks: sum(vectors[k] for k in ks))
            engine.decompose(0, lengths)
            engine.score(0, offsets, lengths, c1, 0.1, [1.0] * 3, 100.0)
            engine.score(1, offsets, lengths, c2, 0.1, [1.0] * 3, 100.0)
            engine.measure(1, 6, 12, 1.0)
        decomposes = [[(s.round, s.cells, s.phase) for s in e.steps if s.op == "decompose"]
                      for e in (real, ideal)]
        assert decomposes[0] == decomposes[1] == expected
        assert real.decomposed_cells == ideal.decomposed_cells == sum(s[1] for s in expected)
        assert real.decompose_bytes > 0
        if eager:
            return
        assert real.decomposed_cells < x.size
        with pytest.raises(RuntimeError, match="not decomposed"):
            real.launcher.call("distaim_measure", name="x", offset=3, length=2, sigma=1.0)
    finally:
        real.close()


def test_real_run_counts_rounds_in_every_phase(real_run):
    """Rounds counted on the wire (out of band): every phase of a real run has a positive
    critical-path depth, the record's comm_rounds is their sum, and the setup is two (the
    handshakes, then the --peers digests)."""
    _, res = real_run
    by_phase = res.ledger.rounds_by_phase()
    assert set(by_phase) == {"setup", "share-inputs", "score", "select", "measure"}
    assert all(by_phase[p] > 0 for p in by_phase), by_phase
    assert by_phase["setup"] == 2
    assert res.record["comm_rounds"] == sum(by_phase.values()) == res.ledger.comm_rounds
    assert res.record["comm_rounds_by_phase"] == by_phase
    # fewer rounds than messages: independent messages share rounds
    assert by_phase["score"] < sum(r.messages for r in res.ledger.rows if r.phase == "score")


@pytest.mark.timeout(900)
def test_model_rounds_match_the_wire_per_phase(real_run, modelled_run, monkeypatch):
    """--mpc model charges rounds from the calibrated table: per phase, the real run's
    steps priced by the table give the rounds counted on its wire, within the timing noise
    of MPyC's overlapping coroutines (docs/rounds.md: a round or two per step)."""
    from flaimsim.parties.distaim.engines import PHASE_OF_STEP
    from flaimsim.protocols.distaim import check_against_model
    cfg, res = real_run
    cache, (modelled, _) = modelled_run
    monkeypatch.setenv("FLAIMSIM_CACHE", str(cache))
    check = check_against_model(cfg, prepare(cfg), res.artifacts["steps"], res.ledger)
    wire, model = check["measured_rounds"], check["modelled_rounds"]
    assert set(wire) == set(model) == {"share-inputs", "score", "select", "measure"}
    steps = {p: sum(1 for s in res.artifacts["steps"] if (s.phase or PHASE_OF_STEP[s.op]) == p)
             for p in wire}
    for p in wire:
        assert wire[p] > 0 and model[p] > 0, p
        assert abs(model[p] - wire[p]) <= max(2 * steps[p], 0.1 * wire[p]), (p, wire, model)
    assert modelled.record["comm_rounds"] == modelled.ledger.comm_rounds > 0
    assert modelled.record["comm_rounds_by_phase"].keys() == model.keys()


def test_profile_splits_every_phase_into_its_secure_operations(real_run):
    """The per-operation profile of a real run: the named secure operations each carry
    bytes, messages, rounds and seconds, and with the unclaimed rest they add up to the
    ledger's bytes and messages per phase."""
    _, res = real_run
    table = res.record["profile"]
    ops = {(r["phase"], r["op"]): r for r in table}
    for key in [("share-inputs", "input sharing"), ("share-inputs", "to Shamir"),
                ("score", "bit decomposition"), ("score", "priced comparisons"),
                ("score", "dot products"), ("select", "Gumbel noise"), ("select", "argmax"),
                ("select", "opening"), ("measure", "noise shares"), ("measure", "opening")]:
        r = ops[key]
        assert r["bytes"] > 0 and r["messages"] > 0 and r["rounds"] > 0, key
        assert r["seconds"] is not None and r["seconds"] >= 0, key
    for phase, nbytes in res.ledger.by_phase().items():
        rows = [r for r in table if r["phase"] == phase]
        assert sum(r["bytes"] for r in rows) == nbytes, phase
        assert sum(r["messages"] for r in rows) == sum(
            x.messages for x in res.ledger.rows if x.phase == phase), phase
    # an operation's own chain is part of its step's: never deeper than its phase
    depth = res.ledger.rounds_by_phase()
    assert all(r["rounds"] <= depth[r["phase"]] for r in table if r["rounds"] is not None)
    # the EM: the argmax's comparisons wait for the noise, so its rounds add to the noise's
    assert (ops[("select", "Gumbel noise")]["rounds"] + ops[("select", "argmax")]["rounds"]
            <= depth["select"] + 2 * 2)   # + a round or two per step: docs/rounds.md
