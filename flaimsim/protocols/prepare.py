"""From a configuration to the data a protocol runs on: load (or generate), coarsen, split,
federate, and build the workload.

SynthFS keeps its natural clients (the generator's own client per record); other data sets
are federated by the configured partition. The train/test split is over records, and each
client keeps its training records only.

Record bound: every width that shows on the wire (DistAIM's count bit length, FLAIM's SecAgg
word width) comes from a bound on the number of training records N, never from N itself,
which is private under add/remove DP. It is ``--max-records`` if given, else the data set's
documented size (:func:`flaimsim.protocols.config.public_record_bound`); data with more
training records than the bound is refused. A custom data set with no documented size and no
``--max-records`` uses its file's row count, marked NOT public (``RecordBound.public``): the
run works and says in its privacy block that the wire widths reveal ⌊log₂⌋ of the file's size.
We chose this over refusing to run: it leaks only a bit length, and only of the whole file
(before the split), and the claim printed with the result names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flaimsim.mechanisms.data import Table, coarsen, load_dataset
from flaimsim.mechanisms.federation import Federation, federate, from_client_rows, heterogeneity_report
from flaimsim.mechanisms.synthfs import generate_synthfs
from flaimsim.mechanisms.workload import Workload, make_workload
from flaimsim.protocols.config import ConfigError, RunConfig, public_record_bound, stream


@dataclass(frozen=True)
class RecordBound:
    """The bound on N that sizes wire-visible widths, and whether it is public."""

    value: int
    public: bool
    source: str               # "--max-records", "documented size" or "file row count"

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "public": self.public, "source": self.source}


NOT_PUBLIC_BOUND_NOTE = ("record bound NOT public: taken from the data file's row count (no "
                         "--max-records and no documented size); the wire widths it sets "
                         "reveal its bit length; pass --max-records for a public bound")


def record_bound(config: RunConfig, table_rows: int) -> RecordBound:
    """The configured public bound, or the file's row count marked not public."""
    bound = public_record_bound(config)
    if bound is not None:
        source = "--max-records" if config.max_records is not None else "documented size"
        return RecordBound(int(bound), True, source)
    return RecordBound(int(table_rows), False, "file row count")


def check_record_bound(bound: RecordBound, train_records: int) -> None:
    """Refuse a training set larger than the bound (its counts would overflow the widths)."""
    if train_records > bound.value:
        # N itself is private: the message names the bound only.
        raise ConfigError(f"the training data has more records than the record bound "
                          f"{bound.value} ({bound.source}); raise --max-records")


def wire_record_bound(data: "PreparedData") -> int:
    """The bound on N that sizes wire-visible widths (never the private N itself)."""
    if data.record_bound is None:
        raise ConfigError("prepared data carries no record bound; build it with prepare()")
    return data.record_bound.value


@dataclass(frozen=True)
class PreparedData:
    train: Table
    test: Table
    federation: Federation
    workload: Workload
    label: str
    record_bound: RecordBound | None = None

    def describe(self) -> dict[str, Any]:
        het = heterogeneity_report(self.federation)
        return {"train_records": self.train.n, "test_records": self.test.n,
                "clients": self.federation.n_clients, "label": self.label,
                "heterogeneity_mean_tv": het.get("mean_tv"), **self.workload.summary()}


def _load(config: RunConfig) -> tuple[Table, tuple[np.ndarray, ...] | None]:
    if config.dataset == "synthfs":
        table, rows = generate_synthfs(clients=config.clients, features=config.synthfs_features,
                                       records_per_client=config.synthfs_records,
                                       alpha=config.synthfs_alpha, bins=config.synthfs_bins,
                                       seed=config.seed)
        return table, rows
    return load_dataset(config.dataset, config.data_dir), None


def load_table(config: RunConfig) -> tuple[Table, tuple[np.ndarray, ...] | None]:
    """The data set's table, coarsened (``max_bins``), and SynthFS's natural client rows."""
    table, natural_rows = _load(config)
    if config.max_bins is not None:
        table, _ = coarsen(table, config.max_bins)
    return table, natural_rows


def prepare(config: RunConfig) -> PreparedData:
    """Load, coarsen (``max_bins``), split 90/10 (seeded), federate and build the workload."""
    table, natural_rows = load_table(config)
    label = config.label or table.columns[-1]
    if label not in table.columns:
        raise ConfigError(f"label {label!r} is not a column of {config.dataset}: "
                          f"{list(table.columns)}")
    rng_split = stream(config.seed, "split")
    order = rng_split.permutation(table.n)
    n_test = int(round(table.n * config.test_fraction))
    if not 0 < n_test < table.n:
        raise ConfigError(f"--test-fraction {config.test_fraction:g} of {table.n} records "
                          f"leaves {'no test' if n_test == 0 else 'no training'} record: "
                          "choose a --test-fraction that leaves both parts non-empty")
    is_test = np.zeros(table.n, dtype=bool)
    is_test[order[:n_test]] = True
    train_idx = np.flatnonzero(~is_test)
    test = table.subset(np.flatnonzero(is_test))
    train = table.subset(train_idx)
    bound = record_bound(config, table.n)
    check_record_bound(bound, train.n)

    partition = config.partition
    if natural_rows is not None and partition in ("natural", "iid") and config.dataset == "synthfs":
        # Position of each original row within the training table.
        new_pos = np.full(table.n, -1, dtype=np.int64)
        new_pos[train_idx] = np.arange(train_idx.size)
        rows = tuple(new_pos[r][new_pos[r] >= 0] for r in natural_rows)
        fed = from_client_rows(train, rows, method="natural")
    else:
        if partition == "natural":
            raise ConfigError(f"partition 'natural' only exists for synthfs, not {config.dataset}")
        fed = federate(train, partition, config.clients, stream(config.seed, "federation"),
                       beta=config.beta, label=label,
                       # The authors' label-skew split gives every client one record of each
                       # label first; without it β = 0.1 over 100 clients leaves clients empty.
                       min_per_label=1 if partition == "dirichlet" else 0,
                       embedding=config.cluster_embedding)
    if not 1 <= config.workload_degree <= len(train.domain):
        raise ConfigError(f"{config.dataset} has {len(train.domain)} column(s), but the workload "
                          f"is made of {config.workload_degree}-way marginals: give data with "
                          f"at least {config.workload_degree} columns, or lower "
                          "--workload-degree")
    workload = make_workload(train.domain, degree=config.workload_degree,
                             num_marginals=config.workload_marginals, seed=config.workload_seed)
    return PreparedData(train, test, fed, workload, label, bound)


__all__ = ["PreparedData", "RecordBound", "check_record_bound", "prepare", "record_bound",
           "wire_record_bound"]
