"""DistAIM's options as types: the modes of ``--em``, ``--distaim-participation`` and
``--mpc`` (beside ``--sharing``, :class:`~flaimsim.parties.mpc.sharing_modes.Sharing`, and
``--score``, :class:`~flaimsim.mechanisms.scores.Score`), and :class:`DistAimOptions`, the one
value that both engines and the cost model take.

The modes are ``StrEnum``s: they are checked once, where a configuration is built
(``RunConfig``), and compare, hash, print and serialise as their strings, so configuration
files, JSON commands to the servers and cache keys read as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flaimsim.mechanisms.accounting import exponential_cost
from flaimsim.mechanisms.dp import report_noisy_max_cost
from flaimsim.mechanisms.scores import Score
from flaimsim.parties.distaim.plan import count_bits_for
from flaimsim.parties.mpc.sharing_modes import Sharing


class Selection(StrEnum):
    """``--em``: the selection mechanism the servers run on the secret scores."""

    GUMBEL = "gumbel"   # exponential mechanism by Gumbel-max; ρ = ε²/8
    RNM = "rnm"         # report-noisy-max with Exp noise (= permute-and-flip); ρ = ε²/2

    @property
    def cost_op(self) -> str:
        """The cost model's operation for one selection."""
        return {Selection.GUMBEL: "select", Selection.RNM: "select-rnm"}[self]

    @property
    def mechanism(self) -> str:
        """The privacy ledger's name for one selection."""
        return {Selection.GUMBEL: "exponential", Selection.RNM: "report-noisy-max"}[self]

    def run_epsilon(self, epsilon_t: float) -> float:
        """The ε to run at for a round's selection budget ε_t (ρ = ε_t²/8 either way):
        report-noisy-max costs ε²/2, so it runs at ε_t/2."""
        return epsilon_t if self is Selection.GUMBEL else epsilon_t / 2

    def rho(self, epsilon: float) -> float:
        """zCDP cost of one selection run at ε."""
        return exponential_cost(epsilon) if self is Selection.GUMBEL else report_noisy_max_cost(epsilon)

    @property
    def fixed_point_factor(self) -> int:
        """c in ε_run = ε − cη: the EM's bounded-range parameter is ε_eff + 8η,
        report-noisy-max's pure-DP parameter ε_eff + 4η (``secure_em``)."""
        return {Selection.GUMBEL: 8, Selection.RNM: 4}[self]


class Participation(StrEnum):
    """``--distaim-participation``: which clients' answers the servers hold."""

    ALL = "all"           # every client shares in round 0
    POISSON = "poisson"   # a client shares when first sampled (cumulative); counted, noisily

    @property
    def counted(self) -> bool:
        """The contributors' record count is released (noisily) and paid for."""
        return self is Participation.POISSON


class MpcMode(StrEnum):
    """``--mpc``: real compute servers (bytes on the wire) or the ideal functionality with
    traffic from the calibrated cost model."""

    REAL = "real"
    MODEL = "model"


@dataclass(frozen=True)
class DistAimOptions:
    """What fixes the servers' arithmetic and traffic: m servers, the public bound N on every
    aggregate count, the sharing, score and selection modes and f (the public marginal's
    fractional bits)."""

    m: int = 3
    max_count: int = 1
    sharing: Sharing = Sharing.COMPACT
    score: Score = Score.L1
    em: Selection = Selection.GUMBEL
    frac_bits: int = 0
    sec_param: int | None = None   # MPyC's statistical security κ (None: its default, 30)

    def __post_init__(self) -> None:
        for name, kind in (("sharing", Sharing), ("score", Score), ("em", Selection)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        object.__setattr__(self, "max_count", int(self.max_count))

    @staticmethod
    def of(config: Any, max_count: int, sec_param: int | None = None) -> "DistAimOptions":
        """A run's options (``RunConfig``) with its public record bound (and κ, as MPyC's -K:
        ``protocols.mpc_security.mpyc_option``)."""
        return DistAimOptions(config.servers, max_count, config.sharing, config.score,
                              config.em, config.score_frac_bits, sec_param)

    @property
    def threshold(self) -> int:
        """MPyC's corruption threshold t = (m − 1) // 2."""
        return (self.m - 1) // 2

    @property
    def count_bits(self) -> int:
        """The counts' SecInt width (:func:`~flaimsim.parties.distaim.plan.count_bits_for`)."""
        return count_bits_for(self.max_count, self.frac_bits, self.score)

    @property
    def compact_bits(self) -> int:
        """b = bitlen(N): the compact shares' width."""
        return self.max_count.bit_length()

    @property
    def measures_need_bits(self) -> bool:
        """A measured cell must be decomposed first: with compact shares under the L1 score, x
        exists only where the wrap has been taken off (by the cell's decomposition)."""
        return self.score is Score.L1 and self.sharing is Sharing.COMPACT
