"""DistAIM's secure steps as compute-server commands (loaded with ``--load`` into
:mod:`flaimsim.parties.mpc.server`).

The servers hold the secret aggregate x (all W+ answers of the contributing clients,
concatenated in candidate order) and run, each in its own command so that wire counters
taken around a command charge one phase:

- ``distaim_decompose``: bits of x and the prefix products Z_h, once per contributor set;
  unwraps a compact sum on the way (phase ``score``);
- ``distaim_score``: secret L1 scores of the kept candidates against the public model
  marginals, by comparisons priced by the public value (phase ``score``);
- ``distaim_unwrap``, ``distaim_sum_squares``, ``distaim_score_l2``: the same for
  ``--score l2`` (phase ``score``);
- ``distaim_select``: secure exponential mechanism or report-noisy-max, opens the chosen
  index only (``select``);
- ``distaim_measure``: Gaussian noise input by every server, opens x_r + noise only
  (``measure``).

Every opening is appended to the reveal log: the only values ever opened are selected
indices and noisy marginals.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from flaimsim.parties.mpc.bit_decomposition import PackedShares
from flaimsim.parties.mpc.distaim_engine import DECOMPOSE_CHUNK_CELLS, chunk_count
from flaimsim.parties.mpc.server import CommandError, ServerState, command
from flaimsim.parties.mpc.secure_em import (em_fxp_type, em_scale, secure_exponential_mechanism,
                                            secure_report_noisy_max)
from flaimsim.mechanisms.scores import score_from_distance
from flaimsim.parties.mpc.input_sharing import unwrap
from flaimsim.parties.mpc.secure_l2 import secure_l2_distances, sum_squares
from flaimsim.parties.mpc.secure_noise import secure_gaussian_measure
from flaimsim.parties.mpc.secure_scoring import SecretBits, decompose_counts, secure_scores_bits

DEFAULT_FRAC_BITS = 0


def _kept_cells(offsets: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
    return np.concatenate([np.arange(o, o + n) for o, n in zip(offsets, lengths)])


@command("distaim_decompose")
async def distaim_decompose(state: ServerState, name: str, max_count: int,
                            frac_bits: int = DEFAULT_FRAC_BITS,
                            chunk: int = DECOMPOSE_CHUNK_CELLS) -> dict[str, Any]:
    """Bit-decompose secret counts ``name`` (values in 0..max_count) for the scoring rounds,
    with the prefix products Z_h. A wrapped compact sum s = x + w·2^b (``to_shamir`` with
    ``reduce=False``) is decomposed at b = bitlen(max_count) bits, which are x's bits; ``name``
    then holds x = Σ 2^j bit_j (the measure step needs x itself).

    Runs in chunks of ``chunk`` cells, one after the other, and keeps the bits and Z_h packed
    (:class:`PackedShares`): at 2.87 M cells the transients of one chunk stay small."""
    wrapped = state.extras.get("wrapped", {})
    width = wrapped.get(name)
    if width is not None and int(width) != int(max_count).bit_length():
        raise CommandError(f"{name} wraps at {width} bits but max_count {max_count} needs "
                           f"{int(max_count).bit_length()}")
    if int(chunk) < 1:
        raise CommandError(f"chunk must be >= 1 cells, got {chunk}")
    counts = state.array(name)
    n, l = int(counts.shape[0]), int(max_count).bit_length()
    stype = type(counts).sectype
    packed_bits = PackedShares.empty((n, l), stype)
    packed_below = PackedShares.empty((l + 1, n), stype)
    pieces = []
    for lo in range(0, n, int(chunk)):
        hi = min(n, lo + int(chunk))
        part = decompose_counts(counts[lo:hi], int(max_count), int(frac_bits),
                                wrapped=width is not None)
        bits, below, x = await state.runtime.gather(part.bits, part.below, part.counts)
        packed_bits.put(slice(lo, hi), bits)
        packed_below.put((slice(None), slice(lo, hi)), below)
        if width is not None:
            pieces.append(x.value)
    if width is not None:      # x = Σ 2^j bit_j, chunk by chunk; else x is the input itself
        counts = stype.array(stype.field.array(
            np.concatenate(pieces) if pieces else np.zeros(0, dtype=object), check=False))
    bits = SecretBits(counts=counts, bits=packed_bits, count_bits=l, frac_bits=int(frac_bits),
                      below=packed_below)
    if width is not None:
        state.arrays[name] = bits.counts
        wrapped.pop(name)
    state.extras["distaim_bits"] = bits
    state.extras["distaim_counts"] = name
    return {"cells": bits.n_cells, "count_bits": bits.count_bits,
            "chunks": chunk_count(n, int(chunk))}


@command("distaim_unwrap")
async def distaim_unwrap(state: ServerState, name: str, max_count: int) -> dict[str, Any]:
    """Reduce a wrapped compact sum s = x + w·2^b to x (one bit decomposition); the L2 score
    needs x but no bits (the L1 score's ``distaim_decompose`` unwraps for free)."""
    width = state.extras.get("wrapped", {}).pop(name, None)
    if width is None:
        raise CommandError(f"{name!r} is not a wrapped compact sum")
    if int(width) != int(max_count).bit_length():
        raise CommandError(f"{name} wraps at {width} bits, max_count needs "
                           f"{int(max_count).bit_length()}")
    x, _ = unwrap(state.runtime, state.array(name), int(width))
    await state.runtime.gather(x)
    state.arrays[name] = x
    return {"cells": int(x.shape[0])}


@command("distaim_sum_squares")
async def distaim_sum_squares(state: ServerState, name: str, lengths: list[int]
                              ) -> dict[str, Any]:
    """Σ x² per answered candidate (one reshare each), once per contributor set (L2 score)."""
    if name in state.extras.get("wrapped", {}):
        raise CommandError(f"{name!r} is wrapped: distaim_unwrap first")
    squares = sum_squares(state.array(name), [int(n) for n in lengths])
    await state.runtime.gather(squares)
    state.extras["distaim_squares"] = squares
    state.extras["distaim_counts"] = name
    return {"candidates": len(lengths)}


@command("distaim_score_l2")
async def distaim_score_l2(state: ServerState, offsets: list[int], lengths: list[int],
                           candidates: list[int], public_c: np.ndarray, sigma: float,
                           weights: list[float], score_bound: float, max_count: int,
                           frac_bits: int = DEFAULT_FRAC_BITS) -> dict[str, Any]:
    """Secret L2 scores u_r = w_r(‖x_r − round_f(c_r)‖₂ − E‖N(0, σ²I)‖₂) (``secure_l2``)."""
    squares = state.extras.get("distaim_squares")
    if squares is None:
        raise CommandError("distaim_score_l2 before distaim_sum_squares")
    cells = _kept_cells(offsets, lengths)
    if len(public_c) != cells.size:
        raise CommandError(f"public marginal has {len(public_c)} cells, kept cells {cells.size}")
    x = state.array(state.extras["distaim_counts"])
    fxp = em_fxp_type(float(score_bound))
    dist = secure_l2_distances(x[cells], squares[np.asarray(candidates, dtype=np.int64)],
                               np.asarray(public_c, dtype=float), lengths, int(max_count),
                               int(frac_bits), fxp)
    w = np.asarray(weights)
    w = w.astype(np.int64) if np.all(w == np.rint(w)) else w
    scores = score_from_distance("l2", dist, float(sigma), np.asarray(lengths, float), w)
    await state.runtime.gather(scores)
    state.extras["distaim_scores"] = scores
    return {"candidates": len(lengths), "cells": int(cells.size)}


@command("distaim_score")
async def distaim_score(state: ServerState, offsets: list[int], lengths: list[int],
                        public_c: np.ndarray, sigma: float, weights: list[float],
                        score_bound: float) -> dict[str, Any]:
    """Secret scores u_r = w_r(‖x_r − round(c_r)‖₁ − sqrt(2/π)σn_r) for the kept candidates."""
    bits: SecretBits | None = state.extras.get("distaim_bits")
    if bits is None:
        raise CommandError("distaim_score before distaim_decompose")
    cells = _kept_cells(offsets, lengths)
    if len(public_c) != cells.size:
        raise CommandError(f"public marginal has {len(public_c)} cells, kept cells {cells.size}")
    kept = bits.take(cells)
    fxp = em_fxp_type(float(score_bound))
    scores = secure_scores_bits(kept, np.asarray(public_c, dtype=float), lengths, float(sigma),
                                weights, fxp)
    await state.runtime.gather(scores)
    state.extras["distaim_scores"] = scores
    return {"candidates": len(lengths), "cells": int(cells.size)}


MECHANISMS = {"gumbel": secure_exponential_mechanism, "rnm": secure_report_noisy_max}


@command("distaim_select")
async def distaim_select(state: ServerState, epsilon: float, sensitivity: float,
                         label: str = "", mechanism: str = "gumbel") -> dict[str, Any]:
    """Secure selection over the stored scores (``gumbel``: the exponential mechanism;
    ``rnm``: report-noisy-max with Exp noise); opens the index only."""
    scores = state.extras.pop("distaim_scores", None)
    if scores is None:
        raise CommandError("distaim_select before distaim_score")
    if mechanism not in MECHANISMS:
        raise CommandError(f"unknown selection mechanism {mechanism!r}; have {sorted(MECHANISMS)}")
    index = await MECHANISMS[mechanism](scores, float(epsilon), float(sensitivity))
    state.reveal_log.append({"seq": len(state.reveal_log), "name": "selected-index",
                             "label": label, "shape": []})
    return {"index": int(index), "epsilon_effective": em_scale(epsilon, sensitivity)[2]}


@command("distaim_measure")
async def distaim_measure(state: ServerState, name: str, offset: int, length: int,
                          sigma: float, label: str = "") -> dict[str, Any]:
    """Open x[offset:offset+length] + Gaussian noise input by every server."""
    x = state.array(name)
    if offset < 0 or offset + length > x.shape[0]:
        raise CommandError(f"cells {offset}..{offset + length} outside 0..{x.shape[0]}")
    noisy = await secure_gaussian_measure(x[offset:offset + length], float(sigma))
    state.reveal_log.append({"seq": len(state.reveal_log), "name": "noisy-marginal",
                             "label": label, "shape": [int(length)]})
    return {"values": noisy.values, "variance": noisy.variance}
