"""Presets per data set, grouped --help with its defaults, and the reference rows of a run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from flaimsim.bench.cli import build_parser, main
from flaimsim.bench.options import config_from_args, main_job_defaults, resolve_preset
from flaimsim.bench.runs import run_set
from flaimsim.mechanisms.accounting import cdp_rho
from flaimsim.mechanisms.evaluation import label_coverage
from flaimsim.mechanisms.workload import make_workload
from flaimsim.protocols.config import ConfigError, RunConfig, default_preset
from flaimsim.protocols.prepare import prepare
from flaimsim.protocols.central import reference_record

FEATURES, ROWS = 9, 1200
FAST = ["--protocol", "central", "--rounds", "2", "--iters-round", "20", "--iters-final", "50"]


@pytest.fixture
def custom_dir(tmp_path: Path) -> Path:
    """A user's data set D: 9 ternary features and a binary label y driven by two of them."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(ROWS, FEATURES))
    y = (x[:, 0] + x[:, 1] + rng.integers(0, 2, ROWS) >= 3).astype(int)
    cols = [f"a{i}" for i in range(FEATURES)] + ["y"]
    lines = [",".join(cols)] + [",".join(map(str, [*r, t])) for r, t in zip(x, y)]
    (tmp_path / "D.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "D-domain.json").write_text(json.dumps({**{c: 3 for c in cols[:-1]}, "y": 2}))
    return tmp_path


def parse(*argv: str):
    return build_parser().parse_args(["run", *argv])


@pytest.mark.parametrize("dataset, preset", [("synthfs", "synthfs-small"), ("adult", "paper"),
                                             ("my-data", "paper")])
def test_default_preset_by_data_set(dataset, preset):
    assert default_preset(dataset) == preset


def test_custom_data_set_gets_the_paper_configuration(custom_dir):
    args = parse("--dataset", "custom", "--data-name", "D", "--data-dir", str(custom_dir))
    assert resolve_preset(args) == "paper"
    c = config_from_args(args)
    assert (c.dataset, c.clients, c.workload_marginals, c.participation, c.delta) == (
        "D", 100, 64, 0.1, 1e-5)
    assert (c.partition, c.distaim_participation, c.workload_seed) == ("cluster", "poisson", 123)
    # Options given still win; SynthFS keeps its small preset.
    assert config_from_args(parse("--dataset", "custom", "--data-name", "D", "--data-dir",
                                  str(custom_dir), "--clients", "7")).clients == 7
    small = config_from_args(parse())
    assert (small.dataset, small.clients, small.workload_marginals) == ("synthfs", 20, 8)
    # The main job runs real MPC only where the preset is small enough for it.
    assert main_job_defaults("synthfs-small")["mpc"] == "real"
    assert main_job_defaults("paper")["mpc"] == "model"


@pytest.mark.parametrize("argv, match", [
    (["--preset", "synthfs-small", "--dataset", "custom", "--data-name", "D", "--data-dir",
      "DIR"], "'synthfs-small' is for the synthfs"),
    (["--preset", "adult-paper", "--dataset", "synthfs"], "'adult-paper' is for the adult"),
    (["--dataset", "custom", "--data-name", "adult", "--data-dir", "DIR"], "built-in"),
    (["--dataset", "custom", "--data-name", "D"], "--data-dir"),
])
def test_preset_or_name_for_another_data_set_is_an_error(argv, match, custom_dir, capsys):
    argv = [str(custom_dir) if a == "DIR" else a for a in argv]
    with pytest.raises(ConfigError, match=match):
        config_from_args(parse(*argv))
    assert main(["run", "--protocol", "central", *argv]) == 2
    assert "error" in capsys.readouterr().err


def _run_actions():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["run"]


def test_run_help_groups_options_and_states_defaults_that_the_code_uses(custom_dir):
    parser = _run_actions()
    titles = {g.title for g in parser._action_groups}
    assert {"data", "privacy", "federation", "MPC (DistAIM)", "FLAIM", "output"} <= titles
    fields = set(RunConfig.__dataclass_fields__)
    paper = config_from_args(parse("--dataset", "custom", "--data-name", "D", "--data-dir",
                                   str(custom_dir)))
    small = config_from_args(parse())
    checked = 0
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help and "default" in action.help, action.option_strings
        # These state their default as a rule in words (e.g. the documented size).
        if action.dest not in fields or action.dest in ("protocol", "dataset", "data_dir",
                                                        "label", "max_records"):
            continue
        m = re.search(r"default: ([^;)]+)(?:; synthfs: ([^;)]+))?", action.help)
        stated, stated_small = m.group(1), m.group(2) or m.group(1)
        shown = lambda v: "none" if v is None else str(v)  # noqa: E731
        if not action.dest.startswith("synthfs_"):
            assert stated == shown(getattr(paper, action.dest)), action.dest
        assert stated_small == shown(getattr(small, action.dest)), action.dest
        checked += 1
    assert checked >= 20


def test_custom_run_prints_its_preset_and_cost_settings(custom_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--dataset", "custom", "--data-name", "D", "--data-dir",
                 str(custom_dir), *FAST, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "preset paper: D" in printed
    assert "K = 100 clients (cluster), p = 0.1" in printed
    # W+ of 64 3-way marginals over 10 attributes: all 10 one-ways and 45 two-ways.
    assert "W = 64 marginals, W+ = 119 candidates" in printed
    assert "T = 2" in printed and "ε = 1, δ = 1e-05" in printed and "mpc model" in printed
    assert "ref: real train data" in printed and "ref: one-way only" in printed
    result = json.loads((out / "result.json").read_text())
    ref, rec = result["reference"], result["results"][0]
    assert {k: rec[k] for k in ref} == ref  # every record carries the same references
    for key in ("auc_real_data", "label_in_workload", "oneway_l1_workload_error",
                "oneway_l1_workload_error_3way", "oneway_nll", "oneway_auc"):
        assert ref[key] is not None, key
    config = json.loads((out / "config.json").read_text())
    assert (config["preset"], config["clients"], config["workload_marginals"]) == (
        "paper", 100, 64)
    assert config["data"]["clients"] == 100


def test_label_coverage_counts_marginals_with_the_label(custom_dir):
    # Every 3-way marginal of 10 attributes: C(10, 3) = 120, of which C(9, 2) = 36 hold y.
    config = RunConfig(dataset="D", data_dir=str(custom_dir), workload_marginals=1000,
                       clients=4, iters_final=30)
    data = prepare(config)
    assert len(data.workload.marginals) == 120
    ref = reference_record(config, data)
    assert (ref["label"], ref["label_in_workload"], ref["workload_marginals"]) == ("y", 36, 120)
    assert label_coverage([("a0", "a1"), ("a2", "a3")], "y") == 0
    # y depends on a0 + a1: the real-data classifier sees it; the one-way model cannot.
    assert ref["auc_real_data"] > 0.85
    assert abs(ref["oneway_auc"] - 0.5) < 0.15


def test_reference_rows_on_adult(adult_dir, tmp_path):
    # The references alone (no protocol run): what result.json's block holds on Adult.
    out = tmp_path / "adult"
    config = config_from_args(parse("--dataset", "adult", "--data-dir", str(adult_dir),
                                    "--partition", "iid", "--max-bins", "8", *FAST[2:]))
    assert run_set(config, [], out, preset="paper").results == []
    result = json.loads((out / "result.json").read_text())
    ref = result["reference"]
    assert result["config"]["preset"] == "paper" and result["results"] == []
    assert ref["label"] == "income>50K" and ref["workload_marginals"] == 64
    # The workload drawn afresh from the domain file (its marginals do not depend on bins).
    domain = json.loads((adult_dir / "adult-domain.json").read_text())
    workload = make_workload(domain, degree=3, num_marginals=64, seed=123)
    assert ref["label_in_workload"] == sum("income>50K" in m for m in workload.marginals) > 0
    # A GBT on real Adult separates income well; under the one-way model, attributes are
    # independent, so its synthetic label carries no signal.
    assert ref["auc_real_data"] > 0.85
    # (a tree fitted to such data still ranks by feature patterns, so its AUC may sit on
    # either side of 0.5; what it cannot do is approach the real-data classifier)
    assert ref["oneway_auc"] < ref["auc_real_data"] - 0.25
    # The same budget as the protocols: ρ of (ε, δ) = (1, 1e-5), all of it spent.
    assert ref["oneway_rho_spent"] == pytest.approx(cdp_rho(1.0, 1e-5))
    for key in ("oneway_l1_workload_error", "oneway_l1_workload_error_3way"):
        assert 0 < ref[key] <= 2
    assert math.isfinite(ref["oneway_nll"]) and ref["oneway_nll"] > 0


def test_run_set_prestarts_distaims_servers(tmp_path):
    # The main job's DistAIM under real MPC takes the servers started ahead of it.
    config = config_from_args(parse("--mpc", "real", "--rounds", "1", "--iters-round", "20",
                                    "--iters-final", "50"))
    runs = run_set(config, ["central", "distaim"], None, preset="synthfs-small")
    central, distaim = (r.record for r in runs.results)
    assert central.get("servers_prestarted_s") is None
    assert distaim["servers_prestarted_s"] > 0 and distaim["bytes_source"] == "wire"
