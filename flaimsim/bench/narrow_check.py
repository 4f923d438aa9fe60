"""The narrow field (:mod:`flaimsim.parties.mpc.narrow_field`) under three real MPyC parties:
exactness, what server 0 sees, and the decomposition's cost beside the wide method.

``python -m flaimsim.bench.narrow_check [--cells N]`` prints the figures (bench); the tests call
:func:`check_narrow_field` with small sizes. ``drop_guard`` removes the mask U_C (the pair
{1, 2}'s PRSS value): then server 0's V is x mod 2^l, which the attack test must see.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from flaimsim.bench.secure_bench import _sent_bytes, print_worker_report, run_parties

KAPPA = 52          # the default κ on Adult: the counts' field is above 2^62
MAX_COUNT = 1000    # l = 10 bits: V's law can be checked bin by bin


def check_narrow_field(cells: int = 4000, drop_guard: bool = False, compare_wide: bool = False,
                       timeout: float = 300.0) -> dict[str, Any]:
    """Run the worker in 3 parties; server 0's report (with its view) and every party's bytes."""
    args = ["--cells", str(cells)] + (["--drop-guard"] if drop_guard else []) + \
        (["--compare-wide"] if compare_wide else [])
    reports = run_parties_narrow(args, timeout)
    out = dict(reports[0])
    out["bytes_per_cell_by_party"] = {k: [r["bytes_per_cell"][k] for r in reports]
                                      for k in reports[0]["bytes_per_cell"]}
    out["cpu_s_by_party"] = {k: [r["cpu_s"][k] for r in reports] for k in reports[0]["cpu_s"]}
    return out


def run_parties_narrow(args: list[str], timeout: float) -> list[dict]:
    return run_parties(["narrow", *args, "-K", str(KAPPA)], 3, timeout,
                       module="flaimsim.bench.narrow_check")


async def worker(cells: int, drop_guard: bool, compare_wide: bool) -> dict[str, Any]:
    from mpyc import asyncoro
    from mpyc.runtime import mpc

    from flaimsim.parties.distaim.secure_scoring import (count_secint, decompose_counts,
                                                        secure_l1_bits)
    from flaimsim.parties.mpc import narrow_field, vector_resharing
    from flaimsim.parties.mpc.bit_decomposition import secure_low_bits
    from flaimsim.parties.mpc.server_loop import _hop

    vector_resharing.install()          # as in a compute server
    mpc.options.mix32_64bit = True
    asyncoro._hop = _hop
    narrow_field.SERVER0_VIEW = []
    if drop_guard:
        real = narrow_field._keyed_words

        def keyed_words(key: bytes, uci: bytes, n: int) -> np.ndarray:
            w = real(key, uci, n)   # the keys exist once MPyC has started
            return np.zeros_like(w) if key == mpc._prss_keys.get((1, 2)) else w
        narrow_field._keyed_words = keyed_words
    await mpc.start()
    rng = np.random.default_rng(7)
    l, f = MAX_COUNT.bit_length(), 2
    stype = count_secint(MAX_COUNT, f)
    report: dict[str, Any] = {"field_bits": int(stype.field.order).bit_length(),
                              "narrow": narrow_field.narrow_pays(stype)}
    x = rng.integers(0, MAX_COUNT + 1, cells)
    x[:4] = [0, MAX_COUNT, 1, (1 << l) - 1]
    x[4:cells // 2] = 5                       # many equal values: V's law at a fixed x
    wrap = rng.integers(0, 3, cells)          # a compact sum s = x + w·2^l, w < 3
    s = x + (wrap << l)

    def share(values: np.ndarray) -> Any:
        return mpc.input(stype.array(values if mpc.pid == 0 else np.zeros_like(values)), senders=0)

    s_in, x_in = share(s), share(x)
    await mpc.gather(s_in, x_in)
    bytes_per_cell, cpu = {}, {}
    await mpc.barrier()
    b0, c0 = _sent_bytes(), time.process_time()
    bits = decompose_counts(s_in, MAX_COUNT, f, wrapped=True)
    await mpc.gather(bits.bits, bits.below, bits.counts)
    bytes_per_cell["narrow"], cpu["narrow"] = (_sent_bytes() - b0) / cells, time.process_time() - c0
    opened = np.asarray(await mpc.output(bits.bits), dtype=object).astype(np.int64)
    report["bits_exact"] = bool(np.array_equal(opened, (x[:, None] >> np.arange(l)) & 1))
    z = np.asarray(await mpc.output(bits.below), dtype=object).astype(np.int64)
    report["below_exact"] = bool(all(np.array_equal(z[h], (x < (1 << h)).astype(int))
                                     for h in range(l + 1)))
    # the L1 score against a public model: narrow bits, sums moved back, exact
    segments = [1, 19, 80, cells - 100]
    c = rng.uniform(0, 30, cells) * (rng.random(cells) < 0.6)
    c[:3] = [0.0, 2.0 * MAX_COUNT, 0.3]
    l1 = secure_l1_bits(bits, c, segments)
    got = np.asarray(await mpc.output(l1), dtype=object).astype(np.int64)
    c_round = np.rint(c * (1 << f)).astype(np.int64)
    starts = np.r_[0, np.cumsum(segments)[:-1]]
    report["l1_exact"] = bool(np.array_equal(got, np.add.reduceat(np.abs((x << f) - c_round),
                                                                   starts)))
    # moving values back: edge values of [0, P)
    ys = np.array([0, 1, narrow_field.NARROW_PRIME - 1, narrow_field.NARROW_PRIME - 2, 1 << 59]
                  + [int(v) for v in rng.integers(0, narrow_field.NARROW_PRIME, 60)]
                  + [7] * 400, dtype=object)
    nt = narrow_field.narrow_type()
    y_in = mpc.input(nt.array(ys if mpc.pid == 0 else np.zeros(len(ys), dtype=object)), senders=0)
    back = await mpc.output(narrow_field.narrow_to_wide(y_in, stype))
    report["to_wide_exact"] = [int(v) for v in back] == [int(v) for v in ys]
    if mpc.pid == 0:
        view = narrow_field.SERVER0_VIEW
        report["view_bits_v"] = view[0].tolist()          # V = (x − U_C) mod 2^l per cell
        report["view_to_wide_v"] = view[-1][-400:].tolist()  # V = (7 + U_C) mod P
        report["x"] = x.tolist()
    if compare_wide:
        await mpc.barrier()
        b0, c0 = _sent_bytes(), time.process_time()
        wide_bits = secure_low_bits(s_in, l)
        from flaimsim.parties.distaim.secure_scoring import prefix_zero_products
        await mpc.gather(wide_bits, prefix_zero_products(wide_bits))
        bytes_per_cell["wide"], cpu["wide"] = (_sent_bytes() - b0) / cells, time.process_time() - c0
    report["bytes_per_cell"], report["cpu_s"] = bytes_per_cell, cpu
    await mpc.shutdown()
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m flaimsim.bench.narrow_check")
    ap.add_argument("--cells", type=int, default=100_000)
    args = ap.parse_args(argv)
    t = time.perf_counter()
    out = check_narrow_field(args.cells, compare_wide=True, timeout=3600)
    wall = time.perf_counter() - t
    for key in ("view_bits_v", "view_to_wide_v", "x"):
        out.pop(key, None)
    print(json.dumps({"cells": args.cells, "wall_s": round(wall, 1), **out}, indent=1))


def _worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench-worker", choices=["narrow"], required=True)
    parser.add_argument("--cells", type=int, default=4000)
    parser.add_argument("--drop-guard", action="store_true")
    parser.add_argument("--compare-wide", action="store_true")
    args, _ = parser.parse_known_args(argv)    # the rest (-P, -I, -K) is MPyC's
    from mpyc.runtime import mpc
    print_worker_report(mpc.run(worker(args.cells, args.drop_guard, args.compare_wide)))


if __name__ == "__main__":
    (_worker_main if "--bench-worker" in sys.argv else main)(sys.argv[1:])
