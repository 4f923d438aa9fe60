"""The tiny DistAIM and AugFLAIM (Private) runs that ``flaimsim explain`` narrates (as text,
:mod:`explain`, and as a sequence diagram, :mod:`sequence`): per protocol its ledger, each
phase's narration (:mod:`narration`, from the options that ran) and, per round, what was
opened and to whom (DistAIM's reveal log, FLAIM's choices and sums).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from flaimsim.bench.narration import phase_texts
from flaimsim.parties.ledger import Ledger
from flaimsim.protocols.config import RunConfig

# A SynthFS small enough for real MPC in well under a minute on 2 cores.
TINY = dict(dataset="synthfs", clients=4, synthfs_features=4, synthfs_records=60,
            synthfs_bins=4, workload_marginals=4, rounds=2, participation=1.0, epsilon=1.0,
            iters_round=50, iters_final=100, mpc="real", servers=3, seed=0)


def _distaim_opened(result: Any) -> dict[int, list[str]]:
    opened: dict[int, list[str]] = defaultdict(list)
    measurements = list(result.loop.measurements)
    selected = result.loop.selected
    n_measure = 0
    for entry in result.artifacts.get("reveals", []):
        label = str(entry.get("label", ""))
        t = int(label.split()[-1]) if label.startswith("round") else -1
        if entry["name"] == "selected-index":
            what = "|".join(selected[t - 1][0]) if 0 < t <= len(selected) else "?"
            opened[t].append(f"the index of the selected marginal ({what}), nothing else, "
                             "to the servers and the driver")
        else:
            clique = (measurements[n_measure].clique if n_measure < len(measurements)
                      else ("?",))
            n_measure += 1
            opened[t].append(f"the noisy marginal of {'|'.join(clique)} "
                             f"({entry.get('shape', ['?'])[0]} cells), to the servers and "
                             "the driver")
    return dict(opened)


def _flaim_opened(result: Any, backend: Any | None) -> dict[int, list[str]]:
    opened: dict[int, list[str]] = defaultdict(list)
    if backend is not None:
        for info in backend.rounds:
            for k, c in sorted(info.choices.items()):
                opened[info.round].append(f"client:{k} chose {'|'.join(c)} (seen by the "
                                          "aggregator, a DP output)")
        for rec in backend.records:
            covers = f", cover clients {list(rec.covers)}" if rec.covers else ""
            opened[rec.round].append(
                f"noisy sum of {'|'.join(rec.clique)} over clients {list(rec.contributors)}"
                f"{covers} ({rec.phase}), released by the aggregator")
    else:
        for t, chosen in enumerate(result.loop.selected, start=1):
            opened[t].append("chosen: " + ", ".join("|".join(c) for c in chosen))
    return dict(opened)


@dataclass(frozen=True)
class TinyRuns:
    """The tiny DistAIM and AugFLAIM (Private) runs on one prepared SynthFS."""

    config: RunConfig
    data: Any  # PreparedData
    distaim: Any  # RunResult
    flaim: Any  # RunResult
    backend: Any | None  # FLAIM's backend (choices, sums), when the simulator exposes it

    @property
    def clients(self) -> int:
        return self.data.federation.n_clients

    def head(self) -> str:
        c, w = self.config, self.data.workload
        return (f"Tiny run: SynthFS, {self.clients} clients, {c.servers} MPC servers "
                f"(threshold t = {c.threshold}), T = {c.rounds}, ε = {c.epsilon:g}; "
                f"W+ has {len(w.candidates)} candidates, {w.total_cells} cells; DistAIM with "
                f"{c.sharing} shares, {c.score} score, {c.em} selection.")

    def stories(self) -> list["Story"]:
        """Per protocol: title, ledger, what each phase does (from the options), openings."""
        c = self.config
        return [Story("distaim", f"DistAIM ({c.mpc} MPC, {c.servers} compute servers)",
                      self.distaim.ledger, _texts("distaim", self.distaim.ledger, c),
                      _distaim_opened(self.distaim),
                      tuple(self.distaim.record.get("profile") or ())),
                Story("aug-flaim-private", "AugFLAIM (Private) (secure aggregation, one "
                      "aggregator)", self.flaim.ledger,
                      _texts("aug-flaim-private", self.flaim.ledger, c),
                      _flaim_opened(self.flaim, self.backend),
                      tuple(self.flaim.record.get("profile") or ()))]


@dataclass(frozen=True)
class Story:
    protocol: str
    title: str
    ledger: Ledger
    texts: dict[str, str]  # phase -> narration
    opened: dict[int, list[str]]  # round -> what is opened, and to whom
    operations: tuple[dict[str, Any], ...] = ()  # the run's profile (secure operations)


def _texts(protocol: str, ledger: Ledger, config: RunConfig) -> dict[str, str]:
    return phase_texts(protocol, config, tuple(sorted({r.phase for r in ledger.rows})))


def run_tiny(config: RunConfig | None = None) -> TinyRuns:
    """Run the tiny DistAIM and AugFLAIM (Private) on the same prepared data."""
    from flaimsim.protocols import runner
    from flaimsim.protocols.prepare import prepare

    config = config or RunConfig(**TINY)
    data = prepare(config)
    distaim = runner("distaim")(config.replace(protocol="distaim"), data=data)
    flaim_config = config.replace(protocol="aug-flaim-private")
    try:
        from flaimsim.protocols.flaim import simulate_flaim

        flaim, backend = simulate_flaim(flaim_config, data, None)
    except ImportError:
        flaim, backend = runner("aug-flaim-private")(flaim_config, data=data), None
    return TinyRuns(config, data, distaim, flaim, backend)


__all__ = ["TINY", "TinyRuns", "Story", "run_tiny"]
