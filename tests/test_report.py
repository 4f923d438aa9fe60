"""The terminal table within 120 columns (--wide and the files for the rest), report.html
for runs, sweeps and reproduce folders, and explain --html's sequence diagram."""

import contextlib
import io
import html
import json
import re
from pathlib import Path

import pytest

from flaimsim.bench import runs
from flaimsim.bench.cli import main
from flaimsim.bench.options import MAIN_JOB_PROTOCOLS
from flaimsim.bench.report import ReportError, build_report, folder_kind, write_report
from flaimsim.protocols.config import RunConfig

from test_bench import distaim_ledger, flaim_ledger, make_record, write_cell

TINY_RUN = ["--dataset", "synthfs", "--clients", "4", "--synthfs-features", "4",
            "--synthfs-records", "60", "--synthfs-bins", "4", "--workload-marginals", "4",
            "--rounds", "2", "--participation", "1.0", "--iters-round", "30",
            "--iters-final", "60"]


def widest_records() -> list[dict]:
    """The main job's five protocols with every figure at its widest printed form."""
    big = {"rounds": 32, "l1_workload_error": 1.23456, "l1_workload_error_3way": 1.9,
           "nll": 1234.5678, "auc": 0.987, "rho_spent": 0.0123456,
           "client_bytes_sent_mean": 999_994_000, "client_bytes_received_mean": 999_994_000,
           "client_bytes_sent_mean_participating": 999_994_000,
           "client_bytes_received_mean_participating": 999_994_000,
           "server_bytes_sent_mean": 999.99e9, "server_bytes_received_mean": 999.99e9,
           "bytes_source": "modelled", "wall_seconds": 99999.9, "evaluate_s": 9999.9}
    return [{"protocol": p, **big} for p in MAIN_JOB_PROTOCOLS]


REFERENCE = {"label": "income>50K", "label_in_workload": 0, "workload_marginals": 64,
             "auc_real_data": 0.9, "oneway_l1_workload_error": 0.5, "oneway_nll": 1234.5,
             "oneway_auc": 0.5, "oneway_rho_spent": 0.0123, "oneway_l1_workload_error_3way": 1}


def test_main_job_table_fits_120_columns_with_room_for_one_more(monkeypatch):
    text = runs.format_table(widest_records(), REFERENCE)
    longest = max(len(line) for line in text.splitlines())
    assert longest <= runs.TERMINAL_WIDTH == 120
    for head in ("L1 W+", "NLL", "AUC", "cl. sent", "srv recv", "source", "wall s"):
        assert head in text.splitlines()[0]
    # A communication-rounds column (another helper adds one) still fits.
    if "comm_rounds" not in {k for k, _, _ in runs.TABLE_COLUMNS}:
        monkeypatch.setattr(runs, "TABLE_COLUMNS", runs.TABLE_COLUMNS + (
            ("comm_rounds", "rounds", "{}"),))
    wider = runs.format_table([{**r, "comm_rounds": 123456} for r in widest_records()],
                              REFERENCE)
    assert "rounds" in wider.splitlines()[0]
    assert max(len(line) for line in wider.splitlines()) <= 120


def test_wide_table_has_every_column_and_header_wraps():
    wide = runs.format_table(widest_records(), REFERENCE, wide=True)
    assert all(h in wide.splitlines()[0] for _, h, _ in runs.TABLE_COLUMNS)
    assert max(len(line) for line in wide.splitlines()) > 120  # why the terminal drops some
    data = {"train_records": 43_957, "test_records": 4_885, "label": "income>50K",
            "clients": 100, "workload_marginals": 64, "candidates": 1_234,
            "cells": 12_345_678}
    header = runs.format_header(RunConfig(dataset="adult", partition="dirichlet"), "paper",
                                data)
    assert max(len(line) for line in header.splitlines()) <= 120
    assert "12,345,678 cells" in header and "mpc model, 3 servers" in header


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", "--protocol", "central", "--protocol", "aug-flaim-private",
                     *TINY_RUN, "--out", str(out)]) == 0
    (out / "printed.txt").write_text(printed.getvalue())
    return out


def test_run_prints_within_120_columns(run_dir: Path):
    printed = (run_dir / "printed.txt").read_text()
    assert "privacy (aug-flaim-private" in printed and "cl. sent" in printed
    assert max(len(line) for line in printed.splitlines()) <= 120


def test_run_writes_table_files_and_a_self_contained_report(run_dir: Path, capsys):
    result = json.loads((run_dir / "result.json").read_text())
    flaim = result["results"][1]
    csv_lines = (run_dir / "table.csv").read_text().splitlines()
    assert csv_lines[0].split(",") == [k for k, _, _ in runs.TABLE_COLUMNS]
    assert csv_lines[2].startswith("aug-flaim-private,2,")
    assert "| of it eval s |" in (run_dir / "table.md").read_text()
    page = (run_dir / "report.html").read_text()
    # One file: nothing to fetch (no external scripts, styles, images or fonts).
    assert not re.search(r"""(src|href)=["'](?!#)|<link|@import|url\((?!#)""", page)
    assert "<script" not in page
    # The table cells carry result.json's values; the FLAIM chart and privacy panel are there.
    cell = re.search(r'<tr data-protocol="aug-flaim-private">(.*?)</tr>', page).group(1)
    shown = dict(re.findall(r'data-key="([^"]+)" data-value="[^"]*">([^<]*)<', cell))
    assert shown["l1_workload_error"] == f"{flaim['l1_workload_error']:.4f}"
    assert shown["client_bytes_sent_mean"] == runs.human_bytes(flaim["client_bytes_sent_mean"])
    assert 'data-chart="aug-flaim-private"' in page and "<svg" in page
    assert "secagg-unmask" in page and "model-broadcast" in page  # the phases in the legend
    # What each party learns: every recorded line is on the page (escaped as HTML).
    knowledge = flaim["privacy"]["knowledge"]
    assert knowledge and all(html.escape(line) in page
                             for lines in knowledge.values() for line in lines)
    assert "network model, LAN" in page
    assert "No communication: one trusted curator" in page  # central


def test_report_shows_recorded_knowledge_and_rebuilds(run_dir: Path, tmp_path: Path, capsys):
    folder = tmp_path / "copy"
    folder.mkdir()
    for f in run_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    result = json.loads((folder / "result.json").read_text())
    result["results"][1]["privacy"]["knowledge"] = {
        "aggregator": ["the exact sum of the sampled clients' marginals"],
        "client": ["its neighbours' public keys"]}
    result["results"][1]["comm_rounds"] = 17
    result["results"][1]["comm_rounds_by_phase"] = {"secagg-keys": 8, "secagg-unmask": 9}
    result["results"][1].update(network="WAN: 50 ms, 100 Mbit/s per link", compute_seconds=0.5,
                                network_estimate_s=3.25, network_estimate_error=-0.05)
    (folder / "result.json").write_text(json.dumps(result))
    (folder / "report.html").unlink()
    assert main(["report", str(folder)]) == 0
    page = (folder / "report.html").read_text()
    assert "the exact sum of the sampled clients&#x27; marginals" in page
    assert page.index(">client<") < page.index(">aggregator<")  # roles in a fixed order
    assert "communication rounds (counted)</td><td>17" in page
    assert "secagg-keys 8, secagg-unmask 9" in page
    assert "measured wall time of the run on that network" in page
    assert "3.2 s (-5% against measured)" in page
    lacking = sum("knowledge" not in r["privacy"] for r in result["results"])
    assert page.count("not recorded in this result") == lacking


def test_report_of_a_sweep_and_a_reproduce_folder(tmp_path: Path):
    sweep_dir = tmp_path / "adult"
    (sweep_dir / "cells").mkdir(parents=True)
    for T in (2, 4):
        for proto, led in (("distaim", distaim_ledger(T)),
                           ("aug-flaim-private", flaim_ledger(T, "aug-flaim-private"))):
            record = make_record(proto, T, 0, 0.3 / T, led)
            write_cell(sweep_dir / "cells", f"{proto}-T{T}-s0", record, led)
    assert folder_kind(sweep_dir) == "sweep"
    page = build_report(sweep_dir)
    assert page.count('data-chart="error-vs-T-toy"') == 1
    assert page.count('data-chart="traffic-vs-T-toy"') == 1
    assert "best T (by mean L1 W+ error)" in page and "T ratio DistAIM/FLAIM 1.00x" in page
    # A reproduce folder: one sweep per data set, the poster's row beside ours.
    for cell in (sweep_dir / "cells").glob("*.json"):
        d = json.loads(cell.read_text())
        d["record"]["dataset"] = "adult"
        cell.write_text(json.dumps(d))
    (tmp_path / "reproduce.md").write_text("# reproduce\n")
    assert folder_kind(tmp_path) == "reproduce"
    write_report(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "The poster's table beside ours" in page
    assert "<td>poster</td><td>2x</td><td>1300x (80 / 0.06)</td>" in page
    assert page.count("<td>poster</td>") == 1  # once, not again per data set
    assert "Data set adult" in page and 'data-chart="error-vs-T-adult"' in page


def test_report_of_another_folder_is_a_clear_error(tmp_path: Path, capsys):
    with pytest.raises(ReportError, match="not a run, sweep or reproduce folder"):
        build_report(tmp_path)
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
