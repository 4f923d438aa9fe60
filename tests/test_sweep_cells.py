"""Corrupt sweep cells (issue 25, item 4): named, reported by ``table`` which goes on, and set
aside and rerun by a resume."""

from __future__ import annotations

import json
from pathlib import Path

from test_bench import sweep_dir  # noqa: F401  (the fixture: a sweep folder of 18 cells)

from flaimsim.bench import sweep, table
from flaimsim.bench.sweep import CellOutcome, SweepSpec, cell_key, run_sweep
from flaimsim.protocols.config import RunConfig

CALLS: list[str] = []


def fake_cell(config: RunConfig, cells_dir: str) -> CellOutcome:
    """A finished cell without running a protocol."""
    key = cell_key(config)
    CALLS.append(key)
    (Path(cells_dir) / f"{key}.json").write_text(json.dumps(
        {"key": key, "config": config.to_dict(), "record": {"protocol": config.protocol,
                                                            "rounds": config.rounds}}))
    return CellOutcome(key, True, 0.0)


def test_table_names_corrupt_cells_and_goes_on(sweep_dir: Path, capsys):  # noqa: F811
    cells = sweep_dir / "cells"
    cut = cells / "distaim-T2-s0.json"
    cut.write_text(cut.read_text()[:40])  # a cut file
    (cells / "naive-flaim-T2-s0.json").write_text(json.dumps({"unexpected": 1}))
    (cells / "naive-flaim-T4-s0.json").write_text("")  # emptied
    text = table.write_table(sweep_dir)
    assert "DistAIM/FLAIM" in text  # the rest still makes the table
    err = capsys.readouterr().err
    for name in ("distaim-T2-s0.json", "naive-flaim-T2-s0.json", "naive-flaim-T4-s0.json"):
        assert name in err
    assert len(sweep.load_cells(sweep_dir, on_corrupt=lambda e: None)) == 18 - 3


def test_resume_sets_a_corrupt_cell_aside_and_reruns_it(tmp_path: Path, capsys):
    spec = SweepSpec(RunConfig(dataset="synthfs"), protocols=("central",), rounds=(2, 3))
    out = tmp_path / "sweep"
    CALLS.clear()
    assert len(run_sweep(spec, out, jobs=1, execute=fake_cell).done) == 2
    key = cell_key(spec.configs()[0])
    bad = out / "cells" / f"{key}.json"
    bad.write_text(bad.read_text()[:25])
    capsys.readouterr()
    CALLS.clear()
    report = run_sweep(spec, out, jobs=1, execute=fake_cell)
    assert CALLS == [key] and len(report.skipped) == 1  # only the corrupt cell ran again
    err = capsys.readouterr().err
    assert f"{key}.json" in err and "moved to cells/corrupt/" in err
    assert (out / "cells" / "corrupt" / f"{key}.json").read_text().startswith("{")
    assert json.loads(bad.read_text())["key"] == key
    rows = (out / "sweep.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + 2 cells, none doubled


def test_a_new_option_with_its_default_keeps_every_cell_key(monkeypatch):
    """A sweep survives the code growing an option: keys hash the non-default options only,
    so a field added with a default (old behaviour) changes no key; any set option does."""
    import dataclasses

    from flaimsim.bench import sweep_dir
    config = RunConfig(protocol="distaim", rounds=4, epsilon=2.0)
    before = cell_key(config)
    assert cell_key(config.replace(iters_final=10)) != before
    grown = dataclasses.make_dataclass("GrownConfig", [("brand_new_option", int, 7)],
                                       bases=(RunConfig,), frozen=True)
    monkeypatch.setattr(sweep_dir, "RunConfig", grown)
    assert cell_key(grown(protocol="distaim", rounds=4, epsilon=2.0)) == before
    assert cell_key(grown(protocol="distaim", rounds=4, epsilon=2.0, brand_new_option=8)) \
        != before


def test_resume_reruns_a_cell_whose_option_default_changed(tmp_path: Path, capsys):
    spec = SweepSpec(RunConfig(dataset="synthfs"), protocols=("central",), rounds=(2, 3))
    out = tmp_path / "sweep"
    CALLS.clear()
    run_sweep(spec, out, jobs=1, execute=fake_cell)
    key = cell_key(spec.configs()[0])
    path = out / "cells" / f"{key}.json"
    doc = json.loads(path.read_text())
    doc["config"]["iters_final"] = 123     # as if run when the default was 123
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    CALLS.clear()
    report = run_sweep(spec, out, jobs=1, execute=fake_cell)
    assert CALLS == [key] and len(report.skipped) == 1
    err = capsys.readouterr().err
    assert "iters_final" in err and "moved to cells/stale/" in err
    assert (out / "cells" / "stale" / f"{key}.json").is_file()


def test_a_cell_listed_under_an_old_key_is_counted_once(tmp_path: Path):
    """A folder's list keeps earlier sweeps' keys. When the key scheme changed, the same
    protocol, T and seed under the same options sat in the list under its old key and its
    new one, and the table averaged both (Adult's T = 192: n = 10 of 5 repeats)."""
    spec = SweepSpec(RunConfig(dataset="synthfs"), protocols=("central",), rounds=(2, 3),
                     seeds=(0,))
    out = tmp_path / "sweep"
    run_sweep(spec, out, jobs=1, execute=fake_cell)
    new = cell_key(spec.configs()[0])
    doc = json.loads((out / "cells" / f"{new}.json").read_text())
    old = new.rsplit("-", 1)[0] + "-0ldkey00"
    del doc["config"]["iters_final"]  # run before the option existed: its default then
    (out / "cells" / f"{old}.json").write_text(json.dumps({**doc, "key": old}))
    other = new.rsplit("-", 1)[0] + "-0ther000"  # a different option: another computation
    (out / "cells" / f"{other}.json").write_text(json.dumps(
        {**doc, "key": other, "config": {**doc["config"], "epsilon": 7.0}}))
    config = json.loads((out / "sweep-config.json").read_text())
    config["cells"] = [old, other, *config["cells"]]
    (out / "sweep-config.json").write_text(json.dumps(config))
    keys = [c.key for c in sweep.load_cells(out)]
    assert sorted(keys) == sorted([other, *(cell_key(c) for c in spec.configs())])
    assert old not in keys


def test_table_files_name_the_commit_date_and_machine(sweep_dir: Path):  # noqa: F811
    import csv

    from flaimsim.bench.provenance import provenance

    table.write_table(sweep_dir)
    prov = provenance()
    assert f"Made by flaimsim commit {prov['commit']}" in (sweep_dir / "table.md").read_text()
    for name in ("table.csv", "summary.csv"):
        rows = list(csv.DictReader(open(sweep_dir / name)))
        assert rows and all(r["commit"] == prov["commit"] and r["machine"] == prov["machine"]
                            and r["date"] for r in rows)


def test_cells_run_repeat_by_repeat_largest_t_first(tmp_path: Path):
    """A sitting cut short leaves whole repeats of the grid: every cell of seed 0 (largest T
    first) runs before any of seed 1, and so on in the order the seeds are given."""
    spec = SweepSpec(RunConfig(dataset="synthfs"), protocols=("central", "distaim"),
                     rounds=(2, 8, 4), seeds=(3, 1, 2))
    order = [(c.seed, c.rounds) for c in spec.configs()]
    assert [s for s, _ in order] == [3] * 6 + [1] * 6 + [2] * 6
    for seed in (3, 1, 2):
        assert [t for s, t in order if s == seed] == [8, 8, 4, 4, 2, 2]
    CALLS.clear()
    run_sweep(spec, tmp_path / "sweep", jobs=1, execute=fake_cell, show_progress=False)
    assert CALLS == [cell_key(c) for c in spec.configs()]


def test_a_cells_ledger_is_parsed_once_per_file_version(tmp_path, monkeypatch):
    """A report asks for each cell's ledger several times: it is parsed once, and again
    when the file changes."""
    from flaimsim.bench import sweep_dir
    from flaimsim.bench.sweep_dir import Cell
    from flaimsim.parties.ledger import Ledger, LedgerRow

    def ledger(nbytes):
        return Ledger("r", "central", [LedgerRow("r", "central", 1, "measure", "client:0",
                                                 "aggregator:0", nbytes, 1, "wire", 1)])

    from collections import OrderedDict

    monkeypatch.setattr(sweep_dir, "_LEDGERS", OrderedDict())
    path = tmp_path / "c.ledger.csv"
    ledger(5).write_csv(path)
    reads = []
    real = Ledger.read_csv
    monkeypatch.setattr(Ledger, "read_csv", staticmethod(lambda p: reads.append(p) or real(p)))
    cell = Cell("c", {}, path)
    assert [cell.ledger().rows[0].bytes for _ in range(3)] == [5, 5, 5] and len(reads) == 1
    ledger(12345).write_csv(path)          # another size: read again
    assert cell.ledger().rows[0].bytes == 12345 and len(reads) == 2
    monkeypatch.setattr(sweep_dir, "_LEDGER_ROWS", 1)   # over budget: the oldest goes
    other = tmp_path / "d.ledger.csv"
    ledger(7).write_csv(other)
    assert Cell("d", {}, other).ledger().rows[0].bytes == 7
    assert [k[0] for k in sweep_dir._LEDGERS] == [str(other.resolve())]
