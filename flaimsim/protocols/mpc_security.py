"""MPyC's statistical security parameter κ for DistAIM (``--mpc-security``), and its δ term.

MPyC, and the project's fixed_point and bit_decomposition, open masked values v + r inside
comparisons, truncations and bit decompositions, with r uniform on a range 2^κ times wider
than v: each opened element is within statistical distance 2^−κ of a value independent of
the data (κ = MPyC's ``sec_param``, default 30). By a union bound the view of any t servers is
within U·2^−κ of one simulated from the opened outputs, U = the run's masked elements. As
for any mechanism within total variation τ of its ideal law (accounting's module docstring),
the t servers' view is then (ε, δ + (1 + e^ε)·U·2^−κ)-DP: the δ term ``mpc-statistical``.

U is bounded before the run from its public plan (:func:`masked_openings_bound`), with
per-element factors set at twice what the servers counted on small real runs (the counter
of :mod:`flaimsim.parties.mpc.openings`; tests/test_privacy_stance.py checks the bound
against the count): a decomposed cell opens at most bitlen(N) + f + 4 masked elements
(counted: bitlen(N) + 1), a scored cell at most 8 per round (counted: ~3.7, the secure EM's
and the measurement's openings included), plus 64 per candidate and round for the EM.
The default κ is the smallest ≥ MPyC's 30 with (1 + e^ε)·U·2^−κ ≤ δ/10.
"""

from __future__ import annotations

import math

from flaimsim.mechanisms.workload import Workload
from flaimsim.protocols.config import ConfigError, RunConfig

MPYC_DEFAULT_KAPPA = 30
DECOMPOSE_HEADROOM, SCORE_PER_CELL, EM_PER_CANDIDATE = 4, 8, 64
SHARE_OF_DELTA = 0.1


def masked_openings_bound(config: RunConfig, workload: Workload, max_count: int) -> int:
    """U: at most this many masked elements open in a DistAIM run (module docstring).
    Contributor sets: 1 (``all``) or up to T + 1 (``poisson``), each decomposed at most once
    per cell."""
    cells = sum(workload.n_cells(c) for c in workload.answered)
    sets = 1 if config.distaim_participation == "all" else config.rounds + 1
    per_cell = int(max_count).bit_length() + config.score_frac_bits + DECOMPOSE_HEADROOM
    decompose = sets * cells * per_cell
    score = config.rounds * cells * SCORE_PER_CELL
    select = config.rounds * len(workload.candidates) * EM_PER_CANDIDATE
    return decompose + score + select


def delta_term(epsilon: float, bound: int, kappa: int) -> float:
    """(1 + e^ε)·U·2^−κ: the t servers' view's δ term."""
    return (1 + math.exp(epsilon)) * bound * 2.0 ** -kappa


def default_kappa(epsilon: float, delta: float, bound: int) -> int:
    """Smallest κ ≥ 30 with (1 + e^ε)·U·2^−κ ≤ δ/10."""
    need = math.log2((1 + math.exp(epsilon)) * max(bound, 1) / (SHARE_OF_DELTA * delta))
    return max(MPYC_DEFAULT_KAPPA, math.ceil(need))


def resolve_kappa(config: RunConfig, workload: Workload, max_count: int) -> int:
    """``--mpc-security`` if given, else :func:`default_kappa` for this run."""
    if config.mpc_security is not None:
        if not 16 <= config.mpc_security <= 256:
            raise ConfigError(f"--mpc-security must be in 16..256, got {config.mpc_security}")
        return int(config.mpc_security)
    return default_kappa(config.epsilon, config.delta,
                         masked_openings_bound(config, workload, max_count))


def mpyc_option(kappa: int) -> int | None:
    """What the servers get as -K: None for MPyC's own default (keeps cached cost tables)."""
    return None if kappa == MPYC_DEFAULT_KAPPA else int(kappa)


__all__ = ["MPYC_DEFAULT_KAPPA", "default_kappa", "delta_term", "masked_openings_bound",
           "mpyc_option", "resolve_kappa"]
