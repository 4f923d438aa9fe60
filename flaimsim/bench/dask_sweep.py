"""Sweep cells on a Dask distributed cluster (``flaimsim sweep --scheduler ...``).

Workers run the cell function the sweep hands over (:func:`flaimsim.bench.sweep.dask_cell`) and
send the cell's files back; the caller writes them (one writer, atomic files), so a worker that dies mid-cell leaves nothing behind.
Dask reschedules a dead worker's cells on the others (up to its ``allowed-failures``); a cell
that still fails is reported failed and runs again on the next invocation (resume). Each cell
is submitted under a fresh key (``pure=False``): results of an earlier driver are not reused
from the scheduler's memory, only from the sweep directory.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable, Sequence

from flaimsim.protocols.config import ConfigError, RunConfig


def open_client(scheduler: str, jobs: int):
    """A Dask client: on the scheduler at ``tcp://HOST:PORT``, or on a new LocalCluster of
    ``jobs`` single-threaded worker processes for ``"local"`` (closed with the client)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - dask is an install requirement
        raise ConfigError(f"--scheduler needs dask[distributed]: {exc}") from None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        client._flaimsim_cluster = cluster  # closed with the client
        return client
    if "://" not in scheduler:
        raise ConfigError(f"--scheduler: expected tcp://HOST:PORT or 'local', got {scheduler!r}")
    try:
        return Client(scheduler, timeout=30)
    except OSError as exc:
        raise ConfigError(f"--scheduler: cannot reach {scheduler}: {exc}") from None


def run_on_dask(configs: Sequence[RunConfig], scheduler: str, jobs: int,
                cell: Callable[[RunConfig], Any], failed: Callable[[RunConfig, str], Any],
                finished: Callable[..., None]) -> None:
    """Run ``cell(config)`` for each of ``configs`` on the cluster; call ``finished(outcome)``
    as each completes, with ``failed(config, why)`` as the outcome of a cell that raised."""
    from distributed import as_completed

    client = open_client(scheduler, jobs)
    try:
        futures = {client.submit(cell, c, pure=False): c for c in configs}
        for fut in as_completed(list(futures)):
            try:
                outcome = fut.result()
            except Exception as exc:  # e.g. KilledWorker: the cell is retried on resume
                outcome = failed(futures[fut], f"{type(exc).__name__}: {exc}\n"
                                               f"{traceback.format_exc(limit=3)}")
            finished(outcome)
            fut.release()
    finally:
        cluster = getattr(client, "_flaimsim_cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()
