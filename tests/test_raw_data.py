"""Raw paper data sets -> private-pgm format: the coding rule, subsampling and refusals.

Real files are read by path (first N lines only, ``limit``); nothing is copied into the repo.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flaimsim.mechanisms.data import load_dataset
from flaimsim.mechanisms.raw_data import (
    CONTINUOUS_BINS, RAW_SPECS, RawDataError, prepare_raw, prepared_dir, raw_dir_for,
    subsample_rows, write_prepared)


def _raw_dir(name: str) -> Path:
    """Magic and Marketing ship with the package; Census and Covtype are large: fetched into
    the data cache, or found in $FLAIMSIM_RAW_DIR or the ../shared mirror, else skipped."""
    try:
        return raw_dir_for(name)
    except RawDataError as exc:
        pytest.skip(f"large set {name!r} is not here: {exc}")


def _paths(name: str) -> list[Path]:
    return [_raw_dir(name) / f for f in RAW_SPECS[name].files]


@pytest.mark.parametrize("name,n_columns", [("magic", 11), ("covtype", 55), ("census", 41),
                                            ("marketing", 17)])
def test_first_lines_code_into_the_domain(name: str, n_columns: int) -> None:
    p = prepare_raw(name, _paths(name), limit=300)
    assert p.codes.shape == (300 * len(RAW_SPECS[name].files), n_columns)
    assert np.all(p.codes >= 0) and np.all(p.codes < np.array(p.sizes))
    for column, size in zip(p.columns, p.sizes):
        kind = p.coding[column]["kind"]
        if kind == "continuous":
            assert size == CONTINUOUS_BINS
        elif kind == "categorical":
            assert size == len(p.coding[column]["values"])


def test_magic_continuous_bins_match_pandas_cut_and_label_sorted() -> None:
    p = prepare_raw("magic", _paths("magic"), limit=500)
    raw = pd.read_csv(_raw_dir("magic") / "magic04.data.gz", header=None, nrows=500)
    expected = pd.cut(raw[0], bins=32, labels=False).to_numpy()
    assert np.array_equal(p.codes[:, 0], expected)
    edges = np.asarray(p.coding["fLength"]["edges"])
    assert np.allclose(np.diff(edges)[1:], np.diff(edges)[1])  # equal width
    values = p.coding["class"]["values"]
    assert values == sorted(raw[10].unique())
    assert np.array_equal(np.array(values)[p.codes[:, -1]], raw[10].to_numpy())


def test_covtype_integer_and_numeric_categories() -> None:
    p = prepare_raw("covtype", _paths("covtype"), limit=400)
    raw = pd.read_csv(_raw_dir("covtype") / "covtype.csv.gz", nrows=400)
    j = p.columns.index("Hillshade_9am")
    assert p.sizes[j] == 256 and np.array_equal(p.codes[:, j], raw["Hillshade_9am"])
    label = p.coding["Cover_Type"]["values"]
    assert label == sorted(label, key=int)  # sorted as numbers, not text
    assert np.array_equal(np.array(label, dtype=int)[p.codes[:, -1]], raw["Cover_Type"])


def test_census_reads_train_then_test_and_codes_missing_as_category() -> None:
    p = prepare_raw("census", _paths("census"), limit=200)
    assert p.codes.shape[0] == 400 and "instance_weight" not in p.columns
    values = p.coding["migration_code_change_in_msa"]["values"]
    assert "?" in values  # the raw files' missing marker, kept as a category


def test_subsample_is_seeded_and_sized() -> None:
    a = prepare_raw("magic", _paths("magic"), 0.3, seed=5, limit=1000)
    b = prepare_raw("magic", _paths("magic"), 0.3, seed=5, limit=1000)
    c = prepare_raw("magic", _paths("magic"), 0.3, seed=6, limit=1000)
    assert a.codes.shape[0] == 300 and a.raw_records == 1000
    assert np.array_equal(a.codes, b.codes) and not np.array_equal(a.codes, c.codes)
    rows = subsample_rows(1000, 0.3, 5)
    assert len(np.unique(rows)) == 300


def test_written_files_load_as_private_pgm(tmp_path: Path) -> None:
    p = prepare_raw("marketing", _paths("marketing"), limit=250)
    write_prepared(p, tmp_path, _paths("marketing"))
    table = load_dataset("marketing", tmp_path)
    assert table.columns == p.columns and table.sizes == p.sizes
    assert np.array_equal(table.values, p.codes)
    coding = json.loads((tmp_path / "marketing-coding.json").read_text())
    assert coding["records"] == 250 and coding["columns"]["y"]["values"] == ["no", "yes"]


def _magic_line(values: list[str]) -> str:
    return ",".join(values) + "\n"


GOOD = ["1.5"] * 10 + ["g"]


@pytest.mark.parametrize("bad_line,message", [
    (_magic_line(["1.5"] * 9 + ["g"]), r"bad\.data: line 3 has 10 field\(s\), expected 11"),
    (_magic_line(["1.5"] * 4 + [""] + ["1.5"] * 5 + ["g"]),
     r"line 3, column 5 \('fConc1'\): missing value '' in a continuous column"),
    (_magic_line(["1.5"] * 3 + ["?"] + ["1.5"] * 6 + ["h"]),
     r"line 3, column 4 \('fConc'\): missing value '\?'"),
    (_magic_line(["1.5"] * 10 + ["?"]), r"line 3, column 11 \('class'\): missing value"),
    (_magic_line(["abc"] + ["1.5"] * 9 + ["g"]), r"column 1 \('fLength'\): non-numeric value"),
])
def test_bad_raw_lines_are_refused_with_line_and_column(tmp_path: Path, bad_line: str,
                                                        message: str) -> None:
    path = tmp_path / "bad.data"
    path.write_text(_magic_line(GOOD) * 2 + bad_line + _magic_line(GOOD))
    with pytest.raises(RawDataError, match=message):
        prepare_raw("magic", [path])


def test_bad_header_and_out_of_range_integer(tmp_path: Path) -> None:
    spec = RAW_SPECS["covtype"]
    header = ",".join(spec.columns)
    row = ["1"] * 6 + ["300"] + ["1"] * 48
    path = tmp_path / "cov.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(header + "\n" + ",".join(["1"] * 55) + "\n" + ",".join(row) + "\n")
    with pytest.raises(RawDataError, match=r"line 3, column 7 \('Hillshade_9am'\): value 300"):
        prepare_raw("covtype", [path])
    with gzip.open(path, "wt") as fh:
        fh.write(header + ",extra\n" + ",".join(["1"] * 55) + "\n")
    with pytest.raises(RawDataError, match=r"line 1 \(header\) has 56 field\(s\)"):
        prepare_raw("covtype", [path])


def test_dataset_name_prepares_into_the_cache(tmp_path: Path,
                                              monkeypatch) -> None:
    monkeypatch.setenv("FLAIMSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FLAIMSIM_DATA", raising=False)
    monkeypatch.setenv("FLAIMSIM_MAGIC_DIR", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    small = tmp_path / "raw"
    small.mkdir()
    with gzip.open(_raw_dir("magic") / "magic04.data.gz", "rt") as src, \
            gzip.open(small / "magic04.data.gz", "wt") as dst:  # a 200-line slice, in tmp
        for _, line in zip(range(200), src):
            dst.write(line)
    monkeypatch.setenv("FLAIMSIM_RAW_DIR", str(small))
    table = load_dataset("magic")
    assert table.n == 200 and table.sizes[:10] == (32,) * 10
    first = prepared_dir("magic")
    assert first.parent == tmp_path / "cache" / "data"
    stamp = os.stat(first / "magic.csv").st_mtime_ns
    assert prepared_dir("magic") == first and os.stat(first / "magic.csv").st_mtime_ns == stamp
