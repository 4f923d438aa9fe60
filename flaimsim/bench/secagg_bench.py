"""Measured per-client traffic of secure aggregation (SecAgg+) against a plain upload.

For each (clients n, length L) one real session runs in-process (X25519, AES, Shamir) and every
message is counted on the wire. Columns:

- ``plain_bytes``: what a client would send without secure aggregation, in the same wire format
  (18-byte header + 6-byte vector prefix + L words of ceil(b/8) bytes);
- ``plain_int64_bytes``: L * 8, the authors' per-value count;
- ``secagg_bytes_per_client``: mean over clients of bytes sent + received over all three
  secagg phases (keys, masked input, unmask); the per-phase means are also reported;
- ``overhead_ratio = secagg_bytes_per_client / plain_bytes``.

Run ``python -m flaimsim.bench.secagg_bench`` to print the default grid.
"""

from __future__ import annotations

import time

import numpy as np

from flaimsim.parties.secagg import wire as sw
from flaimsim.parties.ledger import Ledger, client
from flaimsim.parties.secagg.aggregate import secure_aggregate
from flaimsim.parties.secagg.protocol import DEFAULT_THRESHOLD

PHASES = ("secagg-keys", "secagg-masked-input", "secagg-unmask")


def bench_secagg(client_counts: tuple[int, ...] = (10, 50, 100),
                 lengths: tuple[int, ...] = (100, 10_000), max_value: int = 1000,
                 dropout_fraction: float = 0.0, threshold: float | int = DEFAULT_THRESHOLD,
                 neighbours: int | None = None, seed: int = 0) -> list[dict]:
    """One measured session per (n, L); vectors uniform in [0, max_value]; early dropouts."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in client_counts:
        for length in lengths:
            vecs = {u: rng.integers(0, max_value + 1, length) for u in range(n)}
            drop = rng.choice(n, int(round(dropout_fraction * n)), replace=False).tolist()
            ledger = Ledger(run="secagg-bench", protocol="secagg")
            t0 = time.perf_counter()
            res = secure_aggregate(vecs, max_value, ledger, 0, rng, dropout=drop,
                                   threshold=threshold, neighbours=neighbours,
                                   keep_payloads=False)
            seconds = time.perf_counter() - t0
            per_phase = {p: 0 for p in PHASES}
            names = {client(u) for u in range(n)}
            for r in ledger.rows:
                per_phase[r.phase] += r.bytes * ((r.sender in names) + (r.receiver in names))
            total = sum(sum(b) for b in res.client_bytes.values()) / n
            plain = sw.HEADER_BYTES + sw.MASKED_PREFIX.size + length * res.session.word_bytes
            rows.append({
                "clients": n, "length": length, "plain_bytes": plain,
                "plain_int64_bytes": 8 * length, "secagg_bytes_per_client": total,
                "overhead_ratio": total / plain,
                "keys_bytes_per_client": per_phase["secagg-keys"] / n,
                "masked_input_bytes_per_client": per_phase["secagg-masked-input"] / n,
                "unmask_bytes_per_client": per_phase["secagg-unmask"] / n,
                "aggregator_bytes": sum(res.aggregator_bytes),
                "bits": res.session.bits, "word_bytes": res.session.word_bytes,
                "degree": res.session.degree, "threshold": res.session.threshold,
                "dropped": len(drop), "seconds": seconds,
            })
    return rows


def format_table(rows: list[dict]) -> str:
    cols = ("clients", "length", "degree", "bits", "plain_bytes", "keys_bytes_per_client",
            "masked_input_bytes_per_client", "unmask_bytes_per_client",
            "secagg_bytes_per_client", "overhead_ratio", "seconds")
    lines = [" | ".join(cols)]
    for r in rows:
        lines.append(" | ".join(f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c])
                                for c in cols))
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_table(bench_secagg()))
    print()
    print(format_table(bench_secagg(dropout_fraction=0.1)))
