"""DistAIM's secure steps as compute-server commands (loaded with ``--load`` into
:mod:`flaimsim.parties.mpc.server`).

The servers hold the secret aggregate x (all W+ answers of the contributing clients,
concatenated in candidate order) and run, each in its own command so that wire counters
taken around a command charge one phase:

- ``distaim_prepare``: a fresh lazy decomposition for a new contributor set (a compact sum:
  the bits of one candidate's cells, whose unwrapped sum is the secret N_set) (``score``);
- ``distaim_decompose``: bits of x and the prefix products Z_h at given cells, each cell once
  per contributor set; unwraps a compact sum there on the way (phase ``score``, or
  ``measure`` for the cells of a measured marginal);
- ``distaim_score``: secret L1 scores of the kept candidates against the public model
  marginals, by comparisons priced by the public value; bits only where round_f(c) > 0
  (phase ``score``);
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

from dataclasses import dataclass
from typing import Any

import numpy as np
from mpyc.runtime import mpc

from flaimsim.mechanisms.scores import score_from_distance
from flaimsim.parties.distaim.plan import (DECOMPOSE_CHUNK_CELLS, DecomposedCells, chunk_count,
                                          em_scale, kept_cells, scored_priced_cells)
from flaimsim.parties.distaim.secure_em import (em_fxp_type, secure_exponential_mechanism,
                                               secure_report_noisy_max)
from flaimsim.parties.distaim.secure_l2 import secure_l2_distances, sum_squares
from flaimsim.parties.distaim.secure_noise import secure_gaussian_measure
from flaimsim.parties.distaim.secure_scoring import (SecretBits, decompose_counts,
                                                    secure_scores_bits, segment_sums)
from flaimsim.parties.mpc.bit_decomposition import PackedShares
from flaimsim.parties.mpc.input_sharing import unwrap
from flaimsim.parties.mpc.narrow_field import narrow_pays, narrow_to_wide, narrow_type
from flaimsim.parties.mpc.server import CommandError, ServerState, command

DEFAULT_FRAC_BITS = 0


@dataclass
class LazyAggregate:
    """One contributor set's aggregate and the bits of its cells decomposed so far.

    ``counts`` is the aggregate as summed: x, or a compact sum s = x + w·2^b (``wrapped``),
    whose x is known only where decomposed. Bits, Z_h and the unwrapped x are kept packed
    (:class:`PackedShares`: 2.87 M Adult cells take 0.76 GB per server)."""

    counts: Any
    wrapped: bool
    max_count: int
    frac_bits: int
    chunk: int
    done: DecomposedCells
    bits: PackedShares      # (n, l)
    below: PackedShares     # (l + 1, n)
    x: PackedShares | None  # (n,): wrapped, or narrow (x beside its bits)
    total: Any = None       # secret N_set = Σ of one candidate's x (wrapped only)
    narrow: bool = False    # bits, Z_h and x in the narrow field (narrow_field)

    @staticmethod
    def of(counts: Any, wrapped: bool, max_count: int, frac_bits: int, chunk: int
           ) -> "LazyAggregate":
        n, l = int(counts.shape[0]), int(max_count).bit_length()
        narrow = narrow_pays(type(counts).sectype)
        stype = narrow_type() if narrow else type(counts).sectype
        return LazyAggregate(counts, wrapped, int(max_count), int(frac_bits), int(chunk),
                             DecomposedCells.of(n), PackedShares.empty((n, l), stype),
                             PackedShares.empty((l + 1, n), stype),
                             PackedShares.empty((n,), stype) if wrapped or narrow else None,
                             narrow=narrow)

    async def decompose(self, runtime: Any, cells: np.ndarray) -> tuple[int, int]:
        """Bits and Z_h of those of ``cells`` not decomposed yet, ``chunk`` cells per call:
        (cells decomposed, chunks)."""
        new = self.done.claim(cells)
        for lo in range(0, new.size, self.chunk):
            idx = new[lo:lo + self.chunk]
            part = decompose_counts(self.counts[idx], self.max_count, self.frac_bits,
                                    wrapped=self.wrapped)
            if self.x is not None:
                bits, below, x = await runtime.gather(part.bits, part.below, part.counts)
                self.x.put(idx, x)
            else:
                bits, below = await runtime.gather(part.bits, part.below)
            self.bits.put(idx, bits)
            self.below.put((slice(None), idx), below)
        return int(new.size), chunk_count(new.size, self.chunk)

    def _require(self, cells: np.ndarray) -> None:
        missing = int(np.count_nonzero(~self.done.done[cells]))
        if missing:
            raise CommandError(f"{missing} of {cells.size} cells are not decomposed: "
                               f"distaim_decompose them first")

    def x_at(self, cells: np.ndarray) -> Any:
        """Secret x at public ``cells`` in the counts' type (a compact sum: decomposed cells
        only, moved back from the narrow field if its x is kept there)."""
        if not self.wrapped:
            return self.counts[cells]
        self._require(cells)
        if self.narrow:
            return narrow_to_wide(self.x[cells], type(self.counts).sectype)
        return self.x[cells]

    def sum_x(self, cells: np.ndarray) -> Any:
        """Secret Σ x over decomposed ``cells``, one value in the counts' type."""
        if not self.narrow or not self.wrapped:
            return self.x_at(cells).sum()
        self._require(cells)
        total = mpc.np_fromlist([self.x[cells].sum()])
        return narrow_to_wide(total, type(self.counts).sectype)[0]

    def bits_at(self, cells: np.ndarray) -> SecretBits:
        """x, its bits and Z_h at decomposed public ``cells`` (bits stay packed)."""
        self._require(cells)
        return SecretBits(counts=self.x[cells] if self.narrow else self.x_at(cells),
                          bits=self.bits.take(cells),
                          count_bits=int(self.max_count).bit_length(), frac_bits=self.frac_bits,
                          below=self.below.take((slice(None), cells)),
                          wide=type(self.counts).sectype if self.narrow else None)


def _lazy(state: ServerState, name: str | None = None) -> LazyAggregate:
    lazy = state.extras.get("distaim_lazy")
    if lazy is None or (name is not None and state.extras.get("distaim_counts") != name):
        raise CommandError(f"no decomposition of {name or 'the aggregate'}: distaim_prepare first")
    return lazy


@command("distaim_prepare")
async def distaim_prepare(state: ServerState, name: str, max_count: int,
                          frac_bits: int = DEFAULT_FRAC_BITS, chunk: int = DECOMPOSE_CHUNK_CELLS,
                          anchor: list[int] | None = None, cells: Any = None) -> dict[str, Any]:
    """Start the lazy decomposition of secret counts ``name`` (values in 0..max_count) for a
    new contributor set. A wrapped compact sum s = x + w·2^b (``to_shamir`` with
    ``reduce=False``) is decomposed at b = bitlen(max_count) bits, which are x's bits; then
    ``anchor`` = [lo, hi) must be one candidate's cells, decomposed here: their x sums to the
    set's record count N_set, which stands in for Σ_r x of every candidate in the score.
    ``cells``: more cells to decompose in the same command (a small domain: all of them)."""
    # The array still holds s = x + w·2^b: the mark stays, so no opening path takes it.
    width = state.extras.get("wrapped", {}).get(name)
    if width is not None and int(width) != int(max_count).bit_length():
        raise CommandError(f"{name} wraps at {width} bits but max_count {max_count} needs "
                           f"{int(max_count).bit_length()}")
    if int(chunk) < 1:
        raise CommandError(f"chunk must be >= 1 cells, got {chunk}")
    counts = state.array(name)
    if width is not None and (anchor is None or not 0 <= anchor[0] < anchor[1] <= counts.shape[0]):
        raise CommandError(f"a compact sum needs an anchor candidate's cells [lo, hi), got {anchor}")
    lazy = LazyAggregate.of(counts, width is not None, int(max_count), int(frac_bits), int(chunk))
    state.extras["distaim_lazy"], state.extras["distaim_counts"] = lazy, name
    state.extras.pop("distaim_squares", None)
    anchored = (np.arange(int(anchor[0]), int(anchor[1]), dtype=np.int64)
                if anchor is not None else np.zeros(0, dtype=np.int64))
    more = np.asarray(cells if cells is not None else [], dtype=np.int64)
    done, chunks = await lazy.decompose(state.runtime, np.union1d(anchored, more))
    if lazy.wrapped:
        lazy.total = lazy.sum_x(anchored)
        await state.runtime.gather(lazy.total)
    return {"decomposed": done, "chunks": chunks}


@command("distaim_decompose")
async def distaim_decompose(state: ServerState, name: str, cells: Any = None
                            ) -> dict[str, Any]:
    """Bits of x and the prefix products Z_h at public ``cells`` (all if None) not yet
    decomposed in this contributor set; unwraps a compact sum there."""
    lazy = _lazy(state, name)
    n = lazy.done.done.size
    idx = np.arange(n) if cells is None else np.asarray(cells, dtype=np.int64)
    done, chunks = await lazy.decompose(state.runtime, idx)
    return {"decomposed": done, "chunks": chunks}


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
    state.extras.pop("distaim_lazy", None)
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
    cells = kept_cells(offsets, lengths)
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
    lazy = _lazy(state)
    cells = kept_cells(offsets, lengths)
    if len(public_c) != cells.size:
        raise CommandError(f"public marginal has {len(public_c)} cells, kept cells {cells.size}")
    c = np.asarray(public_c, dtype=float)
    priced = scored_priced_cells(offsets, lengths, c, lazy.frac_bits)
    # Σ_r x: N_set for a compact sum (x exists at decomposed cells only), else local sums
    counts = (lazy.total if lazy.wrapped
              else segment_sums(lazy.x_at(cells), [int(n) for n in lengths]))
    fxp = em_fxp_type(float(score_bound))
    scores = secure_scores_bits(lazy.bits_at(priced), c, lengths, float(sigma), weights, fxp,
                                segment_counts=counts)
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
    n = state.array(name).shape[0]
    if offset < 0 or offset + length > n:
        raise CommandError(f"cells {offset}..{offset + length} outside 0..{n}")
    cells = np.arange(offset, offset + length)
    lazy = state.extras.get("distaim_lazy")
    if lazy is not None and state.extras.get("distaim_counts") == name:
        x = lazy.x_at(cells)     # x itself, unwrapped where decomposed
    elif name in state.extras.get("wrapped", {}):
        raise CommandError(f"{name!r} is a wrapped compact sum: unwrap or decompose it first")
    else:
        x = state.array(name)[cells]
    noisy = await secure_gaussian_measure(x, float(sigma))
    state.reveal_log.append({"seq": len(state.reveal_log), "name": "noisy-marginal",
                             "label": label, "shape": [int(length)]})
    return {"values": noisy.values, "variance": noisy.variance}
