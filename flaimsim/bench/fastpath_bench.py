"""``flaimsim bench fastpaths``: one cell of the reproduce setting, on the plain path and on
the exact caches (:mod:`flaimsim.mechanisms.memo`), alternately.

The machine may be shared, so the runs alternate plain / fast ``--bench-pairs`` times and each
run reports the load average at its start; the figures are wall seconds of the protocol run
(data prepared once, before) and CPU seconds of this process (less sensitive to the other
processes on a loaded machine than wall time). Both paths must give the same selections and errors to the last
digit: ``identical`` says whether they did.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flaimsim.protocols.config import RunConfig


def one_run(config: RunConfig, data: Any, fast: bool) -> dict[str, Any]:
    from flaimsim.mechanisms import memo
    from flaimsim.protocols import runner

    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    if fast:
        rec = runner(config.protocol)(config, data=data, progress=None).record
    else:
        with memo.disabled():
            rec = runner(config.protocol)(config, data=data, progress=None).record
    return {"path": "fast" if fast else "plain", "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0,
            "select_s": rec.get("select_s"), "estimate_s": rec.get("estimate_s"),
            "load_at_start": load, "selected": rec.get("selected"),
            "l1_workload_error": rec.get("l1_workload_error"), "nll": rec.get("nll")}


def bench_fastpaths(config: RunConfig, pairs: int = 1) -> dict[str, Any]:
    """Alternate plain and fast runs of ``config``; timings and whether results agree."""
    from flaimsim.protocols.prepare import prepare

    data = prepare(config)
    runs = []
    for _ in range(pairs):
        runs += [one_run(config, data, fast=False), one_run(config, data, fast=True)]
    keys = ("selected", "l1_workload_error", "nll")
    identical = all(r[k] == runs[0][k] for r in runs for k in keys)
    mean = {(p, k): sum(r[k] for r in runs if r["path"] == p) / pairs
            for p in ("plain", "fast") for k in ("seconds", "cpu_seconds")}
    return {"protocol": config.protocol, "dataset": config.dataset, "T": config.rounds,
            "identical": identical, "plain_s": mean["plain", "seconds"],
            "fast_s": mean["fast", "seconds"],
            "plain_cpu_s": mean["plain", "cpu_seconds"], "fast_cpu_s": mean["fast", "cpu_seconds"],
            "cpu_speedup": (mean["plain", "cpu_seconds"] / mean["fast", "cpu_seconds"]
                            if mean["fast", "cpu_seconds"] else None),
            "runs": [{k: v for k, v in r.items() if k != "selected"} for r in runs]}
