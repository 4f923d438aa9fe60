"""Zero-concentrated DP accounting: (ε, δ) → ρ, mechanism costs and a ledger that refuses to
overspend.

Conversion (Canonne, Kamath, Steinke 2020, Prop. 12): ρ-zCDP implies (ε, δ)-DP with

    δ(ρ, ε) = inf_{α>1} exp((α−1)(αρ−ε)) / (α−1) · (1 − 1/α)^α,

and the budget ρ for a target (ε, δ) is the largest ρ with δ(ρ, ε) ≤ δ, found by bisection.

Costs, each for neighbouring data sets differing by one record (add/remove):
- discrete Gaussian N_Z(0, σ²) on a vector of L2 sensitivity Δ₂: Δ₂² / (2σ²) exactly
  (Canonne, Kamath, Steinke 2020, Thm. 4); every protocol's noise is this law;
- a sum of n independent N_Z(0, σ²/n) shares (DistAIM's honest servers): Δ₂²/(2σ²) plus the
  slack of :func:`distributed_noise_slack` (Kairouz, Liu, Steinke 2021), charged as its own
  spend kind ``dgauss-sum-slack``;
- exponential mechanism with parameter ε (utility sensitivity folded into ε): ε²/8
  (bounded-range analysis, Cesar & Rogers 2021).

Order: a mechanism charges the ledger before its output is released; ``release`` names the
charge that pays for it and fails without one (:class:`PrivacyOrderError`). A charge is
refunded only if nothing it paid for was released.

δ terms beyond the zCDP conversion: a mechanism whose output law is within total variation τ
of its ideal law (e.g. the secure EM's Gumbel noise capped at B bits) records τ with
``add_deviation``. Coupling the actual run with the ideal one, the run's output is within
τ_run = Σ τ of the ideal run's for every data set, so (ε, δ)-DP of the ideal run gives
(ε, δ + (1 + e^ε)·τ_run)-DP of the actual one (:meth:`PrivacyLedger.delta_terms`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Callable

NEIGHBOURING = "add/remove one record"



class BudgetError(ValueError):
    """A spend that would exceed the privacy budget, or a budget that cannot be met."""


def _bisect(below: Callable[[float], bool], lo: float, hi: float, steps: int = 1000
            ) -> tuple[float, float]:
    """Up to ``steps`` halvings of [lo, hi]: lo moves to the midpoint where ``below`` holds,
    else hi does. Stops early once a halving leaves the interval unchanged (floating point
    reaches that in ~60 steps), which is then its state for every further step: the result
    equals that of all ``steps`` halvings exactly."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        new = (mid, hi) if below(mid) else (lo, mid)
        if new == (lo, hi):
            break
        lo, hi = new
    return lo, hi


def cdp_delta(rho: float, eps: float) -> float:
    """Smallest δ such that ρ-zCDP implies (ε, δ)-DP (CKS 2020, tight conversion)."""
    if rho < 0 or eps < 0:
        raise ValueError("rho and eps must be non-negative")
    if rho == 0:
        return 0.0
    # the minimising α: the derivative (2α − 1)ρ − ε + log(1 − 1/α) of the exponent is 0
    amin, amax = _bisect(
        lambda a: (2 * a - 1) * rho - eps + math.log1p(-1.0 / a) < 0,
        1.01, (eps + 1) / (2 * rho) + 2)
    alpha = (amin + amax) / 2
    delta = math.exp((alpha - 1) * (alpha * rho - eps) + alpha * math.log1p(-1 / alpha)) / (
        alpha - 1.0)
    return min(delta, 1.0)


@functools.lru_cache(maxsize=256)
def cdp_rho(eps: float, delta: float) -> float:
    """Largest ρ such that ρ-zCDP implies (ε, δ)-DP, by bisection on :func:`cdp_delta`."""
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"epsilon must be a positive finite number, got {eps}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if cdp_delta(0.0, eps) >= delta:
        return 0.0
    rhomin, _ = _bisect(lambda r: cdp_delta(r, eps) <= delta, 0.0, eps + 1)
    return rhomin


def gaussian_cost(sigma: float, l2_sensitivity: float = 1.0) -> float:
    """zCDP cost Δ₂²/(2σ²) of one Gaussian measurement."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return l2_sensitivity ** 2 / (2 * sigma ** 2)


def distributed_noise_slack(sigma: float, honest: int, cells: int) -> float:
    """Extra ρ of a sum of ``honest`` = n i.i.d. N_Z(0, σ²/n) shares over the ideal 1/(2σ²).

    Kairouz, Liu, Steinke 2021 (The Distributed Discrete Gaussian Mechanism for Federated
    Learning with Secure Aggregation), Prop. 14 / Thm. 11 with per-share s² = σ²/n (s ≥ 1/2),
    sensitivities Δ₁ = Δ₂ = 1 (one record changes one cell of a count vector by one) and d
    cells: the sum is ρ-zCDP with ρ = ½(Δ₂/(√n s) + τ√d)² or ½(Δ₂²/(n s²) + 2Δ₁τ/(√n s) + τ²d),
    τ = 10·Σ_{k=1}^{n−1} exp(−2π² s² k/(k+1)). Since √n s = σ the smaller of the two is
    1/(2σ²) + τ/σ + τ²d/2 (d ≥ 1); this returns τ/σ + τ²d/2 (0 for n = 1: CKS20 exactly).
    """
    if not sigma > 0 or honest < 1 or cells < 1:
        raise ValueError(f"need sigma > 0, honest >= 1, cells >= 1; got {sigma}, {honest}, "
                         f"{cells}")
    s2 = sigma ** 2 / honest
    if s2 < 0.25:
        raise BudgetError(f"KLS21's bound needs per-share s >= 1/2, got s^2 = {s2:.3g}")
    tau = 10 * math.fsum(math.exp(-2 * math.pi ** 2 * s2 * k / (k + 1))
                         for k in range(1, honest))
    return tau / sigma + tau ** 2 * cells / 2


def worst_slack(sigma: float, honest: int, cells: int) -> float:
    """:func:`distributed_noise_slack`, or inf where KLS21's bound does not apply (s < 1/2)."""
    try:
        return distributed_noise_slack(sigma, honest, cells)
    except BudgetError:
        return math.inf


def gumbel_truncation_tv(candidates: int, bits: int) -> float:
    """Total variation of a secure Gumbel-max EM whose geometric parts K, J are capped at B
    bits from the uncapped one: each capped Geom(1/2) moves mass 2^−(B+1), two per candidate,
    so ≤ k·2^−B; we state secure_em's rounder 2k·2^−B."""
    return 2 * candidates * 2.0 ** -bits


def exponential_cost(epsilon: float) -> float:
    """zCDP cost ε²/8 of the exponential mechanism (bounded range)."""
    if epsilon < 0:
        raise ValueError(f"epsilon must be non-negative, got {epsilon}")
    return epsilon ** 2 / 8


@dataclass(frozen=True)
class AimSchedule:
    """Fixed-T AIM schedule: σ for every measurement and ε_t for every selection.

    With ``n_measurements`` Gaussian measurements and T selections under budget ρ and
    measurement share α: σ = sqrt(n_measurements / (2αρ)), ε_t = sqrt(8(1−α)ρ / T), so that
    n_measurements/(2σ²) + T·ε_t²/8 = ρ exactly; a reserving schedule uses ρ − ``reserved``
    in those formulas and keeps ``rho`` as the budget.
    """

    rho: float
    rounds: int
    alpha: float
    n_measurements: int
    sigma: float
    epsilon_select: float
    reserved: float = 0.0     # ρ kept back for KLS21's slack (:meth:`reserving`)

    @staticmethod
    def fixed(rho: float, rounds: int, n_measurements: int, alpha: float = 0.9) -> "AimSchedule":
        if rounds < 1:
            raise BudgetError(f"rounds must be >= 1, got {rounds}")
        if not 0 < alpha < 1:
            raise BudgetError(f"alpha must be in (0, 1), got {alpha}")
        if rho <= 0:
            raise BudgetError(f"budget rho must be positive, got {rho}")
        if n_measurements < 1:
            raise BudgetError("at least one measurement is required")
        sigma = math.sqrt(n_measurements / (2 * alpha * rho))
        eps_t = math.sqrt(8 * (1 - alpha) * rho / rounds)
        return AimSchedule(rho, rounds, alpha, n_measurements, sigma, eps_t)

    @property
    def total_cost(self) -> float:
        return self.n_measurements * gaussian_cost(self.sigma) + self.rounds * exponential_cost(
            self.epsilon_select)

    @staticmethod
    def reserving(rho: float, rounds: int, n_measurements: int, alpha: float,
                  slack: Callable[[float], float] | None) -> "AimSchedule":
        """The fixed schedule over ρ' ≤ ρ that leaves room for ``slack(σ)``, the most extra ρ
        the run can charge on top of its measurements at σ (KLS21's slack of summed noise
        shares): the largest ρ' with ρ' + slack(σ(ρ')) ≤ ρ, by bisection (ρ' + slack(σ(ρ'))
        grows with ρ', as σ falls and the slack grows). ``slack`` returns inf where its bound
        does not hold. A run that starts on this schedule finishes within ρ."""
        full = AimSchedule.fixed(rho, rounds, n_measurements, alpha)
        if slack is None:
            return full

        def fits(r: float) -> bool:
            return r > 0 and r + slack(AimSchedule.fixed(r, rounds, n_measurements,
                                                         alpha).sigma) <= rho
        if fits(rho):
            return full
        lo, _ = _bisect(fits, 0.0, rho)
        if not fits(lo):
            raise BudgetError(f"no schedule within rho = {rho:.6g} leaves room for the "
                              "distributed noise's slack; raise epsilon or lower the rounds")
        # ρ stays the budget (the privacy ledger's); σ and ε_t spend ρ' = ρ − reserved
        return dataclasses.replace(AimSchedule.fixed(lo, rounds, n_measurements, alpha),
                                   rho=rho, reserved=rho - lo)


class PrivacyOrderError(RuntimeError):
    """An output released before the charge that pays for it, or a refund after release."""


@dataclass(frozen=True)
class Spend:
    round: int
    mechanism: str
    rho: float
    detail: str = ""
    charge: int = -1          # event sequence number of the charge


@dataclass(frozen=True)
class PrivacyEvent:
    """One entry of the ledger's order log: a charge, a release, a refund or a deviation."""

    seq: int
    kind: str                 # charge | release | refund | deviation
    round: int
    mechanism: str
    charge: int = -1          # the charge this event refers to (releases, refunds)
    value: float = 0.0        # ρ of a charge or refund; τ of a deviation
    detail: str = ""


@dataclass
class PrivacyLedger:
    """Running zCDP spend against a budget ρ; refuses any spend that would exceed it, and
    any release whose charge is missing (module docstring: order, refunds, deviations)."""

    rho_budget: float
    spends: list[Spend] = field(default_factory=list)
    events: list[PrivacyEvent] = field(default_factory=list)
    # Floating-point slack only: schedules are built to spend exactly ρ.
    tolerance: float = 1e-9
    # (events list, how many of its events are indexed, charges by id, refunded charge ids)
    _index: tuple = field(default_factory=lambda: (None, 0, {}, set()), init=False,
                          repr=False, compare=False)

    @property
    def rho_spent(self) -> float:
        return float(math.fsum(s.rho for s in self.spends))

    @property
    def rho_remaining(self) -> float:
        return self.rho_budget - self.rho_spent

    def can_spend(self, rho: float) -> bool:
        return self.rho_spent + rho <= self.rho_budget * (1 + self.tolerance)

    def _log(self, kind: str, round: int, mechanism: str, charge: int = -1,
             value: float = 0.0, detail: str = "") -> int:
        seq = len(self.events)
        self.events.append(PrivacyEvent(seq, kind, int(round), mechanism, charge, float(value),
                                        detail))
        return seq

    def spend(self, round: int, mechanism: str, rho: float, detail: str = "") -> int:
        """Charge ρ; returns the charge's id for :meth:`release` / :meth:`refund`."""
        if rho < 0:
            raise ValueError("a spend cannot be negative")
        if not self.can_spend(rho):
            raise BudgetError(
                f"round {round}: {mechanism} costs rho={rho:.6g} but only "
                f"{max(self.rho_remaining, 0):.6g} of {self.rho_budget:.6g} remains")
        seq = self._log("charge", round, mechanism, value=rho, detail=detail)
        self.spends.append(Spend(int(round), mechanism, float(rho), detail, seq))
        return seq

    def spend_gaussian(self, round: int, sigma: float, detail: str = "",
                       l2_sensitivity: float = 1.0, honest_shares: int = 1,
                       cells: int = 1) -> int:
        """Charge a discrete Gaussian measurement of parameter σ; with ``honest_shares`` = n > 1
        (a sum of n shares N_Z(0, σ²/n)) also KLS21's slack as kind ``dgauss-sum-slack``."""
        charge = self.spend(round, "gaussian", gaussian_cost(sigma, l2_sensitivity), detail)
        if honest_shares > 1:
            self.spend(round, "dgauss-sum-slack",
                       l2_sensitivity ** 2 * distributed_noise_slack(
                           sigma / l2_sensitivity, honest_shares, cells), detail)
        return charge

    def spend_exponential(self, round: int, epsilon: float, detail: str = "") -> int:
        return self.spend(round, "exponential", exponential_cost(epsilon), detail)

    def _event_index(self) -> tuple[dict[int, PrivacyEvent], set[int]]:
        """The charges by id and the refunded charge ids, over the events logged so far
        (extended, not rebuilt, as events are appended: a long run releases thousands of
        outputs, and a scan of the log per release made that quadratic)."""
        events, done, charges, refunded = self._index
        if events is not self.events or done > len(self.events):  # a new or cut log
            done, charges, refunded = 0, {}, set()
        for e in self.events[done:]:
            if e.kind == "charge":
                charges.setdefault(e.seq, e)
            elif e.kind == "refund":
                refunded.add(e.charge)
        self._index = (self.events, len(self.events), charges, refunded)
        return charges, refunded

    def release(self, charge: int, what: str) -> int:
        """Record that an output paid for by ``charge`` left the mechanism (after the charge)."""
        charges, refunded = self._event_index()
        paid = charges.get(charge)
        if paid is None:
            raise PrivacyOrderError(f"{what} released without a prior charge (id {charge})")
        if charge in refunded:
            raise PrivacyOrderError(f"{what} released on a refunded charge (id {charge})")
        return self._log("release", paid.round, paid.mechanism, charge, detail=what)

    def refund(self, charge: int, reason: str) -> None:
        """Undo ``charge`` (and the slack charged with it) if nothing it paid was released."""
        if any(e.kind == "release" and e.charge == charge for e in self.events):
            raise PrivacyOrderError(f"charge {charge} paid for a release: no refund ({reason})")
        first = next((i for i, s in enumerate(self.spends) if s.charge == charge), None)
        if first is None:
            raise PrivacyOrderError(f"no charge {charge} to refund")
        undone = [self.spends[first]]
        rest = self.spends[first + 1:first + 2]
        if rest and rest[0].mechanism == "dgauss-sum-slack":
            undone += rest
        for s in undone:
            self.spends.remove(s)
            self._log("refund", s.round, s.mechanism, s.charge, s.rho, reason)

    def add_deviation(self, round: int, mechanism: str, tv: float, detail: str = "") -> None:
        """Record a mechanism's total-variation distance τ from its ideal law (a δ term)."""
        if not tv >= 0:
            raise ValueError(f"a total variation must be >= 0, got {tv}")
        self._log("deviation", round, mechanism, value=tv, detail=detail)

    def check_order(self) -> None:
        """Every release comes after its charge, and no refunded charge was released."""
        charged = {e.seq: e for e in self.events if e.kind == "charge"}
        refunded = {e.charge for e in self.events if e.kind == "refund"}
        for e in self.events:
            if e.kind != "release":
                continue
            if e.charge not in charged or charged[e.charge].seq >= e.seq:
                raise PrivacyOrderError(f"release {e.seq} ({e.detail}) precedes its charge")
            if e.charge in refunded:
                raise PrivacyOrderError(f"release {e.seq} ({e.detail}) on a refunded charge")

    def rho_by_mechanism(self) -> dict[str, float]:
        kinds: dict[str, list[float]] = {}
        for s in self.spends:
            kinds.setdefault(s.mechanism, []).append(s.rho)
        return {k: float(math.fsum(v)) for k, v in kinds.items()}

    def deviation_by_mechanism(self) -> dict[str, float]:
        kinds: dict[str, list[float]] = {}
        for e in self.events:
            if e.kind == "deviation":
                kinds.setdefault(e.mechanism, []).append(e.value)
        return {k: float(math.fsum(v)) for k, v in kinds.items()}

    def delta_terms(self, epsilon: float) -> dict[str, float]:
        """δ components at ε: the zCDP conversion of the ρ spent, and (1 + e^ε)·τ per
        deviating mechanism kind (module docstring)."""
        terms = {"zcdp_conversion": cdp_delta(self.rho_spent, epsilon)}
        for kind, tv in self.deviation_by_mechanism().items():
            terms[kind] = (1 + math.exp(epsilon)) * tv
        return terms

    def to_records(self) -> list[dict]:
        return [s.__dict__.copy() for s in self.spends]

    def event_records(self) -> list[dict]:
        return [e.__dict__.copy() for e in self.events]
