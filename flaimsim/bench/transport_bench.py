"""Micro-benchmark: what clients upload to share a vector, per sharing mode, measured on the wire.

Starts 3 real compute-server processes, lets ``clients`` clients share random vectors of
``cells`` values in 0..100 in every mode (compact additive mod 2^b, Shamir, additive mod p
with PRG seeds), opens the sums to check them, and reports bytes per client, the servers'
conversion traffic, and the floor: d·b bits with b the aggregate's width (b = bitlen of the
public bound clients × max value), plus the (m − 1) 16-byte seeds; ``*_over_floor`` is the
measured upload over that floor (frame headers included in the upload).

Run: ``python -m flaimsim.bench.transport_bench [cells] [clients]``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

import numpy as np

from flaimsim.parties.mpc.input_sharing import SEED_BYTES, share_inputs
from flaimsim.parties.mpc.launcher import ServerLauncher
from flaimsim.parties.ledger import Ledger
from flaimsim.parties.transport import ClientTransport

MAX_VALUE = 100


def aggregate_width(clients: int, max_value: int = MAX_VALUE) -> int:
    """b = bitlen(clients · max_value): the aggregate's width (0..bound fits in b bits)."""
    return int(clients * max_value).bit_length()


def lower_bound_bytes(cells: int, clients: int, max_value: int = MAX_VALUE) -> int:
    """ceil(d · b / 8), b the aggregate's width."""
    return math.ceil(cells * aggregate_width(clients, max_value) / 8)


def bench_transport(cells: int = 10_000, clients: int = 20, seed: int = 0) -> dict[str, Any]:
    """Measured upload bytes per client for both sharing modes (3 servers, t = 1)."""
    if cells < 1 or clients < 1:
        raise ValueError(f"cells and clients must be positive, got {cells}, {clients}")
    rng = np.random.default_rng(seed)
    vectors = {k: rng.integers(0, MAX_VALUE + 1, cells) for k in range(clients)}
    plain = sum(vectors.values())
    out: dict[str, Any] = {"cells": cells, "clients": clients}
    with ServerLauncher(m=3) as servers, ClientTransport(servers.client_addresses) as transport:
        b = aggregate_width(clients)
        for rnd, mode in enumerate(("compact", "shamir", "additive")):
            ledger = Ledger(run="transport-bench", protocol=f"share-inputs-{mode}")
            t0 = time.perf_counter()
            extra = dict(compact_bits=b, bit_length=b + 4) if mode == "compact" else {}
            res = share_inputs(servers, transport, vectors, name=mode, mode=mode, round=rnd,
                               ledger=ledger, **extra)
            if not np.array_equal(servers.open(mode), plain):
                raise RuntimeError(f"{mode}: opened sum differs from the plain sum")
            out[f"{mode}_seconds"] = round(time.perf_counter() - t0, 3)
            per_client = set(res.upload_bytes.values())
            if len(per_client) != 1:
                raise RuntimeError(f"{mode}: clients uploaded different sizes {per_client}")
            out[f"{mode}_upload_bytes_per_client"] = per_client.pop()
            out[f"{mode}_ledger_summary"] = ledger.summary(n_clients=clients, n_servers=3)
            if mode != "shamir":  # compact: the conversion includes the unwrap (bits of s)
                out[f"{mode}_conversion_bytes_per_server"] = list(res.conversion_bytes_sent)
        out["element_bytes"] = servers.field_spec.element_bytes
        out["privacy"] = servers.privacy_note or "private (t=1, honest majority, passive)"
    out["aggregate_bits"] = aggregate_width(clients)
    out["lower_bound_bytes"] = lower_bound_bytes(cells, clients)
    out["floor_with_seeds_bytes"] = out["lower_bound_bytes"] + 2 * SEED_BYTES
    for mode in ("compact", "shamir", "additive"):
        out[f"{mode}_over_floor"] = round(out[f"{mode}_upload_bytes_per_client"]
                                          / out["floor_with_seeds_bytes"], 4)
    out["bytes_source"] = "wire"
    return out


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(bench_transport(*args), indent=2))
