"""``flaimsim bench noise``: speed of the exact discrete Gaussian sampler (seeded numpy source
and the OS CSPRNG), and the exact sampler against opendp's when it is installed."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from flaimsim.mechanisms.discrete_gaussian import SystemSource, sample_discrete_gaussian


def bench_noise(cells: int = 3_000_000, s2: tuple[float, ...] = (0.5, 20.0, 400.0, 317.3)
                ) -> dict[str, Any]:
    """Seconds to draw ``cells`` N_Z(0, s²) values per source and s², with the load average."""
    out: dict[str, Any] = {"cells": cells, "load_average_1min": os.getloadavg()[0], "runs": []}
    for value in s2:
        for name, source in (("numpy-seeded", np.random.default_rng(0)),
                             ("os-csprng", SystemSource())):
            t0 = time.perf_counter()
            x = sample_discrete_gaussian(value, cells, source)
            out["runs"].append({"s2": value, "source": name,
                                "seconds": time.perf_counter() - t0,
                                "sample_variance": float(x.var())})
    try:
        import opendp.prelude as dp

        dp.enable_features("contrib")
        n = min(cells, 300_000)
        meas = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T=int)),
                                  dp.l2_distance(T=int), scale=float(np.sqrt(317.3)))
        t0 = time.perf_counter()
        meas([0] * n)
        out["opendp"] = {"cells": n, "s2": 317.3, "seconds": time.perf_counter() - t0}
    except ImportError:
        out["opendp"] = None
    out["load_average_1min_after"] = os.getloadavg()[0]
    return out
