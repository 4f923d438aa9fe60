"""The ``privacy`` block of result.json: what a run's privacy claim is, term by term.

ρ components (``rho_by_mechanism``) are the privacy ledger's charges by kind and add up to
``rho_spent`` (= the budget for the fixed schedule). ``delta`` is the sum of ``delta_terms``:
the zCDP → (ε, δ) conversion of ρ_spent (CKS20 Prop. 12, ≤ the configured δ) plus
(1 + e^ε)·τ for every mechanism that deviates from its ideal law by total variation τ
(:mod:`flaimsim.mechanisms.accounting`). MPyC's statistical masking bounds the MPC servers'
view rather than the outputs' law: DistAIM lists it among the δ terms as ``mpc-statistical``
(conservatively: δ then covers the t servers' view too) and its parts under
``security_terms``. ``knowledge`` says, per party role, what the run showed it.
"""

from __future__ import annotations

import math
from typing import Any

from flaimsim.mechanisms.accounting import NEIGHBOURING, PrivacyLedger
from flaimsim.mechanisms.discrete_gaussian import NOISE_LAW
from flaimsim.parties.distaim.options import MpcMode
from flaimsim.protocols.config import Aggregation, RunConfig
from flaimsim.protocols.knowledge import knowledge
from flaimsim.protocols.mpc_security import delta_term, masked_openings_bound, resolve_kappa
from flaimsim.protocols.prepare import NOT_PUBLIC_BOUND_NOTE, PreparedData

DELTA_TERM_NOTES = {
    "zcdp_conversion": "rho-zCDP -> (epsilon, delta) conversion of rho_spent (CKS20 Prop. 12)",
    "gumbel-truncation": "secure EM: Gumbel noise's geometric parts capped at B bits; total "
                         "variation <= 2k 2^-B per selection over k candidates, times "
                         "(1 + e^epsilon) (parties/distaim/secure_em.py)",
    "mpc-statistical": "MPC masked openings: U masked elements (a bound from the run's plan), "
                       "each within 2^-kappa of data-independent, so any t servers' view is "
                       "within U 2^-kappa of a simulation from the outputs; times "
                       "(1 + e^epsilon) (protocols/mpc_security.py). Bounds the servers' "
                       "view; the outputs' own delta does not need it",
}
RHO_NOTES = {
    "gaussian": "discrete Gaussian N_Z(0, sigma^2) on a count vector: 1/(2 sigma^2) (CKS20)",
    "exponential": "exponential mechanism: epsilon_t^2/8 (bounded range)",
    "dgauss-sum-slack": "sum of the m - t honest servers' N_Z(0, sigma^2/(m - t)) shares: "
                        "Kairouz-Liu-Steinke 2021 Prop. 14 slack tau/sigma + tau^2 d/2 over "
                        "1/(2 sigma^2), tau = 10 sum_{k=1}^{m-t-1} exp(-2 pi^2 sigma^2 "
                        "k/((m-t)(k+1)))",
}


def mpyc_sec_param() -> int:
    """MPyC's statistical security parameter k as the servers run it (its default)."""
    import mpyc

    return int(mpyc._get_arg_parser().get_default("sec_param"))  # private but stable


def _noise(config: RunConfig) -> dict[str, Any]:
    if config.protocol == "distaim":
        m, t = config.servers, config.threshold
        return {"law": NOISE_LAW,
                "added": f"sum of m = {m} server shares, each N_Z(0, sigma^2/{m - t}) "
                         f"(m - t = {m - t})",
                "randomness": "OS CSPRNG in each server (cannot be seeded)"
                if config.mpc is MpcMode.REAL else "seeded 'mechanisms' stream (ideal functionality)",
                "fit_variance": f"exact variance of the sum: {m} Var N_Z(0, sigma^2/{m - t})"}
    stream_name = "mechanisms" if config.protocol == "central" else "noise"
    return {"law": NOISE_LAW, "added": "N_Z(0, sigma^2) once per measured marginal",
            "randomness": f"seeded {stream_name!r} stream (reproducible from the run seed)",
            "fit_variance": "exact variance of N_Z(0, sigma^2) (< sigma^2)"}


def _mpc(config: RunConfig) -> bool:
    return config.protocol == "distaim" or (config.aggregation is Aggregation.SERVERS
                                            and config.protocol != "central")


def privacy_block(config: RunConfig, data: PreparedData, privacy: PrivacyLedger,
                  notes: list[str] | None = None) -> dict[str, Any]:
    """The ``privacy`` block (module docstring); checks the charge/release order first."""
    privacy.check_order()
    terms = privacy.delta_terms(config.epsilon)
    kappa = bound_u = None
    if config.protocol == "distaim" and data.record_bound is not None:
        kappa = resolve_kappa(config, data.workload, data.record_bound.value)
        bound_u = masked_openings_bound(config, data.workload, data.record_bound.value)
        terms["mpc-statistical"] = delta_term(config.epsilon, bound_u, kappa)
    rho = privacy.rho_by_mechanism()
    events = privacy.events
    out_notes = list(notes or [])
    bound = data.record_bound
    if bound is not None and not bound.public:
        out_notes.append(NOT_PUBLIC_BOUND_NOTE)
    if config.protocol == "aug-flaim-oracle":
        out_notes.append("aug-flaim-oracle is NOT differentially private (true heterogeneity)")
    if config.protocol == "distaim" and config.threshold == 0:
        out_notes.append("t = 0: every server sees the data; the DP claim covers the outputs only")
    if config.protocol != "central" and config.protocol != "distaim":
        out_notes.append("central-noise FLAIM: the aggregator sees exact sums; DP covers what "
                         "it releases")
    block: dict[str, Any] = {
        "neighbouring": NEIGHBOURING,
        "epsilon": config.epsilon, "delta_target": config.delta,
        "rho_budget": privacy.rho_budget, "rho_spent": privacy.rho_spent,
        "rho_by_mechanism": rho,
        "rho_notes": {k: RHO_NOTES.get(k, "") for k in rho},
        "delta": math.fsum(terms.values()),
        "delta_terms": terms,
        "delta_notes": {k: DELTA_TERM_NOTES.get(k, "") for k in terms},
        "noise": _noise(config),
        "servers": config.servers if _mpc(config) else None,
        "threshold": config.threshold if _mpc(config) else None,
        "record_bound": bound.to_dict() if bound else None,
        "order": {"charges": sum(e.kind == "charge" for e in events),
                  "releases": sum(e.kind == "release" for e in events),
                  "refunds": sum(e.kind == "refund" for e in events),
                  # check_order() above raised otherwise
                  "every_release_after_its_charge": True},
        "notes": out_notes,
        # who sees what, per party role (protocols/knowledge.py; docs/privacy.md)
        "knowledge": knowledge(config, kappa),
    }
    if _mpc(config):
        k = kappa if kappa is not None else mpyc_sec_param()
        block["security_terms"] = {
            "mpyc_sec_param": k,
            "masked_openings_bound": bound_u,
            "masked_openings_union_bound": None if bound_u is None else bound_u * 2.0 ** -k,
            "note": f"MPyC masks values opened inside comparisons, truncations and random-bit "
                    f"generation with k = {k} extra random bits: each such opening is within "
                    f"statistical distance 2^-{k} of one independent of the data. The union "
                    "bound over the run's masked elements bounds what a coalition of t "
                    "servers learns beyond the outputs; DistAIM lists it, times (1 + e^eps), "
                    "as the delta term mpc-statistical (it bounds the servers' view, not the "
                    "outputs' law). FLAIM's server aggregation opens no masked values"}
    return block


def format_privacy(protocol: str, block: dict[str, Any]) -> str:
    """Two lines for the terminal: ρ by kind (summing to ρ spent) and δ by term."""
    rho = " + ".join(f"{k} {v:.4g}" for k, v in block["rho_by_mechanism"].items())
    delta = " + ".join(f"{k} {v:.4g}" for k, v in block["delta_terms"].items())
    t = "" if block["threshold"] is None else f", t = {block['threshold']} of " \
        f"{block['servers']} servers"
    bound = block["record_bound"]
    public = "" if bound is None else f", record bound {bound['value']} " \
        f"({'public' if bound['public'] else 'NOT public'})"
    return (f"privacy ({protocol}, {block['neighbouring']}{t}{public}): rho "
            f"{block['rho_spent']:.4g} = {rho}\n  delta {block['delta']:.4g} = {delta}; "
            f"noise {block['noise']['law']}")


__all__ = ["DELTA_TERM_NOTES", "RHO_NOTES", "format_privacy", "mpyc_sec_param",
           "privacy_block"]
