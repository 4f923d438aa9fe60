"""A rough estimate of a run's time before it starts, to refuse the absurd (issue 25, item 6).

Per protocol, one round costs about

    s_round = a + b · C + c · K·p

seconds, where C is the candidate marginals' total cells (Σ_{r ∈ W+} Π_{i ∈ r} |dom i|: each
round scores every candidate against the model, and the model it re-fits grows with the
chosen ones), K·p the expected sample of a FLAIM round (its secure-aggregation sessions),
and (a, b, c) were measured on the 2-core development machine (load 3–4, 2026-12-05,
``flaimsim run --rounds T``, wall time less the evaluation):

- central AIM: SynthFS small (C = 4,976) 0.0126 s/round at T = 1000; Adult (C = 2,870,490)
  0.31 s/round at T = 300; a and b fit these two points;
- FLAIM (every variant): central's plus c = 0.002 s per sampled client (naive-flaim,
  SynthFS small, T = 100: 0.033 s/round with 10 sampled);
- DistAIM, --mpc real: a = 0.3 s (SynthFS small), b from full Adult (234 s for T = 10 with
  the narrow field, quiet, 2026-12-06, docs/figures.md): 8.05e-6 s per cell; --mpc model: b
  from Adult modelled (5.4 s, T = 10).

It is rough: load, the model's growth and the fitting tolerance move it by a factor of 2–3
either way. :data:`LIMIT_S` is what "absurd" means here: beyond it ``run`` asks for
``--force``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from flaimsim.protocols.config import MpcMode, RunConfig

LIMIT_S = 2 * 3600.0   # beyond two hours, a run needs --force

# (a s, b s per candidate cell, c s per expected sampled client), module docstring.
_CENTRAL = (0.0121, 1.04e-7, 0.0)
PER_ROUND: dict[str, tuple[float, float, float]] = {
    "central": _CENTRAL,
    "distaim-real": (0.3, 8.05e-6, 0.0),
    "distaim-model": (0.0121, 1.9e-7, 0.0),
    "flaim": (_CENTRAL[0], _CENTRAL[1], 0.002),
}


@dataclass(frozen=True)
class TimeEstimate:
    """The estimated seconds of each protocol's rounds, and what they were estimated from."""

    rounds: int
    candidate_cells: int
    sampled: float
    per_round_s: dict[str, float]

    @property
    def seconds(self) -> float:
        return self.rounds * sum(self.per_round_s.values())

    def describe(self) -> str:
        rounds = ", ".join(f"{p} {s:.3g} s" for p, s in self.per_round_s.items())
        flaim = any(p not in ("central", "distaim") for p in self.per_round_s)
        sampled = f" and {self.sampled:g} sampled clients per FLAIM round" if flaim else ""
        return (f"about {duration(self.seconds)}: {self.rounds:,} rounds × ({rounds}) per "
                f"round, estimated from the {self.candidate_cells:,} cells of the candidate "
                f"marginals{sampled} with per-round costs measured on a 2-core machine "
                "(flaimsim.bench.estimate)")


def family(config: RunConfig) -> str:
    if config.protocol == "distaim":
        return "distaim-real" if config.mpc is MpcMode.REAL else "distaim-model"
    return "central" if config.protocol == "central" else "flaim"


def candidate_cells(config: RunConfig) -> int:
    """C: the cells of every candidate marginal of the run's workload (from the domain only:
    the data are loaded and coarsened, not split or federated)."""
    from flaimsim.mechanisms.workload import make_workload
    from flaimsim.protocols.prepare import load_table

    table, _ = load_table(config)
    if not 1 <= config.workload_degree <= len(table.domain):
        return 0   # prepare() refuses it with its own message
    workload = make_workload(table.domain, degree=config.workload_degree,
                             num_marginals=config.workload_marginals,
                             seed=config.workload_seed)
    return sum(workload.n_cells(c) for c in workload.candidates)


def estimate(config: RunConfig, protocols: Sequence[str]) -> TimeEstimate:
    """The estimate for running each of ``protocols`` under ``config`` (module docstring)."""
    cells = candidate_cells(config)
    sampled = config.clients * config.participation
    per_round = {}
    for name in protocols:
        a, b, c = PER_ROUND[family(config.replace(protocol=name))]
        per_round[name] = a + b * cells + c * sampled
    return TimeEstimate(config.rounds, cells, sampled, per_round)


def duration(seconds: float) -> str:
    """3 h 20 min, 2 days 4 h, 45 s."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{int(hours)} h" + (f" {int(minutes % 60)} min" if int(minutes % 60) else "")
    return f"{int(hours // 24)} days {int(hours % 24)} h"


def check_time(config: RunConfig, protocols: Sequence[str], force: bool) -> TimeEstimate:
    """Refuse a run estimated beyond :data:`LIMIT_S` unless ``force`` (one line with the
    estimate and how it was made); say the estimate on stderr when the run will be long."""
    import sys

    from flaimsim.protocols.config import ConfigError

    est = estimate(config, protocols)
    if est.seconds > LIMIT_S and not force:
        raise ConfigError(f"--rounds {config.rounds}: this run would take {est.describe()}; "
                          f"beyond {duration(LIMIT_S)} pass --force to run it anyway, or "
                          "lower --rounds")
    if est.seconds > 600:
        print(f"flaimsim: this run will take {est.describe()}", file=sys.stderr, flush=True)
    return est
