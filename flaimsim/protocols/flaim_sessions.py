"""FLAIM's secure-aggregation sessions: everything between a round's choices and its noisy
measurements. :class:`FlaimSessions` (the base of :class:`flaimsim.protocols.flaim.FlaimBackend`)
owns the clients, the loopback network or compute servers, the seeded sampling, secagg-graph,
cover, dropout and noise streams, and the records of every aggregate and round; it runs

- one secure sum (:meth:`FlaimSessions._secure`), with the clients' distributed noise shares
  when asked (:mod:`flaimsim.parties.fl.distributed_noise`);
- the lone-chooser grouping (:meth:`FlaimSessions._groups`): one group per chosen marginal,
  topped up to ``min_group`` (2; with dropouts the whole sample) with seeded cover clients
  contributing zeros; a group with one
  real chooser (or every group, with ``--flaim-noise distributed``) adds noise shares;
- round 0's one-way sums, retried on failure (:meth:`FlaimSessions.measure_initial`), and a
  later round's sums, skipped on failure (:meth:`FlaimSessions.aggregate_round`);
- the release of noisy sums as population-scaled measurements.

Charge before release: the round's Gaussians are charged before the secure aggregations
start. If an aggregation fails (too many dropouts), the round is skipped, as a deployed FL
system would, and its Gaussians are refunded: no noisy sum was released (the aggregator only
ever held exact sums, which it sees in any case). The EM stays charged: its choices were sent.
Round 0 (no EM) is retried with a fresh sample up to ``ROUND0_ATTEMPTS`` times, each failed
attempt refunded; :class:`FlaimRoundError` only when no attempt succeeds. Under parallel
composition each record is in one group, so a round pays one Gaussian with the worst group's
KLS21 slack.

Dropouts: each round, round(dropout·|S|) sampled clients, drawn from the seeded ``dropout``
stream, vanish after sending their masked inputs (secagg's ``late_dropout``): their inputs
stay in the sums (which remain exact) and their self-masks are rebuilt from neighbours'
shares; a client that drops does so in every session of its round.

Aggregates reach the model as one measurement per marginal (ALGORITHMS.md step 4), scaled
to a common total: y·N̂/n̂ with std σ·N̂/n̂, where n̂ estimates the record count behind the
sum and N̂ the population. For the round-0 and proxy one-way sums (all from one sample),
n̂ = mean_a Σ_i y_a,i; N̂ = n̂_0·K/|S_0|. For a chosen-marginal sum, n̂ = max(Σ_i y_i,
σ·sqrt(n_r)) (the floor, the noise std of that sum, keeps the factor bounded). All of it is
post-processing of noisy outputs and public group sizes: the privacy cost is unchanged.
Without it the measurements' totals differ by up to |S|× (one client's sum against the
sample's one-ways) and, under label skew, by the clients' sizes; mirror descent cannot
match them, flattens the model and drives its potentials to extremes (seen on Adult).
Under heterogeneity each group's distribution stays biased towards its clients, which is
FLAIM's problem to begin with. ``config.extra["flaim_scale"] = False`` passes raw sums.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from flaimsim.mechanisms.accounting import PrivacyLedger, worst_slack
from flaimsim.mechanisms.dp import gaussian_noise_variance
from flaimsim.mechanisms.model import Measurement
from flaimsim.parties.fl.aggregator import (FlaimRoundError, SecureSum, add_noise,
                                            choose_covers, poisson_sample, secure_sum)
from flaimsim.parties.fl.clients import FLClient
from flaimsim.parties.fl import distributed_noise as dn
from flaimsim.parties.ledger import Ledger
from flaimsim.parties.secagg.protocol import SecAggError
from flaimsim.parties.star import StarNetwork
from flaimsim.protocols.config import Aggregation, RunConfig, stream
from flaimsim.protocols.prepare import PreparedData, wire_record_bound

Clique = tuple[str, ...]
MIN_GROUP = 2
# One chosen marginal's group: (marginal, its choosers, its covers, noise shares or None).
Group = tuple[Clique, list[int], tuple[int, ...], int | None]


@dataclass(frozen=True)
class AggregateRecord:
    """One secure aggregate: what was summed, by whom, and (when auditing) the exact sum."""

    round: int
    clique: Clique
    contributors: tuple[int, ...]
    covers: tuple[int, ...]
    late_dropped: tuple[int, ...]
    phase: str                       # "initial", "choice" or "proxy"
    exact_sum: np.ndarray | None     # the sum the aggregator unmasked, kept only when auditing
    secure: SecureSum | None         # session with transcript, kept only when auditing
    noise_shares: int | None = None  # clients' noise shares in that sum (None: exact sum)


@dataclass
class RoundInfo:
    round: int
    sampled: tuple[int, ...]
    choices: dict[int, Clique] = field(default_factory=dict)
    late_dropped: tuple[int, ...] = ()
    broadcast_bytes: int = 0
    seconds: float = 0.0
    secagg_seconds: float = 0.0
    failed: bool = False  # secure aggregation failed (dropouts): skipped, Gaussians refunded


# Round 0 (the one-way marginals every later round builds on) is retried with a fresh sample
# this many times; a failed attempt charges nothing (its charges come after the sums).
ROUND0_ATTEMPTS = 5


def population_measurement(clique: Clique, noisy: np.ndarray, sigma: float,
                           records: float | None, target: float | None) -> Measurement:
    """y·N̂/n̂ with std σ·N̂/n̂ (module docstring); raw when either estimate is None."""
    if records is None or target is None:
        return Measurement(clique, noisy, sigma)
    f = target / records
    return Measurement(clique, noisy * f, sigma * f)


def noise_std(sigma: float) -> float:
    """Std of the noise the aggregator actually adds (the discrete Gaussian's, ≤ σ)."""
    return float(np.sqrt(gaussian_noise_variance(sigma)))


def sum_records_estimate(noisy: np.ndarray, sigma: float) -> float:
    """n̂ = max(Σ y, σ·sqrt(n_r), 1): the records behind a noisy sum, bounded below."""
    return float(max(noisy.sum(), sigma * np.sqrt(noisy.size), 1.0))


class FlaimSessions:
    """FLAIM's secure-aggregation sessions and their state (module docstring)."""

    def __init__(self, config: RunConfig, data: PreparedData, variant: str, ledger: Ledger,
                 audit: bool = False) -> None:
        self.config, self.data, self.variant, self.ledger = config, data, variant, ledger
        self.workload = data.workload
        self.audit = audit
        self.dropout = config.dropout
        fed = data.federation
        self.scale = bool(config.extra.get("flaim_scale", True))
        self.population: float | None = None   # N̂, from round 0's noisy one-ways
        # Smallest secagg group: 2 without dropouts. With dropouts the whole sample (as a
        # deployed system runs one aggregation over the round's participants): every session
        # of a round then has the same members and the same dropped clients, round(p·|S|),
        # and with the majority threshold (t = floor(k/2) + 1 of k = |S| - 1 neighbours) it
        # succeeds whenever 2·round(p·|S|) < |S| - 1 (complete graph, |S| <= 13; beyond,
        # SecAgg+'s sparser graph makes it likely, not certain). Groups of 4 at
        # t = ceil(2k/3) failed 9 or 10 of 10 rounds at p = 0.3 (docs/robustness.md).
        self.min_group = MIN_GROUP if config.dropout == 0 else fed.n_clients
        # central: the aggregator adds N_Z(0, σ²) to exact sums of >= 2 choosers, and a lone
        # chooser's group (it and its covers) adds distributed noise shares instead, so no
        # party sees one client's exact marginal; distributed: every session adds shares.
        self.distributed = config.flaim_noise == "distributed"
        self.noisy_sessions = 0
        self.clients = [FLClient(k, fed.client(k)) for k in range(fed.n_clients)]
        # Public bound on any count a client submits (sets the secagg word width): the
        # record bound, not max n_k (private under add/remove).
        self.max_value = wire_record_bound(data)
        seed = config.seed
        self.rng_sampling = stream(seed, "sampling")
        self.rng_noise = stream(seed, "noise")
        self.rng_graph = stream(seed, "secagg-graph")
        self.rng_cover = stream(seed, "cover")
        self.rng_dropout = stream(seed, "dropout")
        self.proxy_sum: dict[str, np.ndarray] = {}
        self.proxy_count = 0
        self.records: list[AggregateRecord] = []
        self.rounds: list[RoundInfo] = []
        self.privacy: PrivacyLedger | None = None
        self.sessions = 0
        self.round0_attempts = 0
        # Every aggregator <-> client message crosses this loopback network (counted there).
        self.network = StarNetwork(timeout=config.party_timeout_s, network=config.network_spec)
        self.servers = None
        if config.aggregation is Aggregation.SERVERS:
            from flaimsim.parties.fl.server_aggregation import ServerAggregation

            # Every sum is over disjoint clients' records: at most the record bound.
            self.servers = ServerAggregation(config.servers, self.max_value,
                                             config.party_timeout_s,
                                             servers_at=config.server_addresses,
                                             network=config.network_spec,
                                             ports=config.server_ports(block=1))
            self.servers.charge_setup(ledger)

    # ---- one session ----------------------------------------------------------------------
    def _late_dropouts(self, sampled: Sequence[int]) -> tuple[int, ...]:
        n_drop = int(round(self.dropout * len(sampled)))
        if n_drop == 0:
            return ()
        return tuple(sorted(int(k) for k in self.rng_dropout.choice(sampled, n_drop,
                                                                    replace=False)))

    def _secure(self, round: int, vectors: dict[int, np.ndarray], late: Sequence[int],
                what: str, phase: str | None = None, covers: Sequence[int] = (),
                noise_sigma: float | None = None) -> SecureSum:
        """One secure sum; with ``noise_sigma`` every client adds its N_Z(0, σ²/n) share
        first (:mod:`distributed_noise`) and the sum returned is the noisy one."""
        self.sessions += 1
        max_value, modulus = self.max_value, None
        if noise_sigma is not None:
            self.noisy_sessions += 1
            modulus = dn.share_modulus(self.max_value, noise_sigma)
            max_value = modulus - 1
            vectors = {k: dn.noisy_share(v, noise_sigma, len(vectors), self.rng_noise, modulus)
                       for k, v in vectors.items()}
        if self.servers is not None:
            res = self.servers.sum(vectors, self.ledger, round, phase, late, covers)
        else:
            try:
                res = secure_sum(vectors, max_value, self.ledger, round, self.rng_graph,
                                 late_dropout=late, phase=phase, covers=covers,
                                 keep_session=self.audit, network=self.network)
            except SecAggError as err:
                raise FlaimRoundError(round, f"secure aggregation of {what} failed ({err})"
                                      ) from err
        if modulus is not None:
            res = SecureSum(dn.lift(res.sum, modulus), res.contributors, res.covers,
                            res.late_dropped, res.session)
        return res

    def _one_ways(self, round: int, sampled: Sequence[int], late: Sequence[int], sigma: float,
                  phase: str | None) -> tuple[list[tuple[Clique, np.ndarray, SecureSum]], int]:
        """Secure sum of the sampled clients' concatenated one-ways, split per attribute."""
        one_ways = self.workload.one_ways
        vectors = {int(k): self.clients[k].one_ways_vector(one_ways) for k in sampled}
        res = self._secure(round, vectors, late, "the one-way marginals", phase,
                           noise_sigma=sigma if self.distributed else None)
        out, start = [], 0
        for c in one_ways:
            n = self.workload.n_cells(c)
            out.append((c, res.sum[start:start + n], res))
            start += n
        return out, len(one_ways)

    def _release_one_ways(self, round: int, parts, sigma: float, tag: str,
                          charges: Sequence[int]) -> list[Measurement]:
        out = []
        # distributed: the sums arrived noisy (each client's share); central: noise added here
        noisy_parts = [(c, total, res, total if self.distributed
                        else add_noise(total, sigma, self.rng_noise)) for c, total, res in parts]
        for (c, *_), charge in zip(parts, charges):
            self.privacy.release(charge, f"noisy {tag} one-way {c[0]}")
        std = self._std(sigma, len(parts[0][2].contributors) + len(parts[0][2].covers)
                        if self.distributed else None)
        records = max(float(np.mean([y.sum() for *_, y in noisy_parts])), 1.0)
        if round == 0:
            self.population = records * len(self.clients) / len(parts[0][2].contributors)
        for c, total, res, noisy in noisy_parts:
            out.append(population_measurement(c, noisy, std,
                                              records if self.scale else None,
                                              self.population if self.scale else None))
            if self.variant == "private":
                self.proxy_sum[c[0]] = self.proxy_sum.get(c[0], 0.0) + noisy
            self.records.append(AggregateRecord(
                round, c, res.contributors, (), res.late_dropped, tag,
                np.array(total) if self.audit else None, res if self.audit else None,
                len(res.contributors) + len(res.covers) if self.distributed else None))
        if self.variant == "private":
            self.proxy_count += 1
        return out

    def _std(self, sigma: float, shares: int | None) -> float:
        """Std of the noise in a released sum: central N_Z(0, σ²), or ``shares`` shares."""
        return noise_std(sigma) if shares is None else math.sqrt(dn.summed_variance(sigma,
                                                                                  shares))

    def _shares(self, sampled: Sequence[int]) -> int:
        """Noise shares in a session of all sampled clients (1: central noise)."""
        return len(sampled) if self.distributed else 1

    # ---- rounds ---------------------------------------------------------------------------
    def measure_initial(self, one_ways: Sequence[Clique], sigma: float,
                        privacy: PrivacyLedger) -> list[Measurement]:
        """Round 0: a Poisson sample's one-way marginals via one SecAgg+ session + noise."""
        self.privacy = privacy
        t0 = time.perf_counter()
        for attempt in range(1, ROUND0_ATTEMPTS + 1):
            self.round0_attempts = attempt
            sampled = poisson_sample(len(self.clients), self.config.participation,
                                     self.rng_sampling)
            late = self._late_dropouts(sampled)
            info = RoundInfo(0, tuple(int(k) for k in sampled), late_dropped=late)
            # Charged before the session: with distributed noise its sum is the release.
            charges = [privacy.spend_gaussian(0, sigma, "|".join(c),
                                              honest_shares=self._shares(sampled),
                                              cells=self.workload.n_cells(c))
                       for c in one_ways]
            try:
                parts, d1 = self._one_ways(0, sampled, late, sigma, None)
                break
            except FlaimRoundError as err:
                for ch in charges:
                    privacy.refund(ch, "round 0: secure aggregation failed, nothing released")
                if attempt == ROUND0_ATTEMPTS:
                    raise FlaimRoundError(0, f"{ROUND0_ATTEMPTS} fresh samples all failed "
                                          "secure aggregation; at --dropout "
                                          f"{self.dropout:g} no round can succeed: lower "
                                          "--dropout (a SecAgg+ secret needs a majority of "
                                          "its holders: a round of |S| clients needs "
                                          "2·round(dropout·|S|) < |S| − 1; last failure: "
                                          f"{err.reason.split(' (owner')[0]})") from None
        info.secagg_seconds = time.perf_counter() - t0
        out = self._release_one_ways(0, parts, sigma, "initial", charges)
        info.seconds = time.perf_counter() - t0
        self.rounds.append(info)
        return out

    def _groups(self, info: RoundInfo, cliques: Sequence[Clique]) -> list[Group]:
        """One group per chosen marginal: its choosers, topped up to ``min_group`` with
        seeded covers (public: the choices and the covers). Its session adds noise shares if
        distributed, or if it has one real chooser (its exact sum would be that client's
        vector)."""
        sampled = info.sampled
        groups = []
        for r in cliques:
            group = [k for k in sampled if info.choices[k] == r]
            need = min(self.min_group, len(sampled)) - len(group)
            covers = choose_covers(group, sampled, need, self.rng_cover) if need > 0 else ()
            shares = len(group) + len(covers) if self.distributed or len(group) < 2 else None
            groups.append((r, group, covers, shares))
        return groups

    def aggregate_round(self, info: RoundInfo, cliques: Sequence[Clique], sigma: float,
                        privacy: PrivacyLedger) -> list[Measurement]:
        """Round ``info.round``'s secure sums of the chosen marginals (and Private's proxy):
        charge, aggregate, noise and release; ``[]`` when the round is skipped."""
        round = info.round
        t0 = time.perf_counter()
        sampled = info.sampled
        info.late_dropped = late = self._late_dropouts(sampled)
        with_proxy = self.variant == "private" and round < self.config.rounds
        # Charge the round's Gaussians (parallel composition over clients) before any sum
        # exists; refunded below if an aggregation fails, as then nothing is released.
        # Groups first (module docstring: lone choosers add noise shares).
        groups = self._groups(info, cliques)
        worst = max(((n, self.workload.n_cells(r)) for r, _, _, n in groups if n),
                    key=lambda nd: worst_slack(sigma, *nd), default=(1, 1))
        charge = privacy.spend_gaussian(round, sigma, "parallel: " + ", ".join(
            "|".join(r) for r in cliques), honest_shares=worst[0], cells=worst[1])
        proxy_charges = [privacy.spend_gaussian(round, sigma, "proxy " + c[0],
                                                honest_shares=self._shares(sampled),
                                                cells=self.workload.n_cells(c))
                         for c in self.workload.one_ways] if with_proxy else []
        sums: list[tuple[Clique, SecureSum, int | None]] = []
        proxy_parts = None
        try:
            for r, group, covers, shares in groups:
                vectors = {k: self.clients[k].marginal(r) for k in group}
                for c in covers:
                    vectors[c] = np.zeros(self.workload.n_cells(r), dtype=np.int64)
                sums.append((r, self._secure(round, vectors, late, f"marginal {'|'.join(r)}",
                                             covers=covers,
                                             noise_sigma=sigma if shares else None), shares))
            if with_proxy:
                proxy_parts, _ = self._one_ways(round, sampled, late, sigma, "proxy")
        except FlaimRoundError:
            # What a deployed FL system does: skip the round. Its Gaussians are refunded
            # (nothing was released); its EM stays charged (the choices were sent).
            for ch in [charge, *proxy_charges]:
                privacy.refund(ch, f"round {round}: secure aggregation failed, nothing "
                               "released")
            info.failed = True
            info.seconds += time.perf_counter() - t0
            self.rounds.append(info)
            return []
        info.secagg_seconds = time.perf_counter() - t0
        out = []
        for r, res, shares in sums:
            noisy = res.sum if shares else add_noise(res.sum, sigma, self.rng_noise)
            privacy.release(charge, f"noisy sum {'|'.join(r)}")
            std = self._std(sigma, shares)
            out.append(population_measurement(
                r, noisy, std, sum_records_estimate(noisy, sigma) if self.scale else None,
                self.population if self.scale else None))
            self.records.append(AggregateRecord(
                round, r, res.contributors, res.covers, res.late_dropped, "choice",
                np.array(res.sum) if self.audit else None, res if self.audit else None,
                shares))
        if proxy_parts is not None:
            out += self._release_one_ways(round, proxy_parts, sigma, "proxy", proxy_charges)
        info.seconds += time.perf_counter() - t0
        self.rounds.append(info)
        return out
