"""The Python API: flaimsim.run / flaimsim.sweep, options checked at one boundary, DataFrames,
the command line going through it, and docs/api.md's example run as written."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flaimsim
from flaimsim.bench import api
from flaimsim.bench.cli import main
from flaimsim.parties.ledger import LedgerRow
from flaimsim.protocols.config import ConfigError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"
FAST = dict(clients=8, iters_round=30, iters_final=60)


def test_acceptance_one_liner():
    r = flaimsim.run(dataset="synthfs", protocols=["central"], rounds=2)
    columns = list(LedgerRow.__dataclass_fields__)
    assert r.ledger.shape == (0, len(columns))  # central AIM sends nothing
    assert list(r.ledger.columns) == columns and columns[:9] == [
        "run", "protocol", "round", "phase", "sender", "receiver", "bytes", "messages", "source"]
    text = r.table()
    assert text.splitlines()[2].startswith("central") and "L1 W+" in text
    assert r.records.loc[0, "rounds"] == 2 and r.config.rounds == 2


def test_docs_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    scope: dict = {}
    exec(blocks[0], scope)  # the "Run" example, exactly as docs/api.md shows it
    r, traffic, spent = scope["r"], scope["traffic"], scope["spent"]
    assert list(r.records.protocol) == ["central", "aug-flaim-private"]
    flaim = r.results[1].record
    # The ledger frame is the protocol's ledger, and the privacy frame adds up to ρ spent.
    assert traffic["aug-flaim-private"].sum() == sum(x.bytes for x in r.results[1].ledger.rows)
    assert set(traffic["aug-flaim-private"].index) >= {"model-broadcast", "secagg-unmask"}
    assert spent["aug-flaim-private"] == pytest.approx(flaim["rho_spent"])
    assert spent["central"] == pytest.approx(r.results[0].record["rho_spent"])
    assert r.records.loc[1, "client_bytes_sent_mean"] == flaim["client_bytes_sent_mean"] > 0


@pytest.mark.parametrize("options, message", [
    ({"roundz": 2}, "unknown option 'roundz'; did you mean 'rounds'"),
    ({"rounds": "2"}, "option 'rounds' must be int, got '2'"),
    ({"rounds": True}, "option 'rounds' must be int"),
    ({"epsilon": "1"}, "option 'epsilon' must be float"),
    ({"check_model": 1}, "option 'check_model' must be bool"),
    ({"protocols": ["centrl"]}, "protocols must name one or more of"),
    ({"protocols": []}, "protocols must name one or more of"),
    ({"rounds": 0, "protocols": "central"}, "rounds must be >= 1"),
    ({"preset": "nope"}, "unknown preset 'nope'"),
    ({"dataset": "adlt"}, "unknown dataset 'adlt'"),
])
def test_bad_options_are_named_before_anything_runs(options, message, monkeypatch):
    monkeypatch.setattr("flaimsim.bench.runs.run_set", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(ConfigError, match=re.escape(message)):
        flaimsim.run(**options)


def test_sweep_axes_are_lists_and_not_options():
    with pytest.raises(ConfigError, match="'epsilon' is a sweep axis"):
        flaimsim.sweep("unused", epsilon=1.0)
    with pytest.raises(ConfigError, match="rounds must be a non-empty list, got 2"):
        flaimsim.sweep("unused", rounds=2)
    with pytest.raises(ConfigError, match="rounds must be a non-empty list"):
        flaimsim.sweep("unused", rounds=[])
    with pytest.raises(ConfigError, match="epsilons must be a non-empty list"):
        flaimsim.sweep("unused", epsilons="1")


def test_float_options_take_ints():
    assert api.check_options({"epsilon": 1, "fit_tol": None}) == {"epsilon": 1}


def test_import_flaimsim_is_light():
    code = ("import sys, flaimsim; heavy = [m for m in ('pandas', 'jax', 'mpyc', 'matplotlib', "
            "'flaimsim.bench.api') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    assert flaimsim.run is api.run and flaimsim.sweep is api.sweep


def test_cli_run_goes_through_the_api(monkeypatch, capsys):
    seen = {}

    def fake_run(protocols, dataset, **kw):
        seen.update(protocols=protocols, dataset=dataset, **kw)
        raise ConfigError("stopped here")

    monkeypatch.setattr(api, "run", fake_run)
    assert main(["run", "--protocol", "central", "--rounds", "3", "--iters-round", "7",
                 "--dataset", "synthfs"]) == 2
    assert "stopped here" in capsys.readouterr().err
    assert seen["protocols"] == ["central"] and seen["dataset"] == "synthfs"
    assert seen["rounds"] == 3 and seen["iters_round"] == 7 and seen["epsilon"] is None


def test_sweep_api_and_cli_share_the_path(tmp_path, monkeypatch, capsys):
    from flaimsim.bench import sweep

    calls = []
    real = sweep.spec_from_options
    monkeypatch.setattr(sweep, "spec_from_options",
                        lambda *a, **kw: calls.append((a, kw)) or real(*a, **kw))
    out = tmp_path / "s"
    s = flaimsim.sweep(out, protocols="central", rounds=[2], preset="synthfs-small", jobs=1,
                       **FAST)
    assert s.cells == 1 and len(s.report.done) == 1
    frame = s.records
    assert list(frame.protocol) == ["central"] and frame.loc[0, "rounds"] == 2
    assert frame.loc[0, "clients"] == 8
    # The command line resolves the cells by the same function, to the same cell (its key
    # hashes the whole configuration): nothing is left to run.
    assert main(["sweep", "--protocols", "central", "--rounds", "2", "--preset",
                 "synthfs-small", "--clients", "8", "--iters-round", "30", "--iters-final",
                 "60", "--jobs", "1", "--out", str(out)]) == 0
    assert "sweep: 0 run, 1 already done, 0 failed" in capsys.readouterr().out
    (_, api_kw), (_, cli_kw) = calls
    assert api_kw["rounds"] == [2] and tuple(cli_kw["rounds"]) == (2,)
    assert api_kw["clients"] == cli_kw["clients"] == 8
    assert json.loads((out / "sweep-config.json").read_text())["rounds"] == [2]
