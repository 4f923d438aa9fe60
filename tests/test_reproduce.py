"""``flaimsim reproduce``: our row beside the poster's, from a sweep directory's cells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flaimsim.bench.paper_table import POSTER, format_report, our_row
from flaimsim.bench.table import setting_header
from flaimsim.protocols.config import PRESETS, RunConfig


def _cell(out: Path, protocol: str, rounds: int, error: float, nll: float, sent: float,
          received: float, config: dict, seed: int = 0) -> None:
    key = f"{protocol}-T{rounds}-s{seed}"
    record = {"dataset": "adult", "epsilon": 1.0, "partition": "cluster",
              "protocol": protocol, "rounds": rounds, "clients": 100, "seed": seed,
              "l1_workload_error": error, "nll": nll, "client_bytes_sent_mean": sent,
              "client_bytes_received_mean": received,
              "client_bytes_sent_mean_participating": sent * 2,
              "server_bytes_sent_mean": 5e9, "server_bytes_received_mean": 5e9,
              "aggregator_bytes_sent": 1e6, "aggregator_bytes_received": 1e6,
              "contributing_clients": 50, "bytes_source": "modelled"}
    (out / "cells").mkdir(parents=True, exist_ok=True)
    (out / "cells" / f"{key}.json").write_text(json.dumps(
        {"key": key, "config": config, "record": record, "ledger": None}))


@pytest.fixture()
def sweep_dir(tmp_path: Path) -> Path:
    config = RunConfig(dataset="adult", **PRESETS["paper"]).to_dict()
    # DistAIM best at T = 8; FLAIM best at T = 4 -> T ratio (DistAIM / FLAIM) 2
    for t, err in ((4, 0.30), (8, 0.20)):
        _cell(tmp_path, "distaim", t, err, 10.0, 8e7, 1e3, config)
    for t, err in ((4, 0.32), (8, 0.40)):
        _cell(tmp_path, "aug-flaim-private", t, err, 11.0, 4e4, 6e4, config)
    return tmp_path


def test_our_row_ratios_and_differences(sweep_dir: Path) -> None:
    row = our_row(sweep_dir)
    assert (row["distaim_T"], row["flaim_T"], row["t_ratio"]) == (8, 4, 2.0)
    # one repeat: no standard error, so the range is the point
    assert (row["t_ratio_min"], row["t_ratio_max"]) == (2.0, 2.0)
    assert row["throughput_ratio"] == pytest.approx((8e7 + 1e3) / (4e4 + 6e4))
    assert row["sent_ratio"] == pytest.approx(8e7 / 4e4)
    assert row["received_ratio"] == pytest.approx(1e3 / 6e4)
    assert row["error_pct"] == pytest.approx(100 * (0.32 - 0.20) / 0.20)
    assert row["nll_pct"] == pytest.approx(10.0) and row["nll_nats"] == pytest.approx(1.0)
    assert row["server_ratio"] == pytest.approx(1e10 / 2e6)


def test_report_puts_the_poster_row_beside_ours(sweep_dir: Path) -> None:
    text = format_report({"adult": our_row(sweep_dir)},
                         {"adult": {"seconds": 60, "cells": 4, "load": "1.0/1.0/1.0",
                                    "formula_mb": 22.96}}, "Setting: test.")
    poster, ours = [line for line in text.splitlines() if line.startswith("| adult |")][:2]
    assert "| poster | 2x | 1300x (80 / 0.06)" in poster and "58%" in poster
    assert "| ours (T* 8 / 4) | 2x (2–2x) | 800x" in ours and "+60%" in ours
    assert "DistAIM T* / FLAIM T*" in text.splitlines()[4]
    assert "| credit | ours | data not available offline |" in text
    assert "22.96 MB" in text
    assert POSTER["magic"].throughput_ratio == 1643


@pytest.mark.parametrize("ratio, text", [(0.76, "0.76x"), (0.0123, "0.012x"), (3.44, "3.4x"),
                                         (9.6, "10x"), (38.4, "38x"), (1300.0, "1300x")])
def test_a_byte_ratio_keeps_two_figures_below_ten(ratio: float, text: str) -> None:
    from flaimsim.bench.paper_table import ratio_text

    assert ratio_text(ratio) + "x" == text and ratio_text(None) == "-"


def test_a_flaim_client_moving_more_than_distaims_reads_below_one(tmp_path: Path) -> None:
    # Covtype's case: the model download makes a FLAIM client's bytes exceed DistAIM's
    config = RunConfig(dataset="adult", **PRESETS["paper"]).to_dict()
    _cell(tmp_path, "distaim", 8, 0.2, 10.0, 3.0e5, 0.0, config)
    _cell(tmp_path, "aug-flaim-private", 4, 0.3, 11.0, 1.0e5, 3.0e5, config)
    row = our_row(tmp_path)
    assert row["throughput_ratio"] == pytest.approx(0.75)
    text = format_report({"adult": row}, {"adult": {"seconds": 60, "cells": 2, "load": "1",
                                                    "formula_mb": 1.0}}, "Setting: test.")
    ours = [line for line in text.splitlines() if line.startswith("| adult | ours")][0]
    assert "| 0.75x (0.3 / 0.4) | 3x (0.3 / 0.1) |" in ours
    gap = [line for line in text.splitlines() if line.startswith("| adult | 0.75x |")]
    assert gap, "the accounting table's 'ours' column keeps two figures"


def test_setting_header_names_the_paper_or_the_differences() -> None:
    paper = RunConfig(dataset="adult", **PRESETS["paper"]).to_dict()
    assert setting_header([paper]).startswith("Setting: the paper's (preset 'paper'")
    other = {**paper, "distaim_participation": "all", "cluster_embedding": "pca"}
    text = setting_header([paper, other])
    assert "except distaim_participation = all (paper: poisson)" in text
    assert "cluster_embedding = pca (paper: umap)" in text


# DistAIM's errors per T over three seeds: best mean at T = 16, T = 8 within one SE of it.
# FLAIM's: best mean at T = 4, T = 2 within one SE. So T* ratio 16 / 4 = 4, and the range
# over the near-best sets is 8 / 4 = 2 to 16 / 2 = 8.
REPEATED = {"distaim": {4: (0.29, 0.30, 0.31), 8: (0.195, 0.205, 0.215),
                        16: (0.18, 0.20, 0.22)},
            "aug-flaim-private": {2: (0.293, 0.303, 0.313), 4: (0.29, 0.30, 0.31),
                                  8: (0.39, 0.40, 0.41)}}


@pytest.fixture()
def repeated_dir(tmp_path: Path) -> Path:
    config = RunConfig(dataset="adult", **PRESETS["paper"]).to_dict()
    for proto, by_t in REPEATED.items():
        for t, errs in by_t.items():
            for seed, err in enumerate(errs):
                _cell(tmp_path, proto, t, err, 10.0, 8e7 if proto == "distaim" else 4e4,
                      1e3, config, seed)
    return tmp_path


def test_t_ratio_is_distaim_over_flaim_with_its_range_within_one_se(repeated_dir: Path
                                                                     ) -> None:
    row = our_row(repeated_dir)
    assert (row["distaim_T"], row["flaim_T"]) == (16, 4)
    assert row["t_ratio"] == pytest.approx(4.0)  # >= 1: DistAIM's best T is the larger
    assert (row["t_ratio_min"], row["t_ratio_max"]) == pytest.approx((2.0, 8.0))
    assert (row["distaim_T_within_se"], row["flaim_T_within_se"]) == ("8;16", "2;4")
    assert row["repeats"] == 3
    assert row["distaim_error_se"] == pytest.approx(0.02 / 3 ** 0.5)


def test_reproduce_writes_t_ratio_and_range_to_csv_and_json(
        repeated_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """reproduce() over a finished sweep folder (nothing left to run) writes the poster's
    T ratio direction and the near-best range into reproduce.csv and reproduce.json."""
    import csv
    import shutil

    from flaimsim.bench import reproduce as mod
    from flaimsim.bench.sweep import SweepReport

    out = tmp_path / "out"
    shutil.copytree(repeated_dir / "cells", out / "adult" / "cells")
    monkeypatch.setattr(mod, "warm_caches", lambda spec, sweep_dir=None: None)
    monkeypatch.setattr(mod, "formula_bytes", lambda config: 22_960_000)
    monkeypatch.setattr(mod, "plot_dataset", lambda sweep_dir, keys=None: [])
    seen = {}

    def no_cells(spec, sweep_dir, jobs, scheduler):
        seen["scheduler"] = scheduler
        return SweepReport(total=0)

    monkeypatch.setattr(mod, "run_sweep", no_cells)
    text = mod.reproduce(out, ["adult"], (2, 4), scheduler="local")
    assert seen["scheduler"] == "local"
    (row,) = list(csv.DictReader(open(out / "reproduce.csv")))
    assert float(row["t_ratio"]) == pytest.approx(4.0)
    assert (float(row["t_ratio_min"]), float(row["t_ratio_max"])) == pytest.approx((2.0, 8.0))
    assert row["where"] == "Dask local"
    doc = json.loads((out / "reproduce.json").read_text())
    assert doc["rows"]["adult"]["t_ratio"] == pytest.approx(4.0)
    assert "| ours (T* 16 / 4; PARTIAL: 0 of 40 cells, no whole repeat) | 4x (2–8x)" in text


def test_reproduce_runs_its_cells_on_a_local_dask_cluster(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``reproduce --scheduler local``: the cells run on Dask workers (sweep's Dask path) and
    the report is written as from the local pool."""
    import csv

    pytest.importorskip("distributed")
    from flaimsim.bench import reproduce as mod

    monkeypatch.setattr(mod, "formula_bytes", lambda config: 1_000)  # SynthFS has no file
    tiny = dict(synthfs_features=4, synthfs_bins=4, workload_marginals=2, clients=3,
                synthfs_records=40, iters_round=10, iters_final=10, partition="iid")
    mod.reproduce(tmp_path, ["synthfs"], (2, 3), ("distaim", "aug-flaim-private"),
                  repeats=1, jobs=1, overrides=tiny, scheduler="local")
    (row,) = list(csv.DictReader(open(tmp_path / "reproduce.csv")))
    assert row["where"] == "Dask local" and float(row["t_ratio"]) > 0
    assert len(list((tmp_path / "synthfs" / "cells").glob("*.json"))) == 4
    (sitting,) = json.loads((tmp_path / "synthfs" / "sittings.json").read_text())
    assert sitting["cells"] == 4 and sitting["where"] == "Dask local"
    # every output names the commit, the date and the machine
    from PIL import Image

    assert row["commit"] and row["date"].endswith("UTC") and "cores" in row["machine"]
    assert f"commit {row['commit']}" in (tmp_path / "reproduce.md").read_text()
    with Image.open(tmp_path / "synthfs" / "error-vs-T.png") as img:
        assert img.info["Comment"].startswith(f"flaimsim {row['commit']}, ")


def test_sittings_add_up_and_an_interrupted_one_counts_to_its_last_cell(
        repeated_dir: Path) -> None:
    import os

    from flaimsim.bench.reproduce import close_sitting, open_sitting

    prov = {"date": "d", "commit": "c"}
    first = open_sitting(repeated_dir, prov, "2 local jobs")   # killed: never closed
    doc = json.loads((repeated_dir / "sittings.json").read_text())
    start = doc[first]["started"]
    cells = sorted((repeated_dir / "cells").glob("*.json"))
    for k, p in enumerate(cells[:3]):      # finished 10, 20 and 30 s into the first sitting
        os.utime(p, (start + 10 * (k + 1), start + 10 * (k + 1)))
    for p in cells[3:]:                    # the rest long before it: not counted
        os.utime(p, (start - 1000, start - 1000))
    second = open_sitting(repeated_dir, prov, "2 local jobs")
    doc = json.loads((repeated_dir / "sittings.json").read_text())
    doc[second]["started"] = start + 60    # the resume, a minute later
    (repeated_dir / "sittings.json").write_text(json.dumps(doc))
    totals = close_sitting(repeated_dir, second, {"seconds": 100.0, "cells": 5, "failed": 0,
                                                  "load": "1/1/1"})
    assert totals == {"sittings": 2, "interrupted": 1, "seconds_total": pytest.approx(130.0),
                      "cells_total": 8}
    # two more that ran no cell: one stopped before its first, one over a finished sweep
    for late, closed in ((1000, False), (2000, True)):
        k = open_sitting(repeated_dir, prov, "2 local jobs")
        doc = json.loads((repeated_dir / "sittings.json").read_text())
        doc[k]["started"] = start + late
        (repeated_dir / "sittings.json").write_text(json.dumps(doc))
        if closed:
            totals = close_sitting(repeated_dir, k, {"seconds": 30.0, "cells": 0,
                                                     "failed": 0, "load": "1/1/1"})
    assert totals == {"sittings": 2, "interrupted": 1, "seconds_total": pytest.approx(130.0),
                      "cells_total": 8}


def test_report_only_runs_nothing(repeated_dir: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from flaimsim.bench import reproduce as mod

    out = tmp_path / "out"
    shutil.copytree(repeated_dir / "cells", out / "adult" / "cells")
    for name in ("run_sweep", "warm_caches"):
        monkeypatch.setattr(mod, name, lambda *a, **k: pytest.fail("ran something"))
    monkeypatch.setattr(mod, "formula_bytes", lambda config: 22_960_000)
    monkeypatch.setattr(mod, "plot_dataset", lambda sweep_dir, keys=None: [])
    text = mod.reproduce(out, ["adult", "magic"], (2, 4, 8, 16), repeats=3, report_only=True)
    assert "| ours (T* 16 / 4; PARTIAL: 0 of 48 cells, no whole repeat) | 4x (2–8x)" in text
    # planned: 4 protocols x 4 T x 3 seeds; finished counts real cell keys only, and the
    # hand-made cells are named otherwise
    assert "| 0 / 48 |" in text
    assert not (out / "adult" / "sittings.json").exists()


def test_throughput_gap_under_each_accounting(tmp_path: Path) -> None:
    """The poster's ratio against ours under each accounting: DistAIM by the authors'
    formula (x 1, x 6) and FLAIM without the model download, from the cells' own bytes."""
    from flaimsim.bench.paper_table import throughput_gap

    config = RunConfig(dataset="adult", **PRESETS["paper"]).to_dict()
    for t, err in ((4, 0.30), (8, 0.20)):
        _cell(tmp_path, "distaim", t, err, 10.0, 8e7, 0.0, config)
    for t, err in ((4, 0.32), (8, 0.40)):   # FLAIM's T* = 4: 4e4 sent + 6e4 received
        _cell(tmp_path, "aug-flaim-private", t, err, 11.0, 4e4, 6e4, config)
    cell = tmp_path / "cells" / "aug-flaim-private-T4-s0.json"
    doc = json.loads(cell.read_text())
    doc["record"]["bytes_phase_model-broadcast"] = 5e6   # 5e6 B to K = 100: 5e4 per client
    cell.write_text(json.dumps(doc))
    row = our_row(tmp_path)
    assert row["flaim_download_mb"] == pytest.approx(0.05)
    gap = throughput_gap(row, formula_mb=20.0)
    assert gap["ours"] == pytest.approx(80.0 / 0.1)
    assert gap["ours_no_download"] == pytest.approx(80.0 / 0.05)
    assert gap["formula"] == pytest.approx(20.0 / 0.1)
    assert gap["formula_x6_no_download"] == pytest.approx(120.0 / 0.05)
    text = format_report({"adult": row}, {"adult": {"seconds": 1, "cells": 4, "load": "-",
                                                    "formula_mb": 20.0}}, "Setting: test.")
    assert "| adult | 800x | 1600x | 200x | 400x | 1200x | 2400x | 1300x | 0.05 |" in text


def _grid_cells(out: Path, errors: dict[tuple[str, int, int], float]) -> list[str]:
    """Cells under their real keys (the reproduce grid's configs) with the given errors."""
    from flaimsim.bench.reproduce import base_config
    from flaimsim.bench.sweep import SweepSpec
    from flaimsim.bench.sweep_dir import cell_key

    spec = SweepSpec(base_config("adult"), ("distaim", "aug-flaim-private"), (4, 8),
                     (1.0,), ("cluster",), (0, 1, 2))
    written = []
    for c in spec.configs():
        err = errors.get((c.protocol, c.rounds, c.seed))
        if err is None:
            continue
        key = cell_key(c)
        _cell(out, c.protocol, c.rounds, err, 10.0, 8e7 if c.protocol == "distaim" else 4e4,
              1e3, c.to_dict(), c.seed)
        (out / "cells" / f"{c.protocol}-T{c.rounds}-s{c.seed}.json").rename(
            out / "cells" / f"{key}.json")
        written.append(key)
    return written


SEED0 = {("distaim", 4, 0): 0.30, ("distaim", 8, 0): 0.20,
         ("aug-flaim-private", 4, 0): 0.32, ("aug-flaim-private", 8, 0): 0.40}


def test_whole_repeats_are_the_seeds_with_every_cell(tmp_path: Path) -> None:
    from flaimsim.bench.reproduce import base_config, whole_repeats
    from flaimsim.bench.sweep import SweepSpec

    spec = SweepSpec(base_config("adult"), ("distaim", "aug-flaim-private"), (4, 8),
                     (1.0,), ("cluster",), (0, 1, 2))
    assert whole_repeats(tmp_path, spec) == (None, 0)            # nothing finished
    _grid_cells(tmp_path, {("distaim", 8, 1): 0.1})
    assert whole_repeats(tmp_path, spec) == (None, 0)            # no repeat whole yet
    seed0 = _grid_cells(tmp_path, SEED0)
    assert whole_repeats(tmp_path, spec) == (seed0, 1)           # seed 0 only
    _grid_cells(tmp_path, {(p, t, s): 0.3 for p, t, _ in SEED0 for s in (1, 2)})
    assert whole_repeats(tmp_path, spec) == (None, 3)            # all: every cell


def test_an_unfinished_sweep_reports_its_whole_repeats_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 0 is whole; seed 1 has one cell, DistAIM at T = 4 with a far lower error. Mixed
    in, it would move DistAIM's T* to 4; the row stands on seed 0 alone and says so."""
    from flaimsim.bench import reproduce as mod

    out = tmp_path / "out"
    _grid_cells(out / "adult", {**SEED0, ("distaim", 4, 1): 0.01})
    monkeypatch.setattr(mod, "formula_bytes", lambda config: 22_960_000)
    monkeypatch.setattr(mod, "plot_dataset", lambda sweep_dir, keys=None: [])
    text = mod.reproduce(out, ["adult"], (4, 8), protocols=("distaim", "aug-flaim-private"),
                         repeats=3, report_only=True)
    assert "| ours (T* 8 / 4) | 2x (2–2x)" in text
    assert "| 5 / 12 (the row: 1 whole repeat(s), 4 cells) |" in text
    # a data set asked for without a finished cell keeps its place beside the poster's row
    text = mod.reproduce(out, ["adult", "census"], (4, 8),
                         protocols=("distaim", "aug-flaim-private"), repeats=3,
                         report_only=True)
    assert "| census | poster | 1.5x" in text
    assert "| census | ours | not run yet: no finished cells" in text
    # no repeat whole: the row is from part of the grid, and its label says so
    for k in [p for p in (out / "adult" / "cells").glob("*-s0-*.json") if "-T8-" in p.name]:
        k.unlink()
    text = mod.reproduce(out, ["adult"], (4, 8), protocols=("distaim", "aug-flaim-private"),
                         repeats=3, report_only=True)
    assert "| adult | ours (T* 4 / 4; PARTIAL: 3 of 12 cells, no whole repeat) |" in text
    row = json.loads((out / "reproduce.json").read_text())
    row = row["rows"]["adult"] if "rows" in row else row["adult"]
    assert row["repeats"] == 1


def test_warm_caches_skips_the_seeds_already_finished(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from flaimsim.bench import reproduce as mod
    from flaimsim.protocols import prepare as prep

    out = tmp_path / "adult"
    _grid_cells(out, SEED0)   # seed 0 finished; seeds 1 and 2 not
    prepared: list[int] = []
    monkeypatch.setattr(prep, "prepare", lambda config: prepared.append(config.seed))
    spec = mod.SweepSpec(mod.base_config("adult"), ("distaim", "aug-flaim-private"), (4, 8),
                         (1.0,), ("cluster",), (0, 1, 2))
    mod.warm_caches(spec, out)
    assert prepared == [1, 2]
    prepared.clear()
    mod.warm_caches(spec)      # no folder given: every seed
    assert prepared == [0, 1, 2]
