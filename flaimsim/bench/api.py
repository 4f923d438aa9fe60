"""The Python API: ``flaimsim.run(...)`` and ``flaimsim.sweep(...)`` for notebooks (both
re-exported by the package, imported lazily); the command line's ``run`` and ``sweep`` go
through here (one code path).

Options are :class:`~flaimsim.protocols.config.RunConfig` fields given as keywords, checked
here (known name, type) before the configuration's own range checks; they resolve exactly as
on the command line: the preset (``preset=``, else the data set's own), the main job's
settings when ``protocols`` is not given, then the options given. ``None`` means "not given".
Results come as pandas DataFrames (``records``, ``ledger``, ``privacy``).
"""

from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from flaimsim.protocols.config import DATASETS, PRESETS, PROTOCOLS, ConfigError, RunConfig

if TYPE_CHECKING:  # pandas and the runners are imported when a result is read
    import pandas as pd

    from flaimsim.bench.runs import RunSet
    from flaimsim.bench.sweep import SweepReport, SweepSpec

# Keywords that are not RunConfig fields: the file stem of a custom data set.
EXTRA_OPTIONS = ("data_name",)
_NOT_OPTIONS = ("protocol", "extra")
_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,),
                                       "bool": (bool,)}


def option_names() -> tuple[str, ...]:
    """Every keyword :func:`run` and :func:`sweep` take as an option."""
    return tuple(n for n in RunConfig.__dataclass_fields__ if n not in _NOT_OPTIONS
                 ) + EXTRA_OPTIONS


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """The given options (``None`` dropped), each a known name of the right type; else a
    :class:`ConfigError` that names it (and the nearest known name)."""
    known = option_names()
    fields = RunConfig.__dataclass_fields__
    out = {}
    for name, value in options.items():
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"unknown option {name!r}{hint}")
        if value is None:
            continue
        kinds = [k.strip() for k in str(fields[name].type).split("|")] if name in fields \
            else ["str"]
        allowed = tuple(t for k in kinds for t in _TYPES.get(k, (object,)))
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            want = " or ".join(k for k in kinds if k != "None")
            raise ConfigError(f"option {name!r} must be {want}, got {value!r}")
        out[name] = value
    return out


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run options a command line gave (``dataset`` apart), as keywords of :func:`run`."""
    given = vars(args)
    return {k: given[k] for k in option_names() if k in given and k != "dataset"}


def _protocol_list(protocols: Sequence[str] | str | None) -> list[str] | None:
    if protocols is None:
        return None
    chosen = [protocols] if isinstance(protocols, str) else list(protocols)
    unknown = [p for p in chosen if p not in PROTOCOLS]
    if unknown or not chosen:
        raise ConfigError(f"protocols must name one or more of {PROTOCOLS}, got {chosen!r}")
    return chosen


def _namespace(dataset: str | None, preset: str | None, options: dict[str, Any]
               ) -> argparse.Namespace:
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if dataset is not None and dataset not in DATASETS + ("custom",):
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {DATASETS} or "
                          "'custom' (with data_name= and data_dir=)")
    given = {**dict.fromkeys(option_names()), **check_options(options)}  # None: not given
    return argparse.Namespace(**{**given, "dataset": dataset, "preset": preset,
                                 "protocol": None})


@dataclass(frozen=True)
class RunOutput:
    """What :func:`run` returns: the protocols' results on one prepared data set."""

    runs: "RunSet"
    out: Path | None

    @property
    def config(self) -> RunConfig:
        return self.runs.config

    @property
    def records(self) -> "pd.DataFrame":
        """One row per protocol: the result record's scalar fields (nested blocks such as
        ``privacy`` stay in :attr:`results`)."""
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in r.record.items()
                              if not isinstance(v, (dict, list))} for r in self.runs.results])

    @property
    def ledger(self) -> "pd.DataFrame":
        """Every protocol's communication ledger: one row per flow (sender → receiver)."""
        import pandas as pd

        from flaimsim.parties.ledger import LedgerRow

        columns = list(LedgerRow.__dataclass_fields__)
        return pd.DataFrame([{c: getattr(row, c) for c in columns}
                             for r in self.runs.results for row in r.ledger.rows],
                            columns=columns)

    @property
    def privacy(self) -> "pd.DataFrame":
        """Every protocol's privacy events (charges and releases), in order."""
        import pandas as pd

        return pd.DataFrame([{"protocol": r.record["protocol"], **e}
                             for r in self.runs.results
                             for e in r.loop.privacy.event_records()])

    @property
    def results(self) -> list[Any]:
        """The :class:`~flaimsim.protocols.result.RunResult` of each protocol."""
        return self.runs.results

    def header(self) -> str:
        return self.runs.header()

    def table(self, wide: bool = False) -> str:
        """The comparison table as the terminal shows it (≤ 120 columns; ``wide``: every
        column)."""
        return self.runs.table(wide=wide)


def run(protocols: Sequence[str] | str | None = None, dataset: str | None = None, *,
        preset: str | None = None, out: str | Path | None = None, **options: Any
        ) -> RunOutput:
    """Run ``protocols`` (default: the main job's five at its settings) on one data set.

    With ``out``: config.json, result.json, ledgers, table.csv/md and report.html there."""
    from flaimsim.bench.options import (MAIN_JOB_PROTOCOLS, config_from_args,
                                        main_job_defaults, resolve_preset)
    from flaimsim.bench.runs import run_set

    chosen = _protocol_list(protocols)
    args = _namespace(dataset, preset, options)
    resolved = resolve_preset(args)
    defaults = main_job_defaults(resolved) if chosen is None else None
    chosen = chosen or list(MAIN_JOB_PROTOCOLS)
    config = config_from_args(args, defaults).replace(protocol=chosen[0])
    runs = run_set(config, chosen, out, preset=resolved)
    if out is not None:
        from flaimsim.bench.report import write_run_outputs

        write_run_outputs(runs, out)
    return RunOutput(runs, Path(out) if out is not None else None)


@dataclass(frozen=True)
class SweepOutput:
    """What :func:`sweep` returns: the sweep directory and what this call did."""

    out: Path
    report: "SweepReport"
    cells: int

    @property
    def records(self) -> "pd.DataFrame":
        """One row per finished cell in the directory (every scalar record field)."""
        import pandas as pd

        from flaimsim.bench.sweep import load_cells

        return pd.DataFrame([{"cell": c.key, **{k: v for k, v in c.record.items()
                                                if not isinstance(v, (dict, list))}}
                             for c in load_cells(self.out)])

    def table(self) -> str:
        """The DistAIM vs FLAIM trade-off table (also written to table.csv/md)."""
        from flaimsim.bench.table import write_table

        return write_table(self.out)


def sweep(out: str | Path, protocols: Sequence[str] | str | None = None,
          dataset: str | None = None, *, rounds: Sequence[int] | None = None,
          epsilons: Sequence[float] | None = None, partitions: Sequence[str] | None = None,
          repeats: int = 1, jobs: int = 2, scheduler: str | None = None,
          preset: str | None = None, announce: Callable[["SweepSpec"], None] | None = None,
          **options: Any) -> SweepOutput:
    """Every protocol × T × ε × partition × seed into ``out`` (resumable; the paper's
    setting unless ``preset`` is given, as ``flaimsim sweep``); ``announce`` sees the
    resolved spec before the cells run. Writes OUT/report.html when any cell is done."""
    from flaimsim.bench.sweep import DEFAULT_ROUNDS, run_sweep, spec_from_args

    axes = sorted({"rounds", "epsilon", "partition"} & set(options))
    if axes:
        raise ConfigError(f"{axes[0]!r} is a sweep axis: give rounds=, epsilons= or "
                          "partitions= as lists")
    chosen = _protocol_list(protocols)
    args = _namespace(dataset, preset, options)
    for name, value in (("rounds", rounds), ("epsilons", epsilons),
                        ("partitions", partitions)):
        if value is not None and (not isinstance(value, (list, tuple, range)) or not value):
            raise ConfigError(f"{name} must be a non-empty list, got {value!r}")
    if not isinstance(repeats, int) or isinstance(repeats, bool):
        raise ConfigError(f"repeats must be an int, got {repeats!r}")
    args.protocols = tuple(chosen) if chosen else None
    args.rounds = tuple(rounds) if rounds is not None else DEFAULT_ROUNDS
    args.epsilon = tuple(epsilons) if epsilons is not None else (1.0,)
    args.partition = tuple(partitions) if partitions is not None else None
    args.repeats = repeats
    spec = spec_from_args(args)
    if announce is not None:
        announce(spec)
    report = run_sweep(spec, out, jobs=jobs, scheduler=scheduler)
    if report.done or report.skipped:
        from flaimsim.bench.report import write_report

        write_report(out)
    return SweepOutput(Path(out), report, len(spec.configs()))


__all__ = ["run", "sweep", "RunOutput", "SweepOutput", "check_options", "option_names",
           "given_options"]
