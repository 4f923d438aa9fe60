"""Loader validation, default data lookup, train/test split and coarsening."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flaimsim.mechanisms.data import (
    DataError, Table, coarsen, default_data_dir, load_dataset, load_pgm, train_test_split)

ADULT_COLUMNS = ("age", "workclass", "fnlwgt", "education-num", "marital-status", "occupation",
                 "relationship", "race", "sex", "capital-gain", "capital-loss",
                 "hours-per-week", "native-country", "income>50K")


@pytest.fixture(scope="module")
def adult(adult_dir: Path) -> Table:
    return load_dataset("adult", adult_dir)


def test_adult_loads_in_domain_order(adult: Table) -> None:
    assert adult.n == 48_842
    assert adult.columns == ADULT_COLUMNS
    assert adult.sizes == (85, 9, 100, 16, 7, 15, 6, 5, 2, 100, 100, 99, 42, 2)
    assert adult.values.dtype == np.int64
    assert np.all(adult.values >= 0) and np.all(adult.values < np.array(adult.sizes))
    # first data row of the file: 23,5,4,12,2,8,3,0,1,2,0,39,0,0
    assert adult.values[0].tolist() == [23, 5, 4, 12, 2, 8, 3, 0, 1, 2, 0, 39, 0, 0]


def test_default_data_dir_uses_env_var_first(adult_dir: Path, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FLAIMSIM_ADULT_DIR", str(adult_dir))
    monkeypatch.chdir(tmp_path)
    assert default_data_dir("adult") == adult_dir.resolve()
    assert load_dataset("adult").n == 48_842


def test_without_env_the_shipped_copy_is_unpacked_and_checked(monkeypatch, tmp_path) -> None:
    from flaimsim.datasets import store

    monkeypatch.delenv("FLAIMSIM_ADULT_DIR", raising=False)
    monkeypatch.setenv("FLAIMSIM_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    found = default_data_dir("adult")
    assert found.parent == (tmp_path / "data").resolve()
    assert store.sha256_file(found / "adult.csv") == store.SHIPPED_PGM_SHA256["adult"]
    assert load_dataset("adult").n == 48_842
    # a damaged package is refused, not loaded (a fresh cache, a pin it cannot match)
    monkeypatch.setenv("FLAIMSIM_DATA", str(tmp_path / "other"))
    monkeypatch.setitem(store.SHIPPED_PGM_SHA256, "adult", "0" * 64)
    with pytest.raises(DataError, match=r"shipped .*adult\.csv\.gz is damaged"):
        load_dataset("adult")
    assert not any((tmp_path / "other").rglob("adult.csv"))


def test_shared_mirror_is_used_when_the_package_has_no_copy(monkeypatch, tmp_path) -> None:
    from flaimsim.datasets import store

    monkeypatch.delenv("FLAIMSIM_TOY_DIR", raising=False)
    monkeypatch.setitem(store.SHIPPED_PGM_SHA256, "toy", "0" * 64)  # no files/toy.csv.gz
    mirror = tmp_path / "shared" / "data" / "toy"
    mirror.mkdir(parents=True)
    (mirror / "toy.csv").write_text("a\n0\n1\n")
    (mirror / "toy-domain.json").write_text('{"a": 2}')
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")  # <cwd>/../shared/data/toy is the mirror
    assert default_data_dir("toy") == mirror.resolve()
    assert load_dataset("toy").n == 2


def test_unknown_data_set_lists_what_was_tried(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FLAIMSIM_NOSUCHSET_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError, match=r"nosuchset.*tried.*env.*FLAIMSIM_NOSUCHSET_DIR"):
        load_dataset("nosuchset")


def test_named_data_set_in_given_dir(tmp_path: Path) -> None:
    (tmp_path / "toy.csv").write_text("a,b\n0,1\n1,2\n")
    (tmp_path / "toy-domain.json").write_text('{"b": 3, "a": 2}')
    t = load_dataset("toy", tmp_path)
    assert t.columns == ("b", "a") and t.sizes == (3, 2)  # the domain's order, not the CSV's
    assert t.values.tolist() == [[1, 0], [2, 1]]
    (tmp_path / "toy-domain.json").unlink()
    with pytest.raises(DataError, match="toy-domain.json"):
        load_dataset("toy", tmp_path)


def _write(tmp_path: Path, csv_text: str, domain: object = None) -> tuple[Path, Path]:
    csv_path, dom_path = tmp_path / "d.csv", tmp_path / "d-domain.json"
    csv_path.write_text(csv_text)
    dom_path.write_text(json.dumps({"a": 3, "b": 2} if domain is None else domain))
    return csv_path, dom_path


@pytest.mark.parametrize("csv_text, pattern", [
    ("a\n0\n", r"missing column.*'b'"),
    ("a,b,c\n0,1,2\n", r"extra column.*'c'"),
    ("a,b\n0,1\n1,x\n", r"column 'b', row 2: non-integer value 'x'"),
    ("a,b\n0,1\n1.5,0\n", r"column 'a', row 2: non-integer value '1.5'"),
    ("a,b\n0,1\n2,0\n,1\n", r"column 'a', row 3: empty cell"),
    ("a,b\n0,NaN\n", r"column 'b', row 1: missing value 'NaN'"),
    ("a,b\n0,1\n3,0\n", r"column 'a', row 2: value 3 is outside 0\.\.2"),
    ("a,b\n0,1\n1,-1\n", r"column 'b', row 2: value -1 is outside 0\.\.1"),
    ("a,b\n0,99999999999999999999999\n", r"column 'b', row 1: value .* outside 0\.\.1"),
    ("a,b\n0,1\n1\n", r"column 'b', row 2: empty cell"),
    ("a,b\n0,1\n1,1,1\n", r"row 2 has 3 fields, the header has 2"),
    ("a,a\n0,1\n", r"duplicated column.*'a'"),
    ("", r"empty"),
    ("a,b\n", r"header but no data rows"),
])
def test_bad_csv_is_rejected_naming_column_and_row(tmp_path, csv_text, pattern) -> None:
    csv_path, dom_path = _write(tmp_path, csv_text)
    with pytest.raises(DataError, match=pattern):
        load_pgm(csv_path, dom_path)


@pytest.mark.parametrize("domain, pattern", [
    ([3, 2], r"JSON object"),
    ({}, r"non-empty"),
    ({"a": 3, "b": 0}, r"'b'.*cardinality 0"),
    ({"a": 3, "b": 2.5}, r"'b'.*cardinality 2\.5"),
    ({"a": "3", "b": 2}, r"'a'.*cardinality '3'"),
    ({"a": True, "b": 2}, r"'a'.*cardinality True"),
])
def test_bad_domain_is_rejected(tmp_path, domain, pattern) -> None:
    csv_path, dom_path = _write(tmp_path, "a,b\n0,1\n", domain)
    with pytest.raises(DataError, match=pattern):
        load_pgm(csv_path, dom_path)


def test_missing_files_and_invalid_json(tmp_path) -> None:
    csv_path, dom_path = _write(tmp_path, "a,b\n0,1\n")
    with pytest.raises(DataError, match="data file not found"):
        load_pgm(tmp_path / "nope.csv", dom_path)
    with pytest.raises(DataError, match="domain file not found"):
        load_pgm(csv_path, tmp_path / "nope.json")
    dom_path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_pgm(csv_path, dom_path)


def _toy(n: int = 50) -> Table:
    values = np.stack([np.arange(n) % 7, np.arange(n) % 3], axis=1).astype(np.int64)
    return Table(("x", "y"), (7, 3), values)


def test_split_sizes_partition_and_reproducibility(adult: Table) -> None:
    train, test = train_test_split(adult, 0.1, np.random.default_rng(7))
    assert (train.n, test.n) == (43_958, 4_884)
    again_train, again_test = train_test_split(adult, 0.1, np.random.default_rng(7))
    assert np.array_equal(train.values, again_train.values)
    assert np.array_equal(test.values, again_test.values)
    other_train, _ = train_test_split(adult, 0.1, np.random.default_rng(8))
    assert not np.array_equal(train.values, other_train.values)
    # together the two parts hold exactly the original records (as a multiset)
    both = np.concatenate([train.values, test.values])
    key = lambda v: np.sort(np.ravel_multi_index(v.T, adult.sizes))  # noqa: E731
    assert np.array_equal(key(both), key(adult.values))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 0.001])
def test_split_rejects_bad_fraction(fraction) -> None:
    with pytest.raises(ValueError):
        train_test_split(_toy(50), fraction, np.random.default_rng(0))


def test_split_needs_rng() -> None:
    with pytest.raises(ValueError, match="rng"):
        train_test_split(_toy(), 0.1)


def test_coarsen_rule_and_sizes(adult: Table) -> None:
    coarse, maps = coarsen(adult, 32)
    assert max(coarse.sizes) <= 32
    assert set(maps) == {c for c, s in adult.domain.items() if s > 32}
    for j, (c, s) in enumerate(zip(adult.columns, adult.sizes)):
        if c in maps:
            assert coarse.domain[c] == 32
            assert np.array_equal(maps[c], np.arange(s) * 32 // s)
            assert np.all(np.diff(maps[c]) >= 0)  # groups of consecutive codes
            assert np.array_equal(np.unique(maps[c]), np.arange(32))  # every new code used
            assert np.array_equal(coarse.values[:, j], maps[c][adult.values[:, j]])
        else:
            assert np.array_equal(coarse.values[:, j], adult.values[:, j])
    # age has 85 values -> group widths 2 or 3
    assert np.bincount(maps["age"]).min() >= 2 and np.bincount(maps["age"]).max() <= 3


def test_coarsen_small_example_and_errors() -> None:
    t = Table(("x",), (10,), np.arange(10, dtype=np.int64)[:, None])
    coarse, maps = coarsen(t, 4)
    assert maps["x"].tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert coarse.sizes == (4,)
    assert coarsen(t, 10)[1] == {}
    for bad in (1, 0, -3, 2.5):
        with pytest.raises(ValueError, match="max_bins"):
            coarsen(t, bad)
