"""Bench layer: network model, trade-off table, resumable sweep, plots (hand-made data)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from flaimsim.bench import network, sweep, table
from flaimsim.bench.network import Network, NetworkError, parse_network, step_costs, wall_time
from flaimsim.parties.links import TCP_FRAMING as F   # payload -> bytes on the link
from flaimsim.parties.ledger import Ledger, LedgerRow
from flaimsim.protocols.config import RunConfig

K, M = 4, 3


def row(rnd: int, phase: str, sender: str, receiver: str, nbytes: int, messages: int = 1,
        source: str = "wire") -> LedgerRow:
    return LedgerRow("r", "p", rnd, phase, sender, receiver, nbytes, messages, source)


# ---- network model -------------------------------------------------------------------------

def test_network_hand_computed_link_model():
    net = Network("test", latency_s=0.01, bandwidth_bps=8000 * F)  # 1000 payload B/s per link
    rows = [row(1, "select", "server:0", "server:1", 1000, 10),
            row(1, "select", "server:1", "server:0", 500, 4),
            row(1, "measure", "server:0", "server:1", 250, 1)]
    steps = step_costs(rows, net)
    # select: 10 sequential messages on the busiest link, 1000 bytes on it; then measure.
    assert [(s.phase, s.message_rounds, s.bottleneck_bytes) for s in steps] == [
        ("select", 10, 1000), ("measure", 1, 250)]
    assert wall_time(rows, net) == pytest.approx(10 * 0.01 + 1.0 + 0.01 + 0.25)


@pytest.mark.parametrize("per, expected", [("link", 0.01 + 1.0), ("party", 0.01 + 2.0)])
def test_network_parallel_uploads_and_aggregator_bottleneck(per, expected):
    net = Network("test", 0.01, 8000 * F, per=per)   # 1000 payload bytes/s
    rows = [row(0, "secagg-masked-input", "client:0", "aggregator", 1000),
            row(0, "secagg-masked-input", "client:1", "aggregator", 1000)]
    # Per link the two uploads overlap; per party the aggregator receives 2000 bytes.
    assert wall_time(rows, net) == pytest.approx(expected)


def test_network_charges_the_wire_rounds_not_messages():
    """MPyC overlaps operations: 40 messages on a link in 6 communication rounds pay 6
    latencies; a step without round counts falls back to its messages."""
    net = Network("test", latency_s=0.01, bandwidth_bps=8e9)
    counted = [LedgerRow("r", "p", 1, "score", "server:0", "server:1", 100, 40, "wire", 6),
               LedgerRow("r", "p", 1, "score", "server:1", "server:0", 100, 40, "wire", 0)]
    legacy = [row(1, "select", "server:0", "server:1", 100, 5)]
    steps = step_costs(counted + legacy, net)
    assert [(s.phase, s.message_rounds, s.counted) for s in steps] == [
        ("score", 6, "rounds"), ("select", 5, "messages")]
    assert wall_time(counted + legacy, net) == pytest.approx(11 * 0.01 + 2 * 8 * 100 * F / 8e9)


def test_network_steps_are_sequential_across_rounds_and_ordered():
    net = Network("test", 1.0, 8e9)
    rows = [row(2, "measure", "server:0", "server:1", 0, 3),
            row(1, "score", "server:0", "server:1", 0, 2),
            row(1, "share-inputs", "client:0", "server:0", 0, 1)]
    assert [(s.round, s.phase) for s in step_costs(rows, net)] == [
        (1, "share-inputs"), (1, "score"), (2, "measure")]
    assert wall_time(rows, net) == pytest.approx(6.0)
    assert wall_time([], net) == 0.0


def test_parse_network_presets_and_custom():
    assert parse_network("LAN") == network.PRESETS["lan"]
    assert parse_network("wan").latency_s == pytest.approx(0.05)
    assert parse_network("wan").bandwidth_bps == pytest.approx(100e6)
    custom = parse_network("20,10,party")
    assert (custom.latency_s, custom.bandwidth_bps, custom.per) == (0.02, 1e7, "party")
    for bad in ("moon", "1,x", "1,0", "-1,10"):
        with pytest.raises(NetworkError):
            parse_network(bad)


# ---- a hand-made sweep directory -----------------------------------------------------------

DIST_ERR = {2: 0.30, 4: 0.20, 8: 0.25}
FLAIM_ERR = {2: 0.40, 4: 0.33, 8: 0.22}
NAIVE_ERR = {2: 0.45, 4: 0.40, 8: 0.35}


def distaim_ledger(T: int) -> Ledger:
    """Each client shares 1000 bytes to each of 3 servers once; servers talk every round."""
    led = Ledger("d", "distaim")
    for k in range(K):
        for i in range(M):
            led.add(0, "share-inputs", f"client:{k}", f"server:{i}", 1000, 1, "modelled")
    for t in range(1, T + 1):
        for i in range(M):
            for j in range(M):
                if i != j:
                    led.add(t, "select", f"server:{i}", f"server:{j}", 600, 10, "modelled")
    return led


def flaim_ledger(T: int, protocol: str) -> Ledger:
    """Round 0: 100 bytes up per client; rounds 1..T: 100 down + 50 up per client."""
    led = Ledger("f", protocol)
    for k in range(K):
        led.add(0, "secagg-masked-input", f"client:{k}", "aggregator", 100, 1, "wire")
        for t in range(1, T + 1):
            led.add(t, "model-broadcast", "aggregator", f"client:{k}", 100, 1, "wire")
            led.add(t, "secagg-masked-input", f"client:{k}", "aggregator", 50, 1, "wire")
    return led


def make_record(protocol: str, T: int, seed: int, err: float, led: Ledger) -> dict:
    m = M if protocol == "distaim" else 0
    return {"protocol": protocol, "dataset": "toy", "epsilon": 1.0, "partition": "iid",
            "rounds": T, "seed": seed, "clients": K, "servers": M,
            "l1_workload_error": err + (0.01 if seed else -0.01),
            "l1_workload_error_3way": 2 * err, "nll": 10 + err, "auc": 0.7,
            "wall_seconds": 1.0, "selected": ["a|b", "c"], **led.summary(K, m)}


def write_cell(cells_dir: Path, key: str, record: dict, led: Ledger) -> None:
    led.write_csv(cells_dir / f"{key}.ledger.csv")
    (cells_dir / f"{key}.json").write_text(json.dumps(
        {"key": key, "config": {}, "record": record, "notes": [],
         "ledger": f"{key}.ledger.csv"}))


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    cells_dir = tmp_path / "cells"
    cells_dir.mkdir()
    for T in (2, 4, 8):
        for seed in (0, 1):
            for proto, errs, led in (("distaim", DIST_ERR, distaim_ledger(T)),
                                     ("aug-flaim-private", FLAIM_ERR,
                                      flaim_ledger(T, "aug-flaim-private")),
                                     ("naive-flaim", NAIVE_ERR, flaim_ledger(T, "naive"))):
                write_cell(cells_dir, f"{proto}-T{T}-s{seed}",
                           make_record(proto, T, seed, errs[T], led), led)
    return tmp_path


def test_trade_off_best_t_and_ratios(sweep_dir: Path):
    (t,) = table.trade_offs(sweep.load_cells(sweep_dir))
    assert (t.distaim.rounds, t.flaim.rounds) == (4, 8)
    assert t.t_ratio == pytest.approx(0.5)  # DistAIM's T* / FLAIM's T*
    # two repeats at ±0.01: SE 0.01, no other T within it
    assert (t.distaim_near, t.flaim_near, t.t_ratio_range) == ((4,), (8,), (0.5, 0.5))
    # DistAIM: 3 × 1000 bytes sent per client; FLAIM at T=8: 100 + 8 × 150 per client.
    assert t.distaim.client_bytes == pytest.approx(3000)
    assert t.flaim.client_bytes == pytest.approx(1300)
    assert t.client_ratio == pytest.approx(3000 / 1300)
    assert t.flaim.client_bytes_participating == pytest.approx(1300)  # all K take part
    assert t.error_diff_pct == pytest.approx(100 * (0.22 - 0.20) / 0.20)
    assert t.nll_diff == pytest.approx(0.02)
    # Per compute server at T=4: receives 4 × 1000 from clients, sends and receives
    # 2 × 600 per round; aggregator at T=8: 4 × (100 + 8 × 150).
    assert t.distaim.server_bytes == pytest.approx(4000 + 4 * 2 * 1200)
    assert t.flaim.server_bytes == pytest.approx(4 * 1300)
    assert (t.distaim.bytes_source, t.flaim.bytes_source) == ("modelled", "wire")
    # Cumulative 100 + 150 t reaches 3000 at t = 20, extrapolated from the T = 8 runs.
    assert t.crossovers["aug-flaim-private"] == (20.0, True, 8)
    lan = network.PRESETS["lan"]
    assert t.distaim.network_seconds["LAN"] == pytest.approx(
        wall_time(distaim_ledger(4).rows, lan))


@pytest.mark.parametrize("per_round, target, expected", [
    ({0: 100.0, 1: 150.0, 2: 150.0}, 250.0, (1.0, False)),
    ({0: 100.0, 1: 150.0, 2: 150.0}, 401.0, (3.0, True)),
    ({0: 100.0}, 50.0, (0.0, False)),
    ({0: 100.0}, 500.0, (None, False)),
])
def test_crossover_round(per_round, target, expected):
    assert table.crossover_round(per_round, target) == expected


def test_best_t_prefers_smaller_t_on_ties():
    cells = [sweep.Cell(f"c{t}", {"protocol": "distaim", "dataset": "x", "epsilon": 1,
                                  "partition": "iid", "rounds": t, "l1_workload_error": 0.1},
                        None) for t in (8, 2, 4)]
    assert table.best_t(table.summarise(cells, ()), "distaim").rounds == 2


def test_write_table_files(sweep_dir: Path):
    text = table.write_table(sweep_dir)
    assert "DistAIM/FLAIM 2.3x" in text
    assert (sweep_dir / "table.csv").read_text().count("\n") == 2
    md = (sweep_dir / "table.md").read_text()
    assert "| best T (by mean L1 W+ error) | 4 | 8 |" in md


def test_plots_are_written(sweep_dir: Path):
    from flaimsim.bench.plots import make_plots

    paths = make_plots(sweep_dir)
    names = {p.name.split("-toy")[0] for p in paths}
    assert names == {"traffic-vs-T", "error-vs-T", "phases", "crossover", "network"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


# ---- resumable sweep -----------------------------------------------------------------------

def test_sweep_resumes_only_missing_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls: list[tuple[str, int]] = []
    fail = {"distaim": 3}

    def fake_runner(name: str):
        def run(config: RunConfig, data=None, progress=None):
            calls.append((config.protocol, config.rounds))
            if fail.get(config.protocol) == config.rounds:
                raise RuntimeError("boom")
            led = flaim_ledger(config.rounds, config.protocol)
            rec = make_record(config.protocol, config.rounds, config.seed, 0.1, led)
            return SimpleNamespace(record=rec, ledger=led, notes=[], loop=None)
        return run

    monkeypatch.setattr("flaimsim.protocols.runner", fake_runner)
    monkeypatch.setattr(sweep, "_prepared", lambda config: None)
    spec = sweep.SweepSpec(RunConfig(), protocols=("central", "distaim"), rounds=(2, 3),
                           seeds=(0,))
    first = sweep.run_sweep(spec, tmp_path, jobs=1, show_progress=False)
    assert len(first.done) == 3 and [f.key.split("-")[0] for f in first.failed] == ["distaim"]
    assert "boom" in json.loads((tmp_path / "failures.json").read_text())[0]["error"]
    assert len(calls) == 4

    calls.clear()
    fail.clear()
    second = sweep.run_sweep(spec, tmp_path, jobs=1, show_progress=False)
    assert calls == [("distaim", 3)]
    assert len(second.skipped) == 3 and len(second.done) == 1 and not second.failed

    calls.clear()
    sweep.run_sweep(spec, tmp_path, jobs=1, show_progress=False)
    assert calls == []
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("cell,protocol")
    assert "a|b;c" in lines[1]
    config = json.loads((tmp_path / "sweep-config.json").read_text())
    assert config["rounds"] == [2, 3] and len(config["cells"]) == 4

    # A second sweep into the same directory adds its cells; table/plot read the union.
    more = sweep.SweepSpec(RunConfig(), protocols=("central",), rounds=(5,), seeds=(0,))
    sweep.run_sweep(more, tmp_path, jobs=1, show_progress=False)
    assert calls == [("central", 5)]
    assert len(sweep.load_cells(tmp_path)) == 5
    assert len(json.loads((tmp_path / "sweep-config.json").read_text())["runs"]) == 4


def test_cell_key_changes_with_any_option():
    a = RunConfig(protocol="distaim", rounds=4)
    assert sweep.cell_key(a) == sweep.cell_key(RunConfig(protocol="distaim", rounds=4))
    assert sweep.cell_key(a) != sweep.cell_key(a.replace(iters_final=10))
    assert sweep.cell_key(a).startswith("distaim-synthfs-iid-e1-T4-s0-")


# ---- explain -------------------------------------------------------------------------------

def test_narrate_orders_steps_and_reports_openings():
    from flaimsim.bench.explain import narrate

    led = distaim_ledger(1)
    text = narrate("DistAIM", led, {"share-inputs": "shares"}, {1: ["the index"]}, K)
    assert text.index("-- round 0") < text.index("[share-inputs] shares") < \
        text.index("-- round 1") < text.index("[select]") < text.index("opened: the index")
    assert "client → server: 12 flows from 4 client(s), 12 messages, 12.00 kB" in text
    assert "per client (sent + received, mean over 4): 3.00 kB" in text
    assert "(bytes: modelled)" in text


def test_ledger_source_is_required_and_only_wire_or_modelled():
    led = Ledger("r", "p")
    with pytest.raises(TypeError):
        led.add(0, "select", "client:0", "aggregator", 4, 1)  # type: ignore[call-arg]
    for bad in ("measured", "", "estimated"):
        with pytest.raises(ValueError, match="source must be one of"):
            led.add(0, "select", "client:0", "aggregator", 4, 1, bad)  # type: ignore[arg-type]
    led.add(0, "select", "client:0", "aggregator", 4, 1, "wire")
    led.add(0, "score", "server:0", "server:1", 9, 1, "modelled")
    assert led.bytes_source() == "mixed" and {r.source for r in led.rows} == {"wire", "modelled"}


def test_option_bill_prices_each_choice_on_the_wire():
    """DistAIM's bill by option (explain's table): one real tiny run per alternative; the
    encodings' uploads order as their formulas do, rnm's selection is cheaper than the EM's."""
    from flaimsim.bench.explain import TINY
    from flaimsim.bench.option_bill import ALTERNATIVES, format_bill, option_bill

    rows = option_bill(RunConfig(**TINY))
    by = {(r.option, r.value): r for r in rows}
    assert len(rows) == 1 + len(ALTERNATIVES) and all(r.source == "wire" for r in rows)
    base = rows[0]
    shamir, additive = by[("sharing", "shamir")], by[("sharing", "additive")]
    assert base.upload_per_client < additive.upload_per_client < shamir.upload_per_client
    # Shamir shares need no server-side conversion; compact and additive shares do.
    assert shamir.server_sent_by_phase["share-inputs"] == 0 < base.server_sent_by_phase["share-inputs"]
    assert by[("em", "rnm")].server_sent_by_phase["select"] < base.server_sent_by_phase["select"]
    assert by[("score", "l2")].server_sent_by_phase["score"] != base.server_sent_by_phase["score"]
    # L2 with additive shares skips the unwrap that compact shares need
    assert (by[("score + sharing", "l2, additive")].server_sent_by_phase["score"]
            < by[("score", "l2")].server_sent_by_phase["score"])
    assert all(r.server_sent == pytest.approx(sum(r.server_sent_by_phase.values())) for r in rows)
    text = format_bill(rows)
    assert "score_frac_bits" in text and "upload/client" in text


def test_table_labels_distaim_options():
    label = table.distaim_options({"sharing": "compact", "score": "l2", "em": "rnm",
                                   "score_frac_bits": 2})
    assert "compact shares" in label and "l2 score" in label and "rnm selection" in label
    assert table.distaim_options({}) == ""
