"""Measured cost of the secure operations with real MPyC parties on loopback.

The driver functions (:func:`bench_scoring`, :func:`bench_em`) start ``parties`` processes
``python -m flaimsim.bench.secure_bench --bench-worker ... -P 127.0.0.1:p0 ... -I i`` on free
ports with fixed-width wire encoding (MPYC_MIX32_64BIT=1), under a timeout, and read one JSON
line per party. Bytes are what each party sent to its peers (``protocol.nbytes_sent``, payload +
12-byte header per message), differenced around each phase; figures are means over parties.
The driver never imports MPyC itself (MPyC parses sys.argv at import).

Run ``python -m flaimsim.bench.secure_bench`` to print all three benchmarks as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any, Sequence

BENCH_MAX_COUNT = 45222          # Adult's N: counts need 16 bits
BENCH_SCORE_BOUND = 2.0 ** 31    # |u_r| on Adult: Δ·(2N + sqrt(2/π) σ n_r) stays below this
BENCH_EM_EPSILON, BENCH_EM_SENSITIVITY = 0.1, 64.0   # the generic EM bench's ε and Δ
CELLS_PER_SEGMENT = 100


class BenchError(RuntimeError):
    """A benchmark party failed or timed out."""


# ---------------------------------------------------------------- driver (no MPyC import)

def _free_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run_parties(worker_args: Sequence[str], parties: int = 3, timeout: float = 180.0,
                module: str = "flaimsim.bench.secure_bench") -> list[dict]:
    """Run ``module``'s worker (``python -m module --bench-worker ...``) in ``parties`` MPyC
    processes; return each party's JSON report (its last stdout line that is JSON)."""
    ports = _free_ports(parties)
    peer_flags = [arg for p in ports for arg in ("-P", f"127.0.0.1:{p}")]
    env = dict(os.environ, MPYC_MIX32_64BIT="1")
    procs = [subprocess.Popen([sys.executable, "-m", module, "--bench-worker",
                               *worker_args, *peer_flags, "-I", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(parties)]
    outputs: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"benchmark parties timed out after {timeout} s") from exc
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    reports = []
    for i, (proc, (out, err)) in enumerate(zip(procs, outputs)):
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise BenchError(f"party {i} failed (rc={proc.returncode}):\n{err[-3000:]}")
        reports.append(json.loads(lines[-1]))
    return reports


def _mean(reports: list[dict], phase: str, key: str) -> float:
    return sum(r["phases"][phase][key] for r in reports) / len(reports)


def adult_shaped_inputs(cells: int, seed: int = 0, data_dir: str | None = None
                        ) -> dict[str, Any]:
    """Counts and model marginals shaped like DistAIM's first scoring round on Adult.

    x: the true answers of every W+ candidate on the full Adult file (the paper's workload:
    64 3-way marginals, seed 123); c: the independence model Π_a M_a / N^(|r|−1) fitted from
    the one-way marginals (AIM's model after its initial one-way round). ``cells`` cells are
    sampled uniformly from all W+ cells (so per-cell means are unbiased), kept grouped by
    candidate.
    """
    import numpy as np

    from flaimsim.mechanisms.data import load_dataset
    from flaimsim.mechanisms.workload import make_workload

    table = load_dataset("adult", data_dir)
    workload = make_workload(table.domain, 3, 64, 123)
    n = table.n
    one = {a: table.marginal((a,)) / n for a in table.domain}
    xs, cs, seg = [], [], []
    for r, clique in enumerate(workload.candidates):
        x = table.marginal(clique).reshape(-1)
        c = n * np.ones(1)
        for a in clique:
            c = np.multiply.outer(c, one[a])
        xs.append(x)
        cs.append(c.reshape(-1))
        seg.append(np.full(x.size, r))
    x_all, c_all, seg_all = np.concatenate(xs), np.concatenate(cs), np.concatenate(seg)
    pick = np.sort(np.random.default_rng(seed).choice(x_all.size, size=min(cells, x_all.size),
                                                      replace=False))
    segments = np.bincount(seg_all[pick])
    return {"x": x_all[pick].astype(np.int64), "c": c_all[pick],
            "segments": segments[segments > 0], "total_cells": int(x_all.size),
            "max_count": n}


def bench_scoring(cells: int = 20000, parties: int = 3, timeout: float = 600.0,
                  shape: str = "adult", frac_bits: int = 0, data_dir: str | None = None
                  ) -> dict[str, Any]:
    """Per-round scoring bytes and seconds per cell (per party, sent), Adult-shaped inputs:
    comparisons priced by the public value (the default) beside the full-length prefix method
    (the previous default) and the SecFxp(32) absolute value, all in the same run."""
    import tempfile

    import numpy as np

    if shape == "adult":
        inputs = adult_shaped_inputs(cells, data_dir=data_dir)
    else:   # uniform toy inputs (no data file needed)
        rng = np.random.default_rng(0)
        segs = [CELLS_PER_SEGMENT] * (cells // CELLS_PER_SEGMENT) + (
            [cells % CELLS_PER_SEGMENT] if cells % CELLS_PER_SEGMENT else [])
        inputs = {"x": rng.integers(0, 300, cells), "c": rng.uniform(0, 300, cells),
                  "segments": np.array(segs), "total_cells": cells,
                  "max_count": BENCH_MAX_COUNT}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "inputs.npz")
        np.savez(path, x=inputs["x"], c=inputs["c"], segments=inputs["segments"],
                 max_count=inputs["max_count"], frac_bits=frac_bits)
        reports = run_parties(["scoring", "--inputs", path], parties, timeout)
    n = int(inputs["x"].size)
    out: dict[str, Any] = {"shape": shape, "cells": n, "candidates": len(inputs["segments"]),
                           "population_cells": inputs["total_cells"], "parties": parties,
                           "frac_bits": frac_bits, "max_count": int(inputs["max_count"])}
    for key, phase in (("priced", "priced_round"), ("full", "full_round"),
                       ("naive", "naive_round"), ("bits_once", "bits_once")):
        out[f"{key}_bytes_per_cell"] = _mean(reports, phase, "bytes") / n
        out[f"{key}_s_per_cell"] = _mean(reports, phase, "seconds") / n
    k = len(inputs["segments"])
    out["l2_round_bytes_per_candidate"] = _mean(reports, "l2_round", "bytes") / k
    out["l2_round_s_per_candidate"] = _mean(reports, "l2_round", "seconds") / k
    out["l2_once_bytes_per_candidate"] = _mean(reports, "l2_once", "bytes") / k
    out["l2_round_bytes_per_cell"] = _mean(reports, "l2_round", "bytes") / n
    out["priced_mults_per_cell"] = reports[0]["mults"] / n
    out["count_type"] = reports[0]["count_type"]
    out["correct"] = all(r.get("correct", False) for r in reports)
    out["bytes_source"] = "wire"
    return out


def bench_em(ks: Sequence[int] = (161, 1000), parties: int = 3, timeout: float = 300.0,
             score_bound: float = BENCH_SCORE_BOUND, epsilon: float = BENCH_EM_EPSILON,
             sensitivity: float = BENCH_EM_SENSITIVITY, setting: str = "generic"
             ) -> list[dict[str, Any]]:
    """Seconds and bytes sent per party for one secure EM draw over k candidates.

    Also the Gumbel noise alone (gumbel_*; the rest of a draw is the scaling and the argmax) and
    report-noisy-max with Exp noise (rnm_*; a different mechanism, zCDP cost ε²/2). The scores'
    public bound and ε/Δ set the widths (``em_fxp_type``, ``comparison_bits``): ``setting``
    names them (generic: 2^31, 0.1, 64; or a data set's DistAIM run, ``cost_setting``).
    """
    reports = run_parties(["em", "--ks", ",".join(str(k) for k in ks),
                           "--score-bound", repr(float(score_bound)),
                           "--epsilon", repr(float(epsilon)),
                           "--sensitivity", repr(float(sensitivity))], parties, timeout)
    return [{"k": k, "parties": parties, "setting": setting, "score_bound": float(score_bound),
             "epsilon": float(epsilon), "sensitivity": float(sensitivity),
             "comparison_bits": reports[0]["comparison_bits"],
             "seconds": _mean(reports, f"em_{k}", "seconds"),
             "bytes_per_party": _mean(reports, f"em_{k}", "bytes"),
             "gumbel_seconds": _mean(reports, f"gumbel_{k}", "seconds"),
             "gumbel_bytes_per_party": _mean(reports, f"gumbel_{k}", "bytes"),
             "rnm_seconds": _mean(reports, f"rnm_{k}", "seconds"),
             "rnm_bytes_per_party": _mean(reports, f"rnm_{k}", "bytes"),
             "fxp_type": reports[0]["fxp_type"]} for k in ks]


def check_fixed_point(parties: int = 3, values: int = 2000, draws: int = 400,
                      timeout: float = 180.0) -> dict[str, Any]:
    """The PRSS truncation and the mechanisms built on it, under ``parties`` real parties.

    - truncation: max and mean of (prss_trunc(a, f) − a/2^f) in units of 2^−f over random and
      extreme a, against the stated bound ``truncation_error_units``;
    - gumbel: the largest |computed − exact| Gumbel value from known randomness (η check);
    - em / rnm: ``draws`` draws on 4 fixed scores (for a chi-square against their laws);
    - bit_decomposition: ``secure_low_bits`` and ``mpc.np_to_bits`` on the same wrapped values
      (s = x + w·2^16, w < 3): whether each gives x's bits exactly, and its bytes sent.
    """
    reports = run_parties(["fixed-point", "--cells", str(values), "--draws", str(draws)],
                          parties, timeout)
    out = dict(reports[0])
    out.pop("party", None)
    out["parties"] = parties
    return out


def bench_measure(cells: int = 20000, sigma: float = 6.0, parties: int = 3,
                  timeout: float = 120.0) -> dict[str, Any]:
    """Distributed Gaussian measurement: cost, and empirical versus reported noise variance."""
    reports = run_parties(["measure", "--cells", str(cells), "--sigma", str(sigma)], parties, timeout)
    first = reports[0]
    return {"cells": cells, "parties": parties, "sigma": sigma,
            "bytes_per_party": _mean(reports, "measure", "bytes"),
            "seconds": _mean(reports, "measure", "seconds"),
            "reported_variance": first["reported_variance"],
            "empirical_variance": first["empirical_variance"],
            "empirical_mean": first["empirical_mean"],
            "threshold": first["threshold"]}


# ---------------------------------------------------------------- worker (inside MPyC)

def _sent_bytes() -> int:
    from mpyc.runtime import mpc
    return sum(p.protocol.nbytes_sent for p in mpc.parties
               if p.pid != mpc.pid and p.protocol is not None)


class _Phases:
    def __init__(self) -> None:
        self.report: dict[str, dict[str, float]] = {}
        self._t = 0.0
        self._b = 0

    def start(self) -> None:
        self._t, self._b = time.perf_counter(), _sent_bytes()

    def stop(self, name: str) -> None:
        self.report[name] = {"seconds": time.perf_counter() - self._t,
                             "bytes": float(_sent_bytes() - self._b)}


async def _worker_scoring(path: str) -> dict[str, Any]:
    import numpy as np
    from mpyc.runtime import mpc

    from flaimsim.parties.distaim.secure_scoring import (count_secint, decompose_counts,
                                                         less_than_pieces, secure_l1_bits,
                                                         secure_l1_bits_full, secure_l1_naive)
    from flaimsim.parties.distaim.plan import round_public_marginal
    inputs = np.load(path)                       # the same public inputs at every party
    x, c, segments = inputs["x"], inputs["c"], [int(v) for v in inputs["segments"]]
    max_count, f = int(inputs["max_count"]), int(inputs["frac_bits"])
    cells = x.size
    secint, fxp = count_secint(max_count, f), mpc.SecFxp(32)
    phases = _Phases()
    await mpc.start()
    x_int = mpc.input(secint.array(x if mpc.pid == 0 else np.zeros(cells, np.int64)), senders=0)
    x_fxp = mpc.input(fxp.array(x.astype(float) if mpc.pid == 0 else np.zeros(cells)), senders=0)
    await mpc.gather(x_int, x_fxp)
    await mpc.barrier()
    phases.start()
    bits = decompose_counts(x_int, max_count, f)
    await mpc.gather(bits.bits, bits.below)
    phases.stop("bits_once")
    results = {}
    for name, fn in (("priced_round", secure_l1_bits), ("full_round", secure_l1_bits_full)):
        await mpc.barrier()
        phases.start()
        results[name] = fn(bits, c, segments)
        await mpc.gather(results[name])
        phases.stop(name)
    await mpc.barrier()
    phases.start()
    l1_naive = secure_l1_naive(x_fxp, c, segments)
    await mpc.gather(l1_naive)
    phases.stop("naive_round")
    starts = np.r_[0, np.cumsum(segments)[:-1]]
    want = np.add.reduceat(np.abs(x * 2 ** f - round_public_marginal(c, f)), starts)
    correct = True
    for name in ("priced_round", "full_round"):
        got = np.asarray(await mpc.output(results[name]), dtype=np.int64)
        correct = correct and np.array_equal(got, want)
    # L2 (--score l2): counts in the L2 type; Σx² once, a square root per candidate per round
    from flaimsim.parties.distaim.secure_em import em_fxp_type
    from flaimsim.parties.distaim.secure_l2 import l2_count_secint, secure_l2_distances, sum_squares
    l2type = l2_count_secint(max_count, f)
    x_l2 = mpc.input(l2type.array(x if mpc.pid == 0 else np.zeros(cells, np.int64)), senders=0)
    await mpc.gather(x_l2)
    await mpc.barrier()
    phases.start()
    squares = sum_squares(x_l2, segments)
    await mpc.gather(squares)
    phases.stop("l2_once")
    await mpc.barrier()
    phases.start()
    l2 = secure_l2_distances(x_l2, squares, c, segments, max_count, f, em_fxp_type(2.0 ** 31))
    await mpc.gather(l2)
    phases.stop("l2_round")
    got_l2 = np.asarray(await mpc.output(l2), dtype=float)
    d = (x * 2 ** f - round_public_marginal(c, f)).astype(float)
    want_l2 = np.sqrt(np.add.reduceat(d * d, starts)) / 2 ** f
    correct = correct and bool(np.max(np.abs(got_l2 - want_l2)) < 1e-3)
    got_naive = np.asarray(await mpc.output(l1_naive), dtype=float)
    correct = correct and np.allclose(got_naive, np.add.reduceat(np.abs(x - c), starts),
                                      atol=0.01 * cells)
    mults = less_than_pieces(bits, round_public_marginal(c, f)).mults
    await mpc.shutdown()
    return {"phases": phases.report, "count_type": secint.__name__, "correct": bool(correct),
            "mults": mults}


async def _worker_em(ks: list[int], score_bound: float, epsilon: float,
                     sensitivity: float) -> dict[str, Any]:
    import numpy as np
    from mpyc.runtime import mpc

    from flaimsim.parties.distaim.secure_em import (em_fxp_type, secure_exponential_mechanism, secure_gumbel,
                                            secure_report_noisy_max)
    from flaimsim.parties.distaim.secure_em import comparison_bits
    fxp = em_fxp_type(score_bound)
    phases = _Phases()
    await mpc.start()
    for k in ks:
        u = np.random.default_rng(k).normal(0.0, 1000.0, k)
        scores = mpc.input(fxp.array(u if mpc.pid == 0 else np.zeros(k)), senders=0)
        await mpc.gather(scores)
        await mpc.barrier()
        phases.start()
        await secure_exponential_mechanism(scores, epsilon, sensitivity)
        phases.stop(f"em_{k}")
        await mpc.barrier()
        phases.start()
        await mpc.gather(secure_gumbel(fxp, k))     # the noise alone, for the cost split
        phases.stop(f"gumbel_{k}")
        await mpc.barrier()
        phases.start()
        await secure_report_noisy_max(scores, epsilon, sensitivity)
        phases.stop(f"rnm_{k}")
    await mpc.shutdown()
    return {"phases": phases.report, "fxp_type": fxp.__name__,
            "comparison_bits": comparison_bits(fxp, epsilon, sensitivity)}


async def _worker_measure(cells: int, sigma: float) -> dict[str, Any]:
    import numpy as np
    from mpyc.runtime import mpc

    from flaimsim.parties.distaim.secure_noise import secure_gaussian_measure
    from flaimsim.parties.distaim.secure_scoring import count_secint
    x = np.random.default_rng(0).integers(0, 500, cells)
    secint = count_secint(BENCH_MAX_COUNT)
    phases = _Phases()
    await mpc.start()
    counts = mpc.input(secint.array(x if mpc.pid == 0 else np.zeros(cells, np.int64)), senders=0)
    await mpc.gather(counts)
    await mpc.barrier()
    phases.start()
    out = await secure_gaussian_measure(counts, sigma)
    phases.stop("measure")
    await mpc.shutdown()
    noise = out.values - x
    return {"phases": phases.report, "reported_variance": out.variance, "threshold": out.threshold,
            "empirical_variance": float(noise.var(ddof=1)), "empirical_mean": float(noise.mean())}


def known_gumbel_randomness(rng: Any, frac_bits: int, n: int = 120
                            ) -> tuple[Any, Any, Any, Any]:
    """Random and extreme randomness for ``gumbel_from_randomness`` (K, J bits, mantissa) and
    the exact −ln(K ln2 − ln(1 − V/2)) it must approximate (the η checks)."""
    import math

    import numpy as np

    from flaimsim.parties.distaim.plan import GEOMETRIC_BITS as b
    f = frac_bits
    k = np.r_[0, 0, 0, b, 1, 1, rng.integers(0, 6, n - 6)]
    j = np.r_[0, b, 30, 0, 0, 0, rng.integers(0, 12, n - 6)]
    mant = np.r_[0, 2 ** f - 1, 5, 0, 2 ** f - 1, 0, rng.integers(0, 2 ** f, n - 6)]

    def first_one_bits(g: np.ndarray) -> np.ndarray:
        bits = (rng.random((n, b)) < 0.5).astype(np.int64)
        for row, pos in enumerate(g):
            bits[row, :pos] = 0
            if pos < b:
                bits[row, pos] = 1
        return bits

    v = 2.0 ** -(j + 1.0) * (1 + mant * 2.0 ** -f)
    exact = -np.log(k * math.log(2) - np.log1p(-v / 2))
    return first_one_bits(k), first_one_bits(j), mant.astype(np.int64), exact


async def _worker_fixed_point(values: int, draws: int) -> dict[str, Any]:
    import fractions

    import numpy as np
    from mpyc.runtime import mpc

    from flaimsim.parties.distaim.fixed_point import prss_trunc, truncation_error_units
    from flaimsim.parties.distaim.secure_em import (em_fxp_type, gumbel_from_randomness,
                                                noise_fxp, randomness_secint,
                                                secure_exponential_mechanism_batch,
                                                secure_report_noisy_max)
    await mpc.start()
    fxp = em_fxp_type(1e4)
    f = fxp.frac_length
    rng = np.random.default_rng(11)               # public test inputs, the same at every party
    top = 2 ** (fxp.bit_length + f - 1) - 1
    raw = np.r_[0, 1, -1, top, -top, 2 ** f - 1, -(2 ** f) + 1,
                rng.integers(-2 ** 40, 2 ** 40, values - 7)].astype(object)
    field = fxp.field
    shares = mpc.input(fxp.array(field.array(raw % field.order) if mpc.pid == 0  # raw values
                                 else field.array(np.zeros(values, dtype=object))), senders=0)
    got = await mpc.output(prss_trunc(shares, f), raw=True)   # exact field values
    p = field.order
    got_int = [int(v) - p if int(v) > p // 2 else int(v) for v in got.value]
    err = np.array([float(fractions.Fraction(g) - fractions.Fraction(int(r), 2 ** f))
                    for g, r in zip(got_int, raw)])

    # Gumbel from known randomness in the noise type (as the single-party test does).
    k_bits, j_bits, mantissa, want = known_gumbel_randomness(rng, f)
    secint = randomness_secint()
    gum = await mpc.output(gumbel_from_randomness(secint.array(k_bits), secint.array(j_bits),
                                                  secint.array(mantissa), noise_fxp(f)))
    # L2 distances (their square root uses the same products), against the plain formula.
    from flaimsim.parties.distaim.plan import l2_distances
    from flaimsim.parties.distaim.secure_l2 import l2_count_secint, secure_l2_distances, sum_squares
    n_max, segments = 48842, [1, 1, 4, 60, 3, 300, 2]
    x = rng.integers(0, 40, sum(segments))
    c = rng.uniform(0, 40, x.size) * (rng.random(x.size) < 0.5)
    x[0], c[0], x[1], c[1] = n_max, 0.0, 0, 0.0
    x[6:66], c[6:66] = 0, n_max / 60
    xs = mpc.input(l2_count_secint(n_max, 2).array(x if mpc.pid == 0 else np.zeros_like(x)),
                   senders=0)
    dist = await mpc.output(secure_l2_distances(xs, sum_squares(xs, segments), c, segments,
                                                n_max, 2, em_fxp_type(2.0 ** 31)))
    l2_error = float(np.max(np.abs(np.asarray(dist, float) - l2_distances(x, c, segments, 2))))
    # Bit decomposition (ripple carry) against MPyC's np_to_bits: the same bits, fewer bytes.
    from flaimsim.parties.mpc.bit_decomposition import secure_low_bits
    l_bits = 16
    wrapped = rng.integers(0, 1 << l_bits, values) + (1 << l_bits) * rng.integers(0, 3, values)
    wrapped[:4] = [0, (1 << l_bits) - 1, 3 << l_bits, (3 << l_bits) - 1]
    s_in = mpc.input(mpc.SecInt(20).array(wrapped if mpc.pid == 0 else np.zeros_like(wrapped)),
                     senders=0)
    await mpc.gather(s_in)
    decompositions = {}
    for name, fn in (("ripple", lambda a: secure_low_bits(a, l_bits)),
                     ("mpyc", lambda a: mpc.np_to_bits(a, l=l_bits))):
        await mpc.barrier()
        before = _sent_bytes()
        got_bits = await mpc.gather(fn(s_in))
        decompositions[name] = {"bytes": _sent_bytes() - before}
        opened = np.asarray(await mpc.output(mpc.SecInt(20).array(got_bits)), dtype=np.int64)
        decompositions[name]["exact"] = bool(np.array_equal(
            opened, (wrapped[:, None] >> np.arange(l_bits)) & 1))
    u = np.array([0.0, 1.5, 3.0, -2.0])
    em = await secure_exponential_mechanism_batch(fxp.array(u), 1.0, 0.5, draws)
    rnm = await secure_report_noisy_max(fxp.array(u), 1.0, 0.5, draws)
    await mpc.shutdown()
    return {"truncation_max_abs_units": float(np.max(np.abs(err))),
            "truncation_mean_units": float(np.mean(err)),
            "truncation_bound_units": truncation_error_units(),
            "gumbel_max_abs_error": float(np.max(np.abs(np.asarray(gum, float) - want))),
            "l2_max_abs_error": l2_error, "bit_decomposition": decompositions,
            "scores": u.tolist(), "epsilon": 1.0, "sensitivity": 0.5,
            "em_draws": [int(i) for i in em], "rnm_draws": [int(i) for i in rnm]}


def _worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench-worker", choices=["scoring", "em", "measure", "fixed-point"], required=True)
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--inputs", default=None)
    parser.add_argument("--ks", default="161,1000")
    parser.add_argument("--sigma", type=float, default=6.0)
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--score-bound", type=float, default=BENCH_SCORE_BOUND)
    parser.add_argument("--epsilon", type=float, default=BENCH_EM_EPSILON)
    parser.add_argument("--sensitivity", type=float, default=BENCH_EM_SENSITIVITY)
    args, _ = parser.parse_known_args(argv)    # the rest (-P, -I) is MPyC's
    from mpyc.runtime import mpc
    if args.bench_worker == "scoring":
        report = mpc.run(_worker_scoring(args.inputs))
    elif args.bench_worker == "em":
        report = mpc.run(_worker_em([int(k) for k in args.ks.split(",")], args.score_bound,
                                    args.epsilon, args.sensitivity))
    elif args.bench_worker == "fixed-point":
        report = mpc.run(_worker_fixed_point(args.cells, args.draws))
    else:
        report = mpc.run(_worker_measure(args.cells, args.sigma))
    print_worker_report(report)


def print_worker_report(report: dict[str, Any]) -> None:
    """A worker's last stdout line: its report as JSON, with its party id (run_parties)."""
    from mpyc.runtime import mpc
    report["party"] = mpc.pid
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    if "--bench-worker" in sys.argv:
        _worker_main(sys.argv[1:])
    else:
        print(json.dumps({"scoring": bench_scoring(), "em": bench_em(), "measure": bench_measure()},
                         indent=2))
