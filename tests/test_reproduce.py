"""``flaimsim reproduce``: our row beside the poster's, from a sweep directory's cells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flaimsim.bench.reproduce import POSTER, format_report, our_row
from flaimsim.bench.table import setting_header
from flaimsim.protocols.config import PRESETS, RunConfig


def _cell(out: Path, protocol: str, rounds: int, error: float, nll: float, sent: float,
          received: float, config: dict) -> None:
    key = f"{protocol}-T{rounds}"
    record = {"dataset": "adult", "epsilon": 1.0, "partition": "cluster",
              "protocol": protocol, "rounds": rounds, "clients": 100,
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
    # DistAIM best at T = 8; FLAIM best at T = 4 -> T ratio 0.5
    for t, err in ((4, 0.30), (8, 0.20)):
        _cell(tmp_path, "distaim", t, err, 10.0, 8e7, 1e3, config)
    for t, err in ((4, 0.32), (8, 0.40)):
        _cell(tmp_path, "aug-flaim-private", t, err, 11.0, 4e4, 6e4, config)
    return tmp_path


def test_our_row_ratios_and_differences(sweep_dir: Path) -> None:
    row = our_row(sweep_dir)
    assert (row["distaim_T"], row["flaim_T"], row["t_ratio"]) == (8, 4, 0.5)
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
    assert "| ours (T* 8 / 4) | 0.5x | 800x" in ours and "+60%" in ours
    assert "22.96 MB" in text
    assert POSTER["magic"].throughput_ratio == 1643


def test_setting_header_names_the_paper_or_the_differences() -> None:
    paper = RunConfig(dataset="adult", **PRESETS["paper"]).to_dict()
    assert setting_header([paper]).startswith("Setting: the paper's (preset 'paper'")
    other = {**paper, "distaim_participation": "all", "cluster_embedding": "pca"}
    text = setting_header([paper, other])
    assert "except distaim_participation = all (paper: poisson)" in text
    assert "cluster_embedding = pca (paper: umap)" in text
