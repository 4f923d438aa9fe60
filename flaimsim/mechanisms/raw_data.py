"""Raw copies of the FLAIM paper's other data sets -> the private-pgm format.

Owns the per-data-set column specifications (:data:`RAW_SPECS`), the coding rule, the
validation of raw files, the optional subsampling, and the on-the-fly cache that
``--dataset magic|covtype|census|marketing`` reads from.

The rule (as the authors' data loader, ``synth_fl/utils/dataloaders/core.py``):

* continuous attribute: 32 equal-width bins over [min, max] of the full raw column
  (``pandas.cut(x, 32, labels=False)``: right-closed bins, the lowest edge moved down by
  0.1 % of the range); its domain is 32 whether or not every bin is used;
* integer attribute with a declared domain (Covtype's hill-shade indices 0..255, as the
  authors' ``covtype-domain.json``): the value itself, checked to lie in 0..size-1;
* categorical attribute: the distinct values (whitespace stripped), sorted (numerically
  when every value is a number, else as text), coded 0..n_values-1.

The bin edges and category lists are a function of the full raw data (min/max and the set
of values seen), as in the authors' code; they are treated as public. Subsampling (the
paper's Covtype 20 %, Census 30 %) happens after coding, so the domain does not depend on
the sample.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Sequence

import numpy as np

CONTINUOUS_BINS = 32
_MISSING = {"", "?", "na", "nan", "n/a", "null", "none"}
RULE_VERSION = 1  # bump when the coding rule changes: the cache key includes it


@dataclass(frozen=True)
class RawSpec:
    """How one raw data set is laid out and coded.

    ``kinds[j]`` is "continuous", "categorical", "integer:<size>" or "drop" for raw column j.
    ``files`` are the default raw file names (concatenated in order).
    ``missing_as_category``: a missing categorical cell ("?" or empty) becomes the value "?".
    """

    name: str
    files: tuple[str, ...]
    columns: tuple[str, ...]
    kinds: tuple[str, ...]
    header: bool
    documented_records: int
    paper_subsample: float | None = None
    missing_as_category: bool = False
    notes: str = ""

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.kinds):
            raise ValueError(f"{self.name}: one kind per column is required")


def _spec(name: str, files: Sequence[str], layout: Sequence[tuple[str, str]], header: bool,
          documented: int, **kw) -> RawSpec:
    return RawSpec(name, tuple(files), tuple(c for c, _ in layout), tuple(k for _, k in layout),
                   header, documented, **kw)


C, K = "continuous", "categorical"
_MAGIC = [(c, C) for c in ("fLength", "fWidth", "fSize", "fConc", "fConc1", "fAsym",
                           "fM3Long", "fM3Trans", "fAlpha", "fDist")] + [("class", K)]
_COVTYPE = ([(c, C) for c in ("Elevation", "Aspect", "Slope",
                              "Horizontal_Distance_To_Hydrology",
                              "Vertical_Distance_To_Hydrology",
                              "Horizontal_Distance_To_Roadways")]
            + [(c, "integer:256") for c in ("Hillshade_9am", "Hillshade_Noon", "Hillshade_3pm")]
            + [("Horizontal_Distance_To_Fire_Points", C)]
            + [(f"Wilderness_Area{i}", K) for i in range(1, 5)]
            + [(f"Soil_Type{i}", K) for i in range(1, 41)] + [("Cover_Type", K)])
# UCI census-income.names: 7 continuous attributes; the instance weight (column 25) is a
# sampling weight that UCI says not to use as an attribute, so it is dropped.
_CENSUS = [("age", C), ("class_of_worker", K), ("detailed_industry_recode", K),
           ("detailed_occupation_recode", K), ("education", K), ("wage_per_hour", C),
           ("enroll_in_edu_inst_last_wk", K), ("marital_stat", K), ("major_industry_code", K),
           ("major_occupation_code", K), ("race", K), ("hispanic_origin", K), ("sex", K),
           ("member_of_a_labor_union", K), ("reason_for_unemployment", K),
           ("full_or_part_time_employment_stat", K), ("capital_gains", C),
           ("capital_losses", C), ("dividends_from_stocks", C), ("tax_filer_stat", K),
           ("region_of_previous_residence", K), ("state_of_previous_residence", K),
           ("detailed_household_and_family_stat", K),
           ("detailed_household_summary_in_household", K), ("instance_weight", "drop"),
           ("migration_code_change_in_msa", K), ("migration_code_change_in_reg", K),
           ("migration_code_move_within_reg", K), ("live_in_this_house_1_year_ago", K),
           ("migration_prev_res_in_sunbelt", K), ("num_persons_worked_for_employer", C),
           ("family_members_under_18", K), ("country_of_birth_father", K),
           ("country_of_birth_mother", K), ("country_of_birth_self", K), ("citizenship", K),
           ("own_business_or_self_employed", K),
           ("fill_inc_questionnaire_for_veterans_admin", K), ("veterans_benefits", K),
           ("weeks_worked_in_year", C), ("year", K), ("income", K)]
_MARKETING = [("age", C), ("job", K), ("marital", K), ("education", K), ("default", K),
              ("balance", C), ("housing", K), ("loan", K), ("contact", K), ("day", C),
              ("month", K), ("duration", C), ("campaign", C), ("pdays", C), ("previous", C),
              ("poutcome", K), ("y", K)]

RAW_SPECS: dict[str, RawSpec] = {
    "magic": _spec("magic", ["magic04.data.gz"], _MAGIC, False, 19_020),
    "covtype": _spec("covtype", ["covtype.csv.gz"], _COVTYPE, True, 581_012,
                     paper_subsample=0.2),
    "census": _spec("census", ["census-income-train.csv.gz", "census-income-test.csv.gz"],
                    _CENSUS, False, 299_285, paper_subsample=0.3, missing_as_category=True,
                    notes="train then test; '?' coded as its own category; instance weight "
                          "dropped"),
    # UCI bank-full has 45,211 records (the public bound); the bundled copy is partial.
    "marketing": _spec("marketing", ["bank-full-partial.csv.gz"], _MARKETING, True, 45_211,
                       notes="UCI bank-full (17 columns), partial copy; the paper used "
                             "bank-additional (21 columns)"),
}


class RawDataError(ValueError):
    """A raw file that does not match its data set's layout, naming file, line and column."""


@dataclass(frozen=True)
class Prepared:
    """A coded data set: integer codes (N, d), the domain, and how each column was coded."""

    name: str
    columns: tuple[str, ...]
    sizes: tuple[int, ...]
    codes: np.ndarray
    coding: dict[str, dict] = field(default_factory=dict)
    raw_records: int = 0
    subsample: float | None = None
    seed: int | None = None


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def _check_lines(path: Path, n_fields: int, header: bool, limit: int | None) -> int:
    """Check every line's field count; return the number of data lines read.

    The raw files have no quoted fields; a line with a quote is parsed with ``csv``."""
    import csv

    n = 0
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            is_header = header and line_no == 1
            if limit is not None and n >= limit:
                break
            text = line.rstrip("\r\n")
            count = len(next(csv.reader([text]))) if '"' in text else text.count(",") + 1
            if count != n_fields:
                raise RawDataError(f"{path.name}: line {line_no}{' (header)' * is_header} has "
                                   f"{count} field(s), expected {n_fields}")
            n += not is_header
    if n == 0:
        raise RawDataError(f"{path.name}: no data lines")
    return n


def _parse_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _sort_values(values: Sequence[str]) -> list[str]:
    numbers = {v: _parse_float(v) for v in values}
    if all(x is not None for x in numbers.values()):
        return sorted(values, key=lambda v: (numbers[v], v))
    return sorted(values)


Chunk = tuple[int, Path, int, object]  # (first file line, path, rows, parsed column)
CHUNK_ROWS = 50_000


def read_raw(spec: RawSpec, paths: Sequence[Path], limit: int | None = None
             ) -> list[list[Chunk]]:
    """Per kept column, its parsed chunks: floats for continuous/integer columns, (sorted
    distinct values, inverse codes) for categorical ones. ``limit``: data lines per file."""
    import pandas as pd

    kept = [j for j, k in enumerate(spec.kinds) if k != "drop"]
    out: list[list[Chunk]] = [[] for _ in kept]
    for path in paths:
        if not path.is_file():
            raise RawDataError(f"{spec.name}: raw file not found: {path}")
        n_lines = _check_lines(path, len(spec.columns), spec.header, limit)
        reader = pd.read_csv(path, header=None, skiprows=int(spec.header), dtype=str,
                             keep_default_na=False, na_filter=False, skip_blank_lines=False,
                             chunksize=CHUNK_ROWS, nrows=n_lines, quotechar='"',
                             usecols=kept, engine="c")
        first_line = 1 + int(spec.header)
        for frame in reader:
            for out_j, j in enumerate(kept):
                text = frame[j].str.strip()
                kind = spec.kinds[j]
                if kind == K:
                    missing = text.str.lower().isin(_MISSING).to_numpy()
                    if missing.any():
                        if not spec.missing_as_category:
                            i = int(np.flatnonzero(missing)[0])
                            raise RawDataError(
                                f"{path.name}: line {first_line + i}, column {j + 1} "
                                f"({spec.columns[j]!r}): missing value {text.iloc[i]!r} in a "
                                "categorical column that has no missing category")
                        text = text.where(~missing, "?")
                    values, inverse = np.unique(text.to_numpy(dtype=str), return_inverse=True)
                    out[out_j].append((first_line, path, len(frame), (values, inverse)))
                else:
                    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
                    bad = ~np.isfinite(numbers)
                    if bad.any():
                        i = int(np.flatnonzero(bad)[0])
                        cell = text.iloc[i]
                        what = ("missing value" if cell.lower() in _MISSING
                                else "non-numeric value")
                        raise RawDataError(
                            f"{path.name}: line {first_line + i}, column {j + 1} "
                            f"({spec.columns[j]!r}): {what} {cell!r} in a {kind} column "
                            "(cannot be coded)")
                    out[out_j].append((first_line, path, len(frame), numbers))
            first_line += len(frame)
    return out


def equal_width_codes(x: np.ndarray, bins: int = CONTINUOUS_BINS) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """``pandas.cut(x, bins, labels=False)`` codes and its edges (equal width over the range)."""
    import pandas as pd

    codes, edges = pd.cut(pd.Series(x), bins=bins, labels=False, retbins=True)
    return codes.to_numpy(dtype=np.int64), np.asarray(edges, dtype=float)


def code_columns(spec: RawSpec, chunks: list[list[Chunk]]
                 ) -> tuple[tuple[int, ...], np.ndarray, dict[str, dict]]:
    """Apply the coding rule to every kept column: sizes, codes (N, d) and the coding."""
    kept = [j for j, k in enumerate(spec.kinds) if k != "drop"]
    n = sum(c[2] for c in chunks[0])
    codes = np.empty((n, len(kept)), dtype=np.int64)
    sizes: list[int] = []
    coding: dict[str, dict] = {}
    for out, j in enumerate(kept):
        name, kind = spec.columns[j], spec.kinds[j]
        if kind == K:
            values = _sort_values(sorted({str(v) for c in chunks[out] for v in c[3][0]}))
            index = {v: i for i, v in enumerate(values)}
            pieces = [np.array([index[v] for v in c[3][0]], dtype=np.int64)[c[3][1]]
                      for c in chunks[out]]
            codes[:, out] = np.concatenate(pieces)
            sizes.append(len(values))
            coding[name] = {"kind": kind, "values": values}
            continue
        column = np.concatenate([c[3] for c in chunks[out]])
        if kind == C:
            codes[:, out], edges = equal_width_codes(column)
            sizes.append(CONTINUOUS_BINS)
            coding[name] = {"kind": kind, "bins": CONTINUOUS_BINS, "edges": edges.tolist()}
            continue
        size = int(kind.split(":")[1])
        bad = (column != np.round(column)) | (column < 0) | (column >= size)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            for first_line, path, rows, _ in chunks[out]:
                if i < rows:
                    break
                i -= rows
            raise RawDataError(f"{path.name}: line {first_line + i}, column {j + 1} "
                               f"({name!r}): value {column[i]:g} is not an integer in "
                               f"0..{size - 1}")
        codes[:, out] = column.astype(np.int64)
        sizes.append(size)
        coding[name] = {"kind": "integer", "size": size}
    return tuple(sizes), codes, coding


def subsample_rows(n: int, fraction: float, seed: int) -> np.ndarray:
    """round(fraction · n) distinct rows, sorted, drawn uniformly without replacement."""
    if not 0 < fraction <= 1:
        raise ValueError(f"subsample fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max(1, int(round(fraction * n))), replace=False))


def prepare_raw(name: str, paths: Sequence[str | Path], subsample: float | None = None,
                seed: int = 0, limit: int | None = None) -> Prepared:
    """Read and code ``name``'s raw files (in order); optionally subsample (seeded)."""
    if name not in RAW_SPECS:
        raise RawDataError(f"unknown raw data set {name!r}; choose one of {sorted(RAW_SPECS)}")
    spec = RAW_SPECS[name]
    paths = [Path(p) for p in paths]
    if not paths:
        raise RawDataError(f"{name}: no raw files given (expected {', '.join(spec.files)})")
    sizes, codes, coding = code_columns(spec, read_raw(spec, paths, limit))
    raw_records = codes.shape[0]
    if subsample is not None and subsample < 1:
        codes = codes[subsample_rows(raw_records, subsample, seed)]
    columns = tuple(c for c, k in zip(spec.columns, spec.kinds) if k != "drop")
    return Prepared(name, columns, sizes, codes, coding, raw_records, subsample,
                    seed if subsample is not None else None)


def write_prepared(prepared: Prepared, out_dir: str | Path,
                   sources: Sequence[str | Path] = ()) -> Path:
    """Write ``NAME.csv`` (header + integer codes), ``NAME-domain.json`` and
    ``NAME-coding.json`` (the rule's bin edges, category lists and provenance)."""
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = prepared.name
    tmp = out / f"{name}.csv.tmp{os.getpid()}"
    pd.DataFrame(prepared.codes, columns=list(prepared.columns)).to_csv(tmp, index=False)
    (out / f"{name}-domain.json").write_text(json.dumps(dict(zip(prepared.columns,
                                                                 prepared.sizes))))
    (out / f"{name}-coding.json").write_text(json.dumps(
        {"rule_version": RULE_VERSION, "raw_records": prepared.raw_records,
         "records": int(prepared.codes.shape[0]), "subsample": prepared.subsample,
         "seed": prepared.seed, "sources": [str(s) for s in sources],
         "columns": prepared.coding}, indent=1))
    os.replace(tmp, out / f"{name}.csv")  # last: its presence means the set is complete
    return out


# ---- where raw files and prepared copies live ----------------------------------------------

def raw_dir_candidates() -> list[Path]:
    """Folders searched for raw files, in order: ``$FLAIMSIM_RAW_DIR``, the copies shipped in
    the package (Magic, Marketing), the data cache that ``flaimsim data fetch`` fills
    (Census, Covtype), then the optional ``shared/data/raw`` mirror beside the checkout."""
    from flaimsim.datasets.store import SHIPPED_DIR, fetched_raw_dir, mirror_dirs

    env = os.environ.get("FLAIMSIM_RAW_DIR")
    explicit = [Path(env)] if env else []
    return explicit + [SHIPPED_DIR, fetched_raw_dir()] + mirror_dirs("raw")


def raw_dir_for(name: str) -> Path:
    """The first folder of :func:`raw_dir_candidates` holding every raw file of ``name``;
    the error says which command fetches what is missing."""
    from flaimsim.datasets.catalog import REMOTE

    files = RAW_SPECS[name].files
    candidates = raw_dir_candidates()
    for directory in candidates:
        if all((directory / f).is_file() for f in files):
            return directory.resolve()
    how = (f"fetch {'it' if len(files) == 1 else 'them'} once with `flaimsim data fetch "
           f"{name}`, or set" if name in REMOTE else "set")
    raise RawDataError(f"data set {name!r} needs {', '.join(files)}, not found in "
                       f"{', '.join(str(d) for d in candidates)}; {how} FLAIMSIM_RAW_DIR to "
                       f"a folder holding {'it' if len(files) == 1 else 'them'}")


def cache_root() -> Path:
    """Where prepared copies are cached: the data cache (:func:`flaimsim.datasets.store.
    data_cache`)."""
    from flaimsim.datasets.store import data_cache

    return data_cache()


def prepared_dir(name: str, subsample: float | None | str = "paper", seed: int = 0,
                 raw_dir: str | Path | None = None) -> Path:
    """The directory holding ``name`` prepared from the raw files, preparing it into the
    cache on first use. ``subsample="paper"``: the paper's fraction (Covtype 0.2, Census
    0.3, none for the others). The key covers the rule version, the fraction, the seed and
    the raw files' sizes and modification times."""
    spec = RAW_SPECS[name]
    fraction = spec.paper_subsample if subsample == "paper" else subsample
    raw = Path(raw_dir) if raw_dir is not None else raw_dir_for(name)
    paths = [raw / f for f in spec.files]
    stamp = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) if p.is_file() else (p.name,)
             for p in paths]
    key = hashlib.sha1(json.dumps([RULE_VERSION, name, fraction, seed, stamp]).encode()
                       ).hexdigest()[:10]
    out = cache_root() / f"{name}-{key}"
    if not (out / f"{name}.csv").is_file():
        prepared = prepare_raw(name, paths, fraction, seed)
        write_prepared(prepared, out, paths)
    return out


__all__ = ["RAW_SPECS", "RawSpec", "RawDataError", "Prepared", "prepare_raw",
           "write_prepared", "prepared_dir", "raw_dir_for", "raw_dir_candidates",
           "equal_width_codes",
           "subsample_rows", "CONTINUOUS_BINS"]
