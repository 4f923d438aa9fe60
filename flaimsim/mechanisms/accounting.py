"""Zero-concentrated DP accounting: (ε, δ) → ρ, mechanism costs and a ledger that refuses to
overspend.

Conversion (Canonne, Kamath, Steinke 2020, Prop. 12): ρ-zCDP implies (ε, δ)-DP with

    δ(ρ, ε) = inf_{α>1} exp((α−1)(αρ−ε)) / (α−1) · (1 − 1/α)^α,

and the budget ρ for a target (ε, δ) is the largest ρ with δ(ρ, ε) ≤ δ, found by bisection.

Costs, each for neighbouring data sets differing by one record (add/remove):
- Gaussian mechanism with L2 sensitivity Δ₂ and std σ: Δ₂² / (2σ²);
- exponential mechanism with parameter ε (utility sensitivity folded into ε): ε²/8
  (bounded-range analysis, Cesar & Rogers 2021).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field



class BudgetError(ValueError):
    """A spend that would exceed the privacy budget, or a budget that cannot be met."""


def cdp_delta(rho: float, eps: float) -> float:
    """Smallest δ such that ρ-zCDP implies (ε, δ)-DP (CKS 2020, tight conversion)."""
    if rho < 0 or eps < 0:
        raise ValueError("rho and eps must be non-negative")
    if rho == 0:
        return 0.0
    amin, amax = 1.01, (eps + 1) / (2 * rho) + 2
    for _ in range(1000):
        alpha = (amin + amax) / 2
        derivative = (2 * alpha - 1) * rho - eps + math.log1p(-1.0 / alpha)
        if derivative < 0:
            amin = alpha
        else:
            amax = alpha
    alpha = (amin + amax) / 2
    delta = math.exp((alpha - 1) * (alpha * rho - eps) + alpha * math.log1p(-1 / alpha)) / (
        alpha - 1.0)
    return min(delta, 1.0)


def cdp_rho(eps: float, delta: float) -> float:
    """Largest ρ such that ρ-zCDP implies (ε, δ)-DP, by bisection on :func:`cdp_delta`."""
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"epsilon must be a positive finite number, got {eps}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if cdp_delta(0.0, eps) >= delta:
        return 0.0
    rhomin, rhomax = 0.0, eps + 1
    for _ in range(1000):
        rho = (rhomin + rhomax) / 2
        if cdp_delta(rho, eps) <= delta:
            rhomin = rho
        else:
            rhomax = rho
    return rhomin


def gaussian_cost(sigma: float, l2_sensitivity: float = 1.0) -> float:
    """zCDP cost Δ₂²/(2σ²) of one Gaussian measurement."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return l2_sensitivity ** 2 / (2 * sigma ** 2)


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
    n_measurements/(2σ²) + T·ε_t²/8 = ρ exactly.
    """

    rho: float
    rounds: int
    alpha: float
    n_measurements: int
    sigma: float
    epsilon_select: float

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


@dataclass(frozen=True)
class Spend:
    round: int
    mechanism: str
    rho: float
    detail: str = ""


@dataclass
class PrivacyLedger:
    """Running zCDP spend against a budget ρ; refuses any spend that would exceed it."""

    rho_budget: float
    spends: list[Spend] = field(default_factory=list)
    # Floating-point slack only: schedules are built to spend exactly ρ.
    tolerance: float = 1e-9

    @property
    def rho_spent(self) -> float:
        return float(math.fsum(s.rho for s in self.spends))

    @property
    def rho_remaining(self) -> float:
        return self.rho_budget - self.rho_spent

    def can_spend(self, rho: float) -> bool:
        return self.rho_spent + rho <= self.rho_budget * (1 + self.tolerance)

    def spend(self, round: int, mechanism: str, rho: float, detail: str = "") -> None:
        if rho < 0:
            raise ValueError("a spend cannot be negative")
        if not self.can_spend(rho):
            raise BudgetError(
                f"round {round}: {mechanism} costs rho={rho:.6g} but only "
                f"{max(self.rho_remaining, 0):.6g} of {self.rho_budget:.6g} remains")
        self.spends.append(Spend(int(round), mechanism, float(rho), detail))

    def spend_gaussian(self, round: int, sigma: float, detail: str = "",
                       l2_sensitivity: float = 1.0) -> None:
        self.spend(round, "gaussian", gaussian_cost(sigma, l2_sensitivity), detail)

    def spend_exponential(self, round: int, epsilon: float, detail: str = "") -> None:
        self.spend(round, "exponential", exponential_cost(epsilon), detail)

    def to_records(self) -> list[dict]:
        return [s.__dict__.copy() for s in self.spends]
