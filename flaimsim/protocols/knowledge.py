"""Who learns what: per party role, what a run shows it, derived from the options that ran.

The mapping goes into every result's privacy block as ``knowledge`` (role -> list of short
strings) and ``flaimsim explain`` prints it. Roles:

- ``client``: a data holder (what it sees of others; its own data it knows anyway);
- ``compute_server``: one MPC server, or any coalition of at most t of them;
- ``aggregator``: FLAIM's aggregation server (DistAIM has none; central AIM's curator is
  listed here, as the one party that holds the data);
- ``downstream``: anyone who receives the outputs (model, synthetic table, noisy marginals).

The claims are those of docs/privacy.md; tests in tests/test_privacy_stance.py check that
the strings follow the options (e.g. a lone chooser is never said to reach the aggregator
exactly, the MPC bound appears only where MPC runs).
"""

from __future__ import annotations

from flaimsim.protocols.config import RunConfig

ROLES = ("client", "compute_server", "aggregator", "downstream")

DOWNSTREAM = ["the selected marginals (DP outputs of the selection mechanism)",
              "every noisy marginal measured (the model's inputs)",
              "the fitted model and the synthetic table, whose row count is the model's noisy "
              "total (never the exact N)",
              "public parameters: epsilon, delta, T, the workload, the record bound"]


def _distaim(config: RunConfig, kappa: int | None) -> dict[str, list[str]]:
    m, t = config.servers, config.threshold
    server = [f"its own shares of every client's W+ answers ({config.sharing} sharing; any "
              f"{t} server(s) together see values independent of the data)"
              if t >= 1 else
              "EVERY client's exact answers: with t = 0 one server holds all shares "
              "(NOT private; a cost-shaped run only)",
              "which clients contributed, and when (their uploads arrive on its sockets)",
              "the selected index of every round (opened to all servers)",
              f"every noisy marginal (opened; noise = the sum of {m} servers' "
              f"N_Z(0, sigma^2/{m - t}) shares, {m - t} of them honest)"]
    if config.distaim_participation == "poisson":
        server.append("a noisy count of the contributors' records every round (opened after "
                      "its charge)")
    if m == 3 and t == 1:
        server.append("server 0 only, when the counts' field exceeds 62 bits (kappa = 52 on "
                      "Adult): per decomposed cell V = (x - U) mod 2^l and per value moved "
                      "back to that field (y + U') mod P, U and U' pseudorandom values of the "
                      "other two servers' key: each uniform and independent of the data "
                      "(parties/mpc/narrow_field)")
    server.append("masked openings inside comparisons, truncations and bit decompositions: "
                  "each opened element is within statistical distance 2^-"
                  f"{kappa if kappa is not None else 'k'} of one independent of the data "
                  "(the delta term mpc-statistical)")
    return {
        "client": ["nothing from the other parties: it only uploads its shares once",
                   "the public upload size (the W+ vector, fixed by the workload)"],
        "compute_server": server,
        "aggregator": ["(DistAIM has no aggregator)"],
        "downstream": list(DOWNSTREAM),
    }


def _flaim(config: RunConfig) -> dict[str, list[str]]:
    distributed = config.flaim_noise == "distributed"
    servers = config.aggregation == "servers"
    route = ("the sum opened to it by compute server 0" if servers
             else "the SecAgg+ sum it unmasks")
    agg = ["which clients were sampled each round (it samples them and sends the model)",
           "each sampled client's chosen marginal, in the clear (an output of the client's "
           "local exponential mechanism, charged before it is sent)",
           "the size of every group of choosers, and which clients covered a lone chooser"]
    if servers:
        agg.append("nothing of one client's vector: clients secret-share it to the servers")
    else:
        agg.append("SecAgg+ traffic: public keys, encrypted key shares, masked inputs "
                   "(uniform mod 2^b), the ids of clients that dropped")
    if distributed:
        agg.append(f"noisy sums only: {route}, in which every contributor added an "
                   "N_Z(0, sigma^2/n) share (KLS21); it adds no noise itself")
    else:
        agg.append(f"the exact sum of each chosen marginal over its >= 2 choosers "
                   f"({route}), to which it adds N_Z(0, sigma^2) itself")
        agg.append("a lone chooser's marginal only as a noisy sum: the chooser and its cover "
                   "clients add N_Z(0, sigma^2/n) shares before masking")
    if config.protocol == "aug-flaim-private":
        agg.append("the sampled clients' one-way marginals summed each round ("
                   + ("noisy sums" if distributed else "exact sums over >= 2 clients") + ")")
    else:
        agg.append("the round-0 one-way marginals summed over the sample ("
                   + ("noisy sums" if distributed else "exact sums over >= 2 clients") + ")")
    if config.protocol == "aug-flaim-oracle":
        agg.append("NOT private: the oracle's heterogeneity tau_k is computed from the union "
                   "of all clients' data (a reference point only)")
    server = (["its Shamir shares of each session's client vectors (random-looking with "
               f"t = {config.threshold})" if config.threshold >= 1 else
               "EVERY client vector of every session: with t = 0 one server holds all shares "
               "(NOT private)",
               "nothing opened to it: server 0 forwards the opened sum to the aggregator"]
              if servers else ["(no compute servers: aggregation by SecAgg+)"])
    return {
        "client": ["the current model each round it is sampled (post-processing of DP "
                   "outputs)",
                   "its SecAgg+ neighbours' public keys and encrypted shares of their secrets "
                   "(fewer than t shares of any one secret)" if not servers else
                   "nothing from other clients",
                   "the public group size of each session it joins"],
        "compute_server": server,
        "aggregator": agg,
        "downstream": list(DOWNSTREAM),
    }


def knowledge(config: RunConfig, kappa: int | None = None) -> dict[str, list[str]]:
    """role -> what that party sees in this run (module docstring); ``kappa``: the MPC
    statistical security parameter the servers ran with (DistAIM)."""
    if config.protocol == "central":
        return {"client": ["nothing: it hands its records to the curator"],
                "compute_server": ["(central AIM has no compute servers)"],
                "aggregator": ["every record: central AIM's trusted curator holds the union "
                               "of the data (a reference point, not a federated protocol)"],
                "downstream": list(DOWNSTREAM)}
    if config.protocol == "distaim":
        return _distaim(config, kappa)
    return _flaim(config)


def format_knowledge(block: dict[str, list[str]]) -> str:
    """The mapping as indented lines for the terminal."""
    lines = ["who learns what:"]
    for role in ROLES:
        lines.append(f"  {role}:")
        lines += [f"    - {s}" for s in block.get(role, [])]
    return "\n".join(lines)


__all__ = ["ROLES", "format_knowledge", "knowledge"]
