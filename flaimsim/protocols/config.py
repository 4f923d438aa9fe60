"""The resolved configuration of one protocol run, and its seeded random streams.

Every seeded choice in a run derives from ``RunConfig.seed`` through named streams
(:func:`stream`), so that adding a stream never shifts another one. MPC randomness (servers'
noise and exponential-mechanism draws under ``--mpc real``) and secure-aggregation keys come
from the operating system's CSPRNG and cannot be seeded.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from flaimsim.mechanisms.scores import Score
from flaimsim.parties.distaim.options import MpcMode, Participation, Selection
from flaimsim.parties.mpc.sharing_modes import Sharing

PROTOCOLS = ("central", "distaim", "naive-flaim", "aug-flaim-oracle", "aug-flaim-private")
DATASETS = ("synthfs", "adult", "magic", "covtype", "census", "marketing")


class ConfigError(ValueError):
    """A configuration that cannot run, with the offending option named."""


# Above this ε the Gaussian measurements' σ (ρ ≈ ε²/… grows with ε²) falls below what the
# discrete Gaussian sampler represents: ε = 1e3 runs, ε = 1e4 ends in σ = 0 (measured on
# SynthFS, T = 2); ε ≥ 1e8 overflows the zCDP conversion.
MAX_EPSILON = 1000.0


class LoopMode(StrEnum):
    """``--mode``: AIM's budget schedule (``protocols.aim``)."""

    FIXED = "fixed"         # the paper's fixed T rounds
    ADAPTIVE = "adaptive"   # upstream AIM's (central only)


class Aggregation(StrEnum):
    """``--aggregation``: how FLAIM's server learns the sum of the clients' vectors."""

    SECAGG = "secagg"     # SecAgg+ among the clients (``parties.secagg``)
    SERVERS = "servers"   # shares to the compute servers, which open the sum only


class FlaimNoise(StrEnum):
    """``--flaim-noise``: who adds FLAIM's noise (protocols/flaim_sessions.py, docs/privacy.md)."""

    CENTRAL = "central"           # the aggregator, to exact sums of >= 2 choosers (a lone
                                  # chooser's group adds noise shares)
    DISTRIBUTED = "distributed"   # every contributor adds an N_Z(0, σ²/n) share (KLS21)


# The modes of a run: each field's type, and the error that names a value it does not have.
# RunConfig turns the strings it is given into these (the one place they are checked).
MODES: dict[str, tuple[type[StrEnum], str]] = {
    "mode": (LoopMode, "mode must be 'fixed' or 'adaptive', got {!r}"),
    "mpc": (MpcMode, "mpc must be 'real' or 'model', got {!r}"),
    "sharing": (Sharing, "sharing must be 'compact', 'shamir' or 'additive', got {!r}"),
    "score": (Score, "score must be 'l1' or 'l2', got {!r}"),
    "em": (Selection, "em must be 'gumbel' or 'rnm', got {!r}"),
    "distaim_participation": (Participation, "distaim_participation must be 'all' or 'poisson'"),
    "aggregation": (Aggregation, "aggregation must be 'secagg' or 'servers'"),
    "flaim_noise": (FlaimNoise, "flaim_noise must be 'central' or 'distributed', got {!r}"),
}


@dataclass(frozen=True)
class RunConfig:
    protocol: str = "central"
    dataset: str = "synthfs"
    data_dir: str | None = None
    epsilon: float = 1.0
    delta: float = 1e-5
    rounds: int = 10
    seed: int = 0
    alpha: float = 0.9
    mode: LoopMode = LoopMode.FIXED  # fixed | adaptive (central only)
    max_model_size_mb: float = 80.0
    iters_round: int = 200
    iters_final: int = 1000
    fit_tol: float | None = None  # mirror-descent stopping rule; the iteration counts cap it
    # approximate, off by default: at most this many fitting steps over a run's T rounds
    # (iters_round each while T <= budget / iters_round, then budget // T)
    iters_budget: int | None = None
    synthetic_rows: int | None = None  # default: the model's noisy total (never N itself)
    test_fraction: float = 0.1
    max_bins: int | None = None
    workload_marginals: int = 64
    workload_degree: int = 3
    workload_seed: int = 123
    # federation
    clients: int = 100
    partition: str = "iid"  # iid | dirichlet | cluster | natural (SynthFS's own clients)
    beta: float = 0.1
    cluster_embedding: str = "umap"  # umap (the paper's) | pca (faster)
    label: str | None = None  # default: the last column
    participation: float = 0.1  # Poisson sampling rate p
    # SynthFS
    synthfs_features: int = 10
    synthfs_records: int = 500
    synthfs_alpha: float = 1.0
    synthfs_bins: int = 40
    # MPC / DistAIM
    mpc: MpcMode = MpcMode.MODEL  # real | model
    servers: int = 3
    sharing: Sharing = Sharing.COMPACT  # compact (additive mod 2^b) | shamir | additive (mod p)
    score: Score = Score.L1  # DistAIM's quality score: l1 (AIM's) | l2
    em: Selection = Selection.GUMBEL  # DistAIM's selection: gumbel (exponential mechanism) | rnm
    # Fractional bits of the public model marginal in secure scoring. 2 by measurement: on
    # Adult (T = 10, seed 0, modelled) L1 0.1341 vs 0.1345 at 0 bits, for +0.25 B per cell and
    # round (bench scoring: 1.84 vs 1.59 B) and the same field width (notes/distaim.md).
    score_frac_bits: int = 2
    # all (every client shares in round 0) | poisson (when first sampled)
    distaim_participation: Participation = Participation.ALL
    # MPyC's statistical security parameter κ (None: the smallest >= 30 that keeps the masked
    # openings' δ term <= δ/10, protocols/mpc_security.py)
    mpc_security: int | None = None
    party_timeout_s: float = 600.0  # per server command; a full-size decomposition needs more
    # --mpc real: replay the run's steps through the calibrated cost table afterwards and
    # record modelled against measured bytes per phase (calibrates once if not cached).
    check_model: bool = False
    # Compute servers already running (`flaimsim serve`): control HOST:PORT of party 0,1,...
    # in order, comma-separated; None spawns them on this machine.
    servers_at: str | None = None
    # --servers-at: seconds to reach each standing server and hear its reply, else the run is
    # refused naming the address
    connect_timeout_s: float = 60.0
    # Spawned compute servers' ports: P..P+m-1 for MPyC, P+m..P+2m-1 for their control
    # connections (FLAIM's --aggregation servers: the next 2m); None: ports the system
    # reports free (bind to port 0)
    base_port: int | None = None
    # FLAIM
    dropout: float = 0.0
    aggregation: Aggregation = Aggregation.SECAGG  # secagg | servers
    flaim_noise: FlaimNoise = FlaimNoise.CENTRAL
    # A public upper bound on the number of training records. Under add/remove DP the true N
    # is private, so field bit lengths and SecAgg word widths that show on the wire come from
    # this bound; default: the data set's documented size (see public_record_bound).
    max_records: int | None = None
    # Emulated links (flaimsim.parties.netem) for every protocol socket: lan, wan or
    # LATENCY_MS,BANDWIDTH_MBIT[,link|party]; None runs on plain loopback.
    network: str | None = None
    # With network: how the compute time is measured. relay: the same run again through the
    # relay with no delay (flaimsim.bench.emulated); none: not measured (one run only, e.g.
    # a full-size run whose compute time comes from a separate loopback run).
    network_compute: str = "relay"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (kind, error) in MODES.items():
            try:
                object.__setattr__(self, name, kind(getattr(self, name)))
            except ValueError:
                raise ConfigError(error.format(getattr(self, name))) from None
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {self.protocol!r}; choose one of {PROTOCOLS}")
        if not self.epsilon > 0:
            raise ConfigError(f"epsilon must be positive, got {self.epsilon}")
        if not self.epsilon <= MAX_EPSILON:
            raise ConfigError(f"--epsilon {self.epsilon:g} is too large: above ε = "
                              f"{MAX_EPSILON:g} the measurement noise σ rounds to 0 in the "
                              "samplers (and the DP guarantee means nothing); use a smaller ε")
        for name in ("seed", "workload_seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0 (a numpy seed), "
                                  f"got {getattr(self, name)}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {self.delta}")
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {self.rounds}")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.mode is LoopMode.ADAPTIVE and self.protocol != "central":
            raise ConfigError("adaptive mode is only defined for the central protocol")
        if not 0 < self.participation <= 1:
            raise ConfigError(f"participation rate must be in (0, 1], got {self.participation}")
        if self.party_timeout_s <= 0:
            raise ConfigError(f"party_timeout_s must be positive, got {self.party_timeout_s}")
        if not self.connect_timeout_s > 0:
            raise ConfigError(f"--connect-timeout must be positive, got {self.connect_timeout_s}")
        if self.check_model and self.mpc is not MpcMode.REAL:
            raise ConfigError("--check-model compares a real MPC run with the model: use --mpc real")
        if self.servers not in (2, 3):
            raise ConfigError(f"servers must be 2 or 3, got {self.servers}")
        if not 0 <= self.score_frac_bits <= 8:
            raise ConfigError(f"score_frac_bits must be in 0..8, got {self.score_frac_bits}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.cluster_embedding not in ("umap", "pca"):
            raise ConfigError("cluster_embedding must be 'umap' or 'pca'")
        if self.clients < 1:
            raise ConfigError(f"clients must be >= 1, got {self.clients}")
        if self.max_model_size_mb <= 0:
            raise ConfigError("max_model_size_mb must be positive")
        if self.fit_tol is not None and not self.fit_tol >= 0:
            raise ConfigError(f"fit_tol must be >= 0, got {self.fit_tol}")
        if self.iters_budget is not None and self.iters_budget < 1:
            raise ConfigError(f"iters_budget must be >= 1, got {self.iters_budget}")
        if self.max_records is not None and self.max_records < 1:
            raise ConfigError(f"max_records must be >= 1, got {self.max_records}")
        if (self.servers_at is not None and self.mpc is MpcMode.MODEL
                and self.aggregation is Aggregation.SECAGG):
            raise ConfigError("--servers-at needs --mpc real (DistAIM) or --aggregation "
                              "servers (FLAIM): nothing else uses compute servers")
        if self.servers_at is not None and len(self.server_addresses or ()) != self.servers:
            raise ConfigError(f"--servers-at lists {len(self.server_addresses or ())} "
                              f"addresses for --servers {self.servers}")
        if self.base_port is not None:
            if not 1 <= self.base_port <= 65536 - 4 * self.servers:
                raise ConfigError(f"--base-port {self.base_port}: the {self.servers} servers "
                                  f"use ports P..P+{4 * self.servers - 1} (DistAIM's, then "
                                  "FLAIM's --aggregation servers), so P must be in "
                                  f"1..{65536 - 4 * self.servers}")
            if self.servers_at is not None:
                raise ConfigError("--base-port sets the ports of servers this run spawns; "
                                  "servers at --servers-at have their own (`flaimsim serve "
                                  "--peers/--control`)")
        if self.network_compute not in ("relay", "none"):
            raise ConfigError(f"--network-compute must be relay or none, got "
                              f"{self.network_compute!r}")
        if self.network is not None:
            self.network_spec  # a clear error for a bad spec
            if self.protocol == "distaim" and self.mpc != "real":
                raise ConfigError("--network emulates the links of real sockets: DistAIM "
                                  "needs --mpc real")
            if self.servers_at is not None:
                raise ConfigError("--network emulates links on this machine; it cannot "
                                  "reach servers at --servers-at")

    @property
    def iters_per_round(self) -> int:
        """Fitting steps after each round: ``iters_round``, or with ``iters_budget`` B,
        min(iters_round, max(1, B // T)), so a run fits at most ~B steps in its rounds and
        every run with T <= B / iters_round is exactly the default run."""
        if self.iters_budget is None:
            return self.iters_round
        return min(self.iters_round, max(1, self.iters_budget // max(1, self.rounds)))

    def without_idle_budget(self) -> "RunConfig":
        """This configuration, ``iters_budget`` dropped when this run never reaches it (then
        the run is exactly the default one; a sweep cell keeps its key and its result)."""
        if self.iters_budget is not None and self.iters_per_round == self.iters_round:
            return self.replace(iters_budget=None)
        return self

    @property
    def network_spec(self) -> Any:
        """The parsed ``network`` (:class:`flaimsim.parties.links.Network`), or None."""
        from flaimsim.parties.links import NetworkError, parse_network

        if self.network is None:
            return None
        try:
            return parse_network(self.network)
        except NetworkError as exc:
            raise ConfigError(f"--network: {exc}") from None

    def server_ports(self, block: int = 0) -> tuple[list[int], list[int]] | None:
        """``base_port``'s (MPyC ports, control ports) of the spawned servers, or None.
        Block 0 is DistAIM's servers (P..P+2m-1), block 1 FLAIM's ``--aggregation servers``
        (the next 2m), so that both can be up in one run."""
        if self.base_port is None:
            return None
        m = self.servers
        p = self.base_port + 2 * m * block
        return list(range(p, p + m)), list(range(p + m, p + 2 * m))

    @property
    def server_addresses(self) -> list[tuple[str, int]] | None:
        """The parsed ``servers_at`` (control addresses in party order), or None."""
        from flaimsim.parties.mpc.addresses import parse_addresses

        if self.servers_at is None:
            return None
        try:
            return parse_addresses(self.servers_at)
        except ValueError as exc:
            raise ConfigError(f"--servers-at: {exc}") from None

    @property
    def threshold(self) -> int:
        """MPyC's corruption threshold t = (m − 1) // 2: 1 for 3 servers, 0 (not private) for 2."""
        return (self.servers - 1) // 2

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Named starting points; explicit options override them.
PRESETS: dict[str, dict[str, Any]] = {
    # Small enough for real MPC with 3 server processes in seconds per round on 2 cores.
    "synthfs-small": dict(dataset="synthfs", clients=20, synthfs_features=6,
                          synthfs_records=200, synthfs_bins=8, workload_marginals=8,
                          participation=0.5, iters_round=100, iters_final=300),
    # The paper's SynthFS: K = 100 clients, d = 10 features, n = 500 records, 40 bins.
    "synthfs-paper": dict(dataset="synthfs", clients=100, synthfs_features=10,
                          synthfs_records=500, synthfs_bins=40, workload_marginals=64,
                          participation=0.1),
    "adult-paper": dict(dataset="adult", clients=100, workload_marginals=64,
                        participation=0.1),
    # The setting of the authors' code, which produced the poster's table: K = 100 clients,
    # Poisson participation p = 0.1, delta = 1e-5, 64 random 3-way marginals (seed 123), an
    # 80 MB model cap, the "cluster" split, and DistAIM sharing a client's answers when it is
    # first sampled (cumulative participation).
    # alpha 0.9 is the authors' (sweep_configs/paper/*.json: gauss_budget_alloc). Their
    # mirror-descent iterations are 50 per round and 500 at the end (pgm_train_iters,
    # pgm_final_iters); we keep RunConfig's 200 / 1000 because they fit markedly better
    # (central AIM, Adult, T = 10, seeds 0-3: mean L1 over W+ 0.1307 against 0.1866) and
    # the numpy fitter makes them cheap. `--iters-round 50 --iters-final 500` gives theirs.
    "paper": dict(clients=100, participation=0.1, delta=1e-5, workload_marginals=64,
                  workload_degree=3, workload_seed=123, max_model_size_mb=80.0,
                  partition="cluster", distaim_participation="poisson", alpha=0.9),
}


def default_preset(dataset: str) -> str:
    """The preset a data set starts from when neither ``--preset`` nor an option says
    otherwise: ``synthfs-small`` for SynthFS (small enough for real MPC on a laptop),
    ``paper`` (the authors' setting) for every other data set, a user's own included."""
    return "synthfs-small" if dataset == "synthfs" else "paper"


def check_preset(preset: str, dataset: str) -> None:
    """A preset that names a data set (``synthfs-small``, ``adult-paper``, ...) applies to
    that data set only; a clear error instead of, e.g., SynthFS's 8 marginals on a user's."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    own = PRESETS[preset].get("dataset")
    if own is not None and own != dataset:
        raise ConfigError(f"preset {preset!r} is for the {own} data set, not {dataset!r}; "
                          f"use --preset {default_preset(dataset)} or leave --preset out")


# Documented sizes of the bundled and paper data sets (records in the full file), used as the
# public bound on N when --max-records is not given. They are facts about the published data
# set, not about the run's (private) training split.
DOCUMENTED_RECORDS: dict[str, int] = {"adult": 48_842,
                                      # UCI: MAGIC, Covertype, Census-Income (train + test),
                                      # Bank Marketing (bank-full); the full files' sizes bound
                                      # the subsampled and partial copies too.
                                      "magic": 19_020, "covtype": 581_012, "census": 299_285,
                                      "marketing": 45_211}


def public_record_bound(config: "RunConfig") -> int | None:
    """The public bound on N: ``max_records`` if set, else the documented size (SynthFS:
    clients × records per client); ``None`` when no public bound is known."""
    if config.max_records is not None:
        return int(config.max_records)
    if config.dataset == "synthfs":
        return config.clients * config.synthfs_records
    return DOCUMENTED_RECORDS.get(config.dataset)


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent Generator for the named purpose, derived from the run seed."""
    tag = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return np.random.default_rng([int(seed) % 2**63, tag])
