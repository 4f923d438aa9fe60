"""Runs over emulated links: every protocol byte crosses the emulator, and the bytes of an
emulated run equal those of the same seeded run without emulation for every seeded flow."""

from __future__ import annotations

from collections import Counter

import pytest

from flaimsim.bench.emulated import runs_on_networks
from flaimsim.parties import netem
from flaimsim.parties.ledger import LedgerRow
from flaimsim.protocols import RunConfig, runner
from flaimsim.protocols.config import ConfigError
from flaimsim.protocols.prepare import prepare

# A fast link: the test is about bytes, not time (no timing assertion here).
NET = "0.2,2000"
SMALL = dict(dataset="synthfs", clients=6, synthfs_features=4, synthfs_records=40,
             max_bins=4, workload_marginals=3, rounds=2, participation=0.5, iters_round=30,
             iters_final=60, seed=5)


def flows(rows: list[LedgerRow], keep=lambda r: True) -> Counter:
    """(round, phase, sender, receiver) -> (bytes, messages), over the rows kept."""
    out: Counter = Counter()
    for r in rows:
        if keep(r):
            out[(r.round, r.phase, r.sender, r.receiver, "bytes")] += r.bytes
            out[(r.round, r.phase, r.sender, r.receiver, "messages")] += r.messages
    return out


def per_link(rows: list[LedgerRow]) -> Counter:
    out: Counter = Counter()
    for r in rows:
        out[(r.sender, r.receiver)] += r.bytes
    return out


def fresh_relay(config: RunConfig) -> None:
    """Start the run with a relay of its own, so its counts are this run's alone."""
    netem.close_emulators()


@pytest.mark.parametrize("protocol,extra", [("aug-flaim-private", {}),
                                            ("naive-flaim", {"aggregation": "servers"})])
def test_flaim_bytes_unchanged_and_all_relayed(protocol: str, extra: dict) -> None:
    config = RunConfig(protocol=protocol, network=NET, **SMALL, **extra)
    data = prepare(config)
    fresh_relay(config)
    _, plain, emulated = runs_on_networks(config, data, [NET])
    result = emulated[NET]
    # FLAIM's flows are all seeded (sampling, choices, SecAgg+ graph): equal row by row.
    assert flows(result.ledger.rows) == flows(plain.ledger.rows)
    assert result.record["bytes_unemulated"] == result.record["bytes_emulated"] > 0
    relayed = netem.emulator(config.network_spec).relayed()
    ledger = per_link(result.ledger.rows)
    star = {k: v for k, v in ledger.items() if "aggregator" in k}
    assert star and all(relayed[k] == v for k, v in star.items())   # every frame, relayed
    clients = {k: v for k, v in ledger.items() if k[0].startswith("client:")
               and k[1].startswith("server:")}
    assert all(relayed[k] == v for k, v in clients.items())
    assert result.record["network_estimate_s"] == pytest.approx(
        result.record["compute_seconds"] + result.record["network_comm_estimate_s"])


def test_distaim_seeded_flows_unchanged_and_all_relayed() -> None:
    config = RunConfig(protocol="distaim", mpc="real", network=NET, **SMALL)
    data = prepare(config)
    fresh_relay(config)
    result = runner("distaim")(config, data=data)
    relayed = netem.emulator(config.network_spec).relayed()
    plain = runner("distaim")(config.replace(network=None), data=data)
    # Seeded flows: the set-up, every client upload, and round 0 (the one-way measurements).
    # Later rounds' sizes follow the selections, which use the servers' unseeded randomness.
    seeded = lambda r: r.round == 0 or r.phase in ("setup", "share-inputs")  # noqa: E731
    assert flows(result.ledger.rows, seeded) == flows(plain.ledger.rows, seeded)
    assert any(r.round == 0 and r.phase == "measure" for r in result.ledger.rows)
    ledger = per_link(result.ledger.rows)
    uploads = {k: v for k, v in ledger.items() if k[0].startswith("client:")}
    assert uploads and all(relayed[k] == v for k, v in uploads.items())
    peers = {k: v for k, v in ledger.items() if k[0].startswith("server:")}
    # The relay also carries the shutdown's barrier, which no phase is charged for.
    assert len(peers) == 6 and all(relayed[k] >= v for k, v in peers.items())


@pytest.mark.parametrize("changes,message", [
    (dict(protocol="distaim", mpc="model", network="wan"), "--mpc real"),
    (dict(protocol="naive-flaim", network="moon"), "--network"),
    (dict(protocol="distaim", mpc="real", network="lan", servers_at="h:1,h:2,h:3"),
     "--servers-at")])
def test_network_option_refuses_what_it_cannot_emulate(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig(**changes)


def test_run_with_network_records_wall_compute_and_estimate(tmp_path) -> None:
    import json

    from flaimsim.bench.runs import run_set

    config = RunConfig(protocol="naive-flaim", network=NET, **SMALL)
    run_set(config, ["naive-flaim"], tmp_path)
    rec = json.loads((tmp_path / "result.json").read_text())["results"][0]
    assert rec["network_spec"] == NET and rec["network"].startswith("0.2ms/2000Mbit")
    assert rec["compute_seconds"] > 0 and rec["wall_seconds"] > 0
    assert rec["network_estimate_s"] == pytest.approx(
        rec["compute_seconds"] + rec["network_comm_estimate_s"])
    assert rec["network_estimate_error"] == pytest.approx(
        rec["network_estimate_s"] / rec["wall_seconds"] - 1)
    assert rec["bytes_emulated"] == rec["bytes_unemulated"] > 0


def test_network_compute_none_runs_once_over_the_links(monkeypatch) -> None:
    """``--network-compute none``: one run, over the emulated links; no compute time and no
    estimate are claimed, the model's communication time is given."""
    from flaimsim.bench import emulated
    config = RunConfig(protocol="naive-flaim", network=NET, network_compute="none", **SMALL)
    data = prepare(config)
    fresh_relay(config)
    seen: list = []
    real_runner = emulated.runner

    def counting_runner(name):
        run = real_runner(name)
        return lambda cfg, **kw: seen.append(cfg.network) or run(cfg, **kw)

    monkeypatch.setattr(emulated, "runner", counting_runner)
    record = emulated.run_on_network(config, data).record
    assert seen == [NET]
    assert record["compute_seconds"] is None and "network_estimate_s" not in record
    assert record["network_comm_estimate_s"] > 0 and record["bytes_emulated"] > 0
    line, = emulated.format_network_lines([record])
    assert "compute not measured" in line
    with pytest.raises(ConfigError, match="network-compute"):
        RunConfig(protocol="naive-flaim", network=NET, network_compute="plain", **SMALL)
