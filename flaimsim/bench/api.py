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

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from flaimsim.bench.options import (check_options, given_options, option_names,
                                    options_namespace, protocol_list)
from flaimsim.protocols.config import RunConfig

if TYPE_CHECKING:  # pandas and the runners are imported when a result is read
    import pandas as pd

    from flaimsim.bench.runs import RunSet
    from flaimsim.bench.sweep import SweepReport

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
        preset: str | None = None, out: str | Path | None = None, force: bool = False,
        **options: Any) -> RunOutput:
    """Run ``protocols`` (default: the main job's five at its settings) on one data set.

    With ``out``: config.json, result.json, ledgers, table.csv/md and report.html there
    (a folder that holds an earlier run is refused unless ``force``)."""
    from flaimsim.bench.options import (MAIN_JOB_PROTOCOLS, config_from_args,
                                        main_job_defaults, resolve_preset)
    from flaimsim.bench.runs import run_set

    chosen = protocol_list(protocols)
    args = options_namespace(dataset, preset, options)
    resolved = resolve_preset(args)
    defaults = main_job_defaults(resolved) if chosen is None else None
    chosen = chosen or list(MAIN_JOB_PROTOCOLS)
    config = config_from_args(args, defaults).replace(protocol=chosen[0])
    from flaimsim.bench.estimate import check_time

    check_time(config, chosen, force)   # an absurdly long run needs force (bench.estimate)
    runs = run_set(config, chosen, out, preset=resolved, force=force)
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

        from flaimsim.bench.sweep_dir import load_cells

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
          preset: str | None = None, **options: Any) -> SweepOutput:
    """Every protocol × T × ε × partition × seed into ``out`` (resumable; the paper's
    setting unless ``preset`` is given), as ``flaimsim sweep``: both resolve the cells with
    :func:`~flaimsim.bench.sweep.spec_from_options` and run them with ``run_sweep``.
    ``flaimsim report OUT`` draws the folder's report.html."""
    from flaimsim.bench.sweep import run_sweep, spec_from_options

    spec = spec_from_options(protocols, dataset, rounds=rounds, epsilons=epsilons,
                             partitions=partitions, repeats=repeats, preset=preset, **options)
    report = run_sweep(spec, out, jobs=jobs, scheduler=scheduler)
    return SweepOutput(Path(out), report, len(spec.configs()))


__all__ = ["run", "sweep", "RunOutput", "SweepOutput", "check_options", "option_names",
           "given_options"]
