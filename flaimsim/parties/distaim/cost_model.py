"""The calibrated cost model behind ``--mpc model``: bytes and messages of each DistAIM
server step, per ordered server pair, measured with the real MPyC code at small sizes.

Each step's traffic is linear in its size features (fixed-width encoding makes every message
size a fixed function of the array shapes):

=========  ========================  ==========================================
step       features                  why
=========  ========================  ==========================================
decompose  1, cells, chunks          one bit decomposition per cell, in chunks (each chunk
                                     a fixed number of messages)
score      1, k, mults, steps        the comparisons priced by the public value: mults
                                     (Σ_cells h − max(t0, f), public, from
                                     ``secure_scoring.comparison_plan``) multiplications in
                                     ``steps`` vectorised messages; per-candidate inner
                                     product and conversion
select     1, k, ceil(log2 k)        Gumbel noise per candidate; argmax tournament
select-rnm 1, k, ceil(log2 k)        the same with Exp noise (``--em rnm``)
measure    1, cells                  noise inputs and one opening per cell
to_shamir  1, cells                  additive or compact pieces → Shamir conversion
unwrap     1, cells                  L2 with compact shares: bits of s, once
sum-squares 1, k                     L2: Σx² per candidate, once per contributor set
score-l2   1, k                      L2: a secure square root per candidate
=========  ========================  ==========================================

Rounds (the critical-path depth of a step, :mod:`flaimsim.parties.rounds`) are fitted the
same way from the measured steps' ``comm_rounds``, on :data:`ROUND_FEATURES` (a
multiplication layer is a round whatever its width, so depth follows the chains: chunks,
log2 k tournament levels; a priced score is one round per comparison step, :data:`ROUND_KNOWN`,
plus a fitted constant); :meth:`CostTable.charge` puts them on the step's first row.

A table is measured by :func:`calibrate` (``flaimsim calibrate``) for one setting (servers m,
count bit length, fixed-point type of the scores) and stored as JSON with the MPyC version;
:func:`load_or_calibrate` caches tables under ``$FLAIMSIM_CACHE`` (default
``~/.cache/flaimsim``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import mpyc
import numpy as np

from flaimsim.mechanisms.scores import Score
from flaimsim.parties.distaim.engines import MpcEngine
from flaimsim.parties.distaim.options import DistAimOptions, Selection
from flaimsim.parties.distaim.plan import chunk_count, count_bits_for, em_score_bits, select_bits
from flaimsim.parties.ledger import Ledger, server
from flaimsim.parties.mpc.sharing_modes import Sharing
from flaimsim.safe_output import write_text

# score: "dots" counts the candidates with at least one priced cell (each costs one inner
# product reshare; a candidate whose cells all compare publicly costs none).
FEATURES = {"decompose": ("1", "cells", "chunks"), "score": ("1", "k", "dots", "mults", "steps"),
            "select": ("1", "k", "log2k"), "select-rnm": ("1", "k", "log2k"),
            "measure": ("1", "cells"), "to_shamir": ("1", "cells"),
            "unwrap": ("1", "cells"), "sum-squares": ("1", "k"), "score-l2": ("1", "k")}
# Rounds follow the chains, not the widths: the features a step's depth is fitted on.
ROUND_FEATURES = {"decompose": ("1", "chunks"), "score": ("1",),
                  "select": ("1", "log2k"), "select-rnm": ("1", "log2k"), "measure": ("1",),
                  "to_shamir": ("1",), "unwrap": ("1",), "sum-squares": ("1",),
                  "score-l2": ("1",)}
# Rounds known exactly per unit of a feature: the priced comparisons multiply one bit position
# after the other (``secure_scoring.less_than_pieces``), one round each; only the rest is fitted
# (a free slope, on a few noisy samples of small step counts, extrapolated badly).
ROUND_KNOWN = {"score": "steps"}
FRAME_HEADER_BYTES = 14
CALIBRATION_CHUNK = 100     # cells per decompose chunk while calibrating (see calibrate)
SEED_BYTES = 16


def _features(op: str, cells: int = 0, k: int = 0, mults: int = 0, steps: int = 0,
              dots: int = 0, chunks: int = 0, names: Sequence[str] | None = None
              ) -> np.ndarray:
    values = {"1": 1.0, "cells": float(cells), "k": float(k), "mults": float(mults),
              "steps": float(steps), "dots": float(dots), "chunks": float(chunks),
              "log2k": float(math.ceil(math.log2(k))) if k > 1 else 0.0}
    return np.array([values[f] for f in (FEATURES[op] if names is None else names)])


@dataclass(frozen=True)
class CostTable:
    """Per op and ordered pair "i->j": coefficients for bytes and messages."""

    m: int
    max_count: int
    score_bound: float
    count_bits: int
    element_bytes: int
    mpyc_version: str
    code_version: str
    coefficients: dict[str, dict[str, dict[str, list[float]]]]  # op -> kind -> pair -> coef
    max_relative_residual: float = 0.0
    frac_bits: int = 0
    score: str = "l1"
    select_bits: int = 0   # secure_em.comparison_bits of the select rows (the argmax's width)
    sec_param: int | None = None   # MPyC's -K the servers ran with (None: its default)

    def predict(self, op: str, cells: int = 0, k: int = 0, mults: int = 0, steps: int = 0,
                dots: int = 0, chunks: int = 0) -> dict[tuple[int, int], tuple[int, int]]:
        """(bytes, messages) per ordered server pair for one step of the given size."""
        x = _features(op, cells, k, mults, steps, dots, chunks)
        out = {}
        for pair, coef in self.coefficients[op]["bytes"].items():
            i, j = (int(v) for v in pair.split("->"))
            msgs = self.coefficients[op]["messages"][pair]
            out[(i, j)] = (max(int(round(float(x @ np.array(coef)))), 0),
                           max(int(round(float(x @ np.array(msgs)))), 0))
        return out

    def predict_rounds(self, op: str, cells: int = 0, k: int = 0, mults: int = 0,
                       steps: int = 0, dots: int = 0, chunks: int = 0) -> int:
        """Communication rounds (critical-path depth) of one step of the given size."""
        coef = self.coefficients[op].get("rounds", {}).get("depth")
        if coef is None:
            return 0
        x = _features(op, cells, k, mults, steps, dots, chunks, ROUND_FEATURES[op])
        known = ({"steps": steps, "chunks": chunks}[ROUND_KNOWN[op]] if op in ROUND_KNOWN
                 else 0)
        return max(int(round(float(x @ np.array(coef)))) + int(known), 0)

    def charge(self, ledger: Ledger, round: int, phase: str, op: str, cells: int = 0,
               k: int = 0, mults: int = 0, steps: int = 0, dots: int = 0,
               chunks: int = 0) -> None:
        """The step's rows, ``modelled``; its rounds go on the first row with traffic."""
        rounds = self.predict_rounds(op, cells, k, mults, steps, dots, chunks)
        for (i, j), (nbytes, msgs) in sorted(self.predict(op, cells, k, mults, steps, dots,
                                                          chunks).items()):
            ledger.add(round, phase, server(i), server(j), nbytes, msgs, "modelled",
                       rounds if nbytes or msgs else 0)
            rounds = 0 if nbytes or msgs else rounds

    def upload_bytes_per_server(self, sharing: Sharing, cells: int) -> list[int]:
        """A client's upload to each server: the transport's framing, exactly."""
        full = cells * self.element_bytes + FRAME_HEADER_BYTES
        if sharing == Sharing.COMPACT:   # b = bitlen(public bound) bits per value, packed
            b = int(self.max_count).bit_length()
            full = (cells * b + 7) // 8 + FRAME_HEADER_BYTES
        elif sharing == Sharing.SHAMIR:
            return [full] * self.m
        return [full] + [SEED_BYTES + FRAME_HEADER_BYTES] * (self.m - 1)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1)

    @staticmethod
    def from_json(text: str) -> "CostTable":
        return CostTable(**json.loads(text))

    @property
    def key(self) -> str:
        return cache_key(self.m, self.max_count, self.score_bound, self.frac_bits, self.score,
                         self.select_bits, self.sec_param)


def select_bits_for(score_bound: float, select_epsilon: float) -> int:
    """The secure argmax's integer width for these scores at ε = ``select_epsilon``, Δ = 1."""
    return select_bits(score_bound, select_epsilon, 1.0)


def fxp_bits(score_bound: float) -> int:
    return em_score_bits(score_bound)


def code_version() -> str:
    """Fingerprint of the secure-step code a table was measured with (tables go stale with it):
    every module of this package and the server runtime's pieces that carry DistAIM's traffic."""
    here = Path(__file__).parent
    mpc = here.parent / "mpc"
    digest = hashlib.sha256()
    for path in sorted(here.glob("*.py")) + [mpc / name for name in (
            "bit_decomposition.py", "narrow_field.py", "vector_resharing.py", "server.py",
            "input_sharing.py", "wire.py")]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cache_key(m: int, max_count: int, score_bound: float, frac_bits: int = 0,
              score: str = "l1", select_bits: int = 0, sec_param: int | None = None) -> str:
    bits = count_bits_for(max_count, frac_bits, score)
    return (f"m{m}-b{int(max_count).bit_length()}-l{bits}-f{frac_bits}-{score}"
            f"-fxp{fxp_bits(score_bound)}"
            f"-cmp{select_bits}"
            + (f"-k{sec_param}" if sec_param is not None else "") +
            f"-{code_version()}")


def _pair_totals(ledger: Ledger) -> dict[str, tuple[int, int]]:
    out: dict[str, list[int]] = {}
    for r in ledger.rows:
        i, j = r.sender.split(":")[1], r.receiver.split(":")[1]
        acc = out.setdefault(f"{i}->{j}", [0, 0])
        acc[0] += r.bytes
        acc[1] += r.messages
    return {k: (v[0], v[1]) for k, v in out.items()}


def _segments(cells: int, k: int) -> list[int]:
    base, extra = divmod(cells, k)
    return [base + (1 if i < extra else 0) for i in range(k)]


def calibrate(options: DistAimOptions = DistAimOptions(max_count=50_000),
              score_bound: float = 1e7, select_epsilon: float = 1.0,
              cell_sizes: Sequence[int] = (48, 192, 768),
              select_ks: Sequence[int] = (4, 16, 64, 161, 256)) -> CostTable:
    """Measure every step with real server processes and fit the linear cost per pair.

    The table serves every sharing mode and both selection mechanisms of ``options``' m, N,
    score and f: shares are measured compact (so that the conversion to Shamir form is
    measured) and the select step with each mechanism. The score step is measured at several
    model scales (mostly-zero to large values), so that its multiplications vary
    independently of the number of cells and candidates.
    """
    m, max_count, frac_bits, score = (options.m, options.max_count, options.frac_bits,
                                      options.score)
    samples: dict[str, list[tuple[np.ndarray, dict[str, tuple[int, int]]]]] = {
        op: [] for op in FEATURES}
    depths: dict[str, list[int]] = {op: [] for op in FEATURES}   # comm_rounds per sample
    rng = np.random.default_rng(0)
    element_bytes = 0

    def run(engine: MpcEngine, op: str, x: np.ndarray, fn) -> None:
        engine.ledger = Ledger()
        fn()
        samples[op].append((x, _pair_totals(engine.ledger)))
        depths[op].append(engine.ledger.comm_rounds)

    def score_features(engine: MpcEngine) -> np.ndarray:
        st = engine.steps[-1]
        return _features("score", st.cells, st.k, st.mults, st.steps, st.dots)

    for n_cal, cells in enumerate(cell_sizes):
        # Compact sharing (the default) so that the conversion to Shamir form is measured.
        engine = MpcEngine(Ledger(), replace(options, sharing=Sharing.COMPACT))
        try:
            element_bytes = engine.element_bytes
            vectors = {k: rng.integers(0, max(1, max_count // (4 * cells)) + 1, cells)
                       for k in range(2)}
            engine.ledger = Ledger()
            engine.share(0, sorted(vectors), vectors.__getitem__)
            conversion = Ledger(rows=[r for r in engine.ledger.rows
                                      if r.sender.startswith("server")])
            samples["to_shamir"].append((_features("to_shamir", cells),
                                         _pair_totals(conversion)))
            depths["to_shamir"].append(conversion.comm_rounds)
            # A model marginal sums to about the record count: keep every segment's within N.
            top = max_count / cells
            ks = sorted({1, 4, 16} | ({64} if cells >= 512 else set()))
            if score is Score.L2:
                run(engine, "unwrap", _features("unwrap", cells), lambda: engine.unwrap(0))
                for k in ks:
                    segs = _segments(cells, k)
                    offsets = np.cumsum([0] + segs[:-1])
                    run(engine, "sum-squares", _features("sum-squares", k=k),
                        lambda: engine.sum_squares(0, segs))
                    public_c = rng.uniform(0, top, cells)
                    run(engine, "score-l2", _features("score-l2", k=k), lambda: engine.score(
                        0, offsets, segs, public_c, 1.0, [1.0] * k, score_bound))
            else:
                # Small chunks, so that the chunk count varies apart from the cells; the
                # largest size is measured once more as a single chunk.
                chunkings = [CALIBRATION_CHUNK] + ([cells] if cells == max(cell_sizes) else [])
                for chunk in chunkings:
                    engine.decompose_chunk = chunk
                    run(engine, "decompose",
                        _features("decompose", cells, chunks=chunk_count(cells, chunk)),
                        lambda: engine.decompose(0))
            for i, k in enumerate(ks if score is Score.L1 else []):
                segs = _segments(cells, k)
                offsets = np.cumsum([0] + segs[:-1])
                for scale in (top, top / 30, 3.0):
                    public_c = rng.uniform(0, scale, cells) * (rng.random(cells) < 0.7)
                    engine.ledger = Ledger()
                    engine.score(0, offsets, segs, public_c, 1.0, [1.0] * k, score_bound)
                    samples["score"].append((score_features(engine),
                                             _pair_totals(engine.ledger)))
                    depths["score"].append(engine.ledger.comm_rounds)
            run(engine, "measure", _features("measure", cells),
                lambda: engine.measure(0, 0, cells, 5.0))
            public_c = rng.uniform(0, top, cells)
            if cells == max(cell_sizes):
                for em in Selection:
                    op = em.cost_op
                    engine.options = replace(engine.options, em=em)
                    for k in select_ks:
                        segs = _segments(cells, k)
                        offsets = np.cumsum([0] + segs[:-1])
                        engine.ledger = Ledger()
                        if score is Score.L2:
                            engine.sum_squares(0, segs)
                        engine.score(0, offsets, segs, public_c, 1.0, [1.0] * k, score_bound)
                        run(engine, op, _features(op, 0, k),
                            lambda: engine.select(0, select_epsilon, 1.0))
        finally:
            engine.close()

    coefficients: dict[str, dict[str, dict[str, list[float]]]] = {}
    worst = 0.0
    for op, rows in samples.items():
        if not rows:
            continue
        X = np.array([x for x, _ in rows])
        pairs = sorted({p for _, tot in rows for p in tot})
        coefficients[op] = {"bytes": {}, "messages": {}}
        for pair in pairs:
            for kind, idx in (("bytes", 0), ("messages", 1)):
                y = np.array([tot.get(pair, (0, 0))[idx] for _, tot in rows], dtype=float)
                coef, *_ = np.linalg.lstsq(X, y, rcond=None)
                coefficients[op][kind][pair] = [float(c) for c in coef]
                if kind == "bytes":
                    fit = X @ coef
                    worst = max(worst, float(np.max(np.abs(fit - y) / np.maximum(y, 1))))
        Xr = X[:, [FEATURES[op].index(f) for f in ROUND_FEATURES[op]]]
        y = np.array(depths[op], dtype=float)
        if op in ROUND_KNOWN:
            y = y - X[:, FEATURES[op].index(ROUND_KNOWN[op])]
        coef, *_ = np.linalg.lstsq(Xr, y, rcond=None)
        coefficients[op]["rounds"] = {"depth": [float(c) for c in coef]}
    return CostTable(m, int(max_count), float(score_bound),
                     count_bits_for(max_count, frac_bits, score), element_bytes,
                     mpyc.__version__, code_version(), coefficients, worst, int(frac_bits),
                     score.value, select_bits_for(score_bound, select_epsilon),
                     options.sec_param)


def cache_dir() -> Path:
    return Path(os.environ.get("FLAIMSIM_CACHE", Path.home() / ".cache" / "flaimsim"))


def load_or_calibrate(options: DistAimOptions, score_bound: float, select_epsilon: float = 1.0,
                      path: str | Path | None = None) -> tuple[CostTable, bool]:
    """The cached table for this setting, or a fresh calibration (then cached).

    Returns the table and whether it was calibrated now.
    """
    key = cache_key(options.m, options.max_count, score_bound, options.frac_bits,
                    options.score, select_bits_for(score_bound, select_epsilon),
                    options.sec_param)
    target = Path(path) if path else cache_dir() / f"cost-{key}.json"
    if target.exists():
        table = CostTable.from_json(target.read_text())
        if table.mpyc_version == mpyc.__version__ and table.key == key:
            return table, False
    table = calibrate(options, score_bound, select_epsilon)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text(target, table.to_json())  # atomic: a parallel run reads old or new, whole
    return table, True
