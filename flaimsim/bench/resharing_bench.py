"""``flaimsim bench resharing``: the servers' vector Shamir split, recombination and wire
encoding (:mod:`flaimsim.parties.mpc.vector_resharing`) against MPyC's own, per field size."""

from __future__ import annotations

import os
import secrets
import time
from typing import Any, Callable

from flaimsim.parties.mpc import vector_resharing


def _one_pass(split: Callable[..., Any], recombine: Callable[..., Any], field: type,
              values: list[int]) -> tuple[float, list[int]]:
    """Seconds for what one party does per resharing of ``values``, m = 3, t = 1: split them,
    encode a row, decode it, recombine three rows; and the recombined values."""
    t0 = time.perf_counter()
    shares = split(field, values, 1, 3)
    received = field.from_bytes(field.to_bytes(shares[1]))
    out = recombine(field, [(1, shares[0]), (2, received), (3, shares[2])])
    return time.perf_counter() - t0, [v % field.modulus for v in out]


def bench_resharing(elements: int = 100_000, count_bits: tuple[int, ...] = (14, 22, 40, 64)
                    ) -> dict[str, Any]:
    """Seconds per ``elements`` for MPyC's list path and the vector one, SecInt(l) fields."""
    from mpyc import thresha
    from mpyc.runtime import mpc

    rows = []
    for bits in count_bits:
        field = mpc.SecInt(bits).field
        values = [secrets.randbelow(field.modulus) for _ in range(elements)]
        vector_resharing.uninstall()
        mpyc_s, mpyc_out = _one_pass(thresha.random_split, thresha.recombine, field, values)
        vector_resharing.install()
        try:
            vector_s, vector_out = _one_pass(thresha.random_split, thresha.recombine, field,
                                             values)
        finally:
            vector_resharing.uninstall()
        if mpyc_out != values or vector_out != values:
            raise RuntimeError(f"recombination failed in the {bits}-bit bench")
        rows.append({"secint_bits": bits, "field_bits": field.modulus.bit_length(),
                     "byte_length": field.byte_length, "mpyc_s": mpyc_s, "vector_s": vector_s,
                     "speedup": mpyc_s / vector_s})
    return {"elements": elements, "what": "split + encode + decode + recombine, one party, "
            "m = 3, t = 1", "load_average_1min": os.getloadavg()[0], "rows": rows}
