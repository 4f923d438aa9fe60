"""What happens in each (protocol, phase), in words, derived from the options that ran.

``flaimsim explain`` (text) and ``flaimsim explain --html`` (the sequence diagram) both
narrate from :func:`phase_text`, so the story follows the run: the client encoding
(``--sharing``), the score (``--score``), the selection mechanism (``--em``), DistAIM's
participation, the number of servers m and their threshold t, FLAIM's dropout. Each text
says what is opened, and to whom.
"""

from __future__ import annotations

from flaimsim.protocols.config import RunConfig, public_record_bound


def _share_inputs(c: RunConfig) -> str:
    # here, not at the top: input_sharing imports MPyC, which parses sys.argv on import and
    # the command line builds its parser (importing this module) before it hides its options
    from flaimsim.parties.mpc.input_sharing import SEED_BYTES, compact_width

    m, t = c.servers, c.threshold
    others = f"server 1" if m == 2 else f"servers 1..{m - 1}"
    when = ("every client shares once, in round 0" if c.distaim_participation == "all" else
            f"each client shares when it is first sampled (Poisson p = {c.participation:g})")
    bound = public_record_bound(c)
    if c.sharing == "compact":
        b = compact_width(bound) if bound else "b"
        how = (f"compact additive shares mod 2^{b} (b = {b} bits holds the public record "
               f"bound {bound}): server 0 gets one packed vector x − Σ PRG(s_j) at {b} bits "
               f"per count, {others} each get only a {SEED_BYTES}-byte seed s_j (the small "
               "flows); then each server inputs its summed piece to MPyC, which is the "
               "server-to-server traffic of this phase")
    elif c.sharing == "additive":
        how = (f"additive shares mod p: server 0 gets x − Σ PRG(s_j) mod p as field "
               f"elements, {others} each get a {SEED_BYTES}-byte seed s_j; the servers then "
               "convert their summed pieces to Shamir form inside MPyC (server-to-server)")
    else:
        how = (f"Shamir shares of degree t = {t}, one full vector of field elements per "
               f"server; no conversion is needed")
    secret = (f"any {t} server(s) together see nothing of x" if t > 0 else
              "t = 0: with 2 servers, one server's view is not protected")
    return (f"each client encodes its answers to every W+ marginal (one vector x of counts) "
            f"as {how}. {when[0].upper() + when[1:]}; {secret}. Nothing is opened")


def _score(c: RunConfig) -> str:
    unwrap = (" (compact shares: the servers first take the b low bits of their summed "
              "pieces, from the same bit decomposition)" if c.sharing == "compact" else "")
    if c.score == "l1":
        what = ("in round 0 the one-off bit decomposition of every cell" + unwrap + ", then "
                "each round every candidate's L1 quality score against the public model "
                f"(per-cell comparisons and multiplications at {c.score_frac_bits} fractional "
                "bits)")
    else:
        what = ("each round every candidate's L2 distance to the public model (squares and "
                f"sums at {c.score_frac_bits} fractional bits, no per-cell comparison)"
                + unwrap)
    return (f"the servers work on the secret-shared aggregate: {what}. Each operation is a "
            "chain of server-to-server message rounds: this is where MPC is expensive. "
            "Nothing is opened")


def _select(c: RunConfig) -> str:
    if c.em == "gumbel":
        how = ("secure exponential mechanism: the servers jointly add Gumbel noise to every "
               "score and take the arg max, i.e. draw a candidate with probability ∝ "
               "exp(ε_t·score/2Δ)")
    else:
        how = ("report-noisy-max at ε_t/2: the servers add noise to every score and take the "
               "arg max")
    return (f"{how}. Opened: only the chosen index, to the {c.servers} servers and the "
            "driver; the scores stay secret")


def _measure(c: RunConfig) -> str:
    m, t = c.servers, c.threshold
    return (f"each server inputs discrete Gaussian noise shares N_Z(0, σ²/{m - t}); the sum "
            "over the servers carries at least the noise of σ. Opened: each noisy marginal "
            "measured (round 0: every one-way marginal; later: the chosen candidate), to the "
            "servers and the driver, which fits the public model")


def _flaim(c: RunConfig, phase: str) -> str:
    noise = getattr(c, "flaim_noise", "central")  # the option arrives with another helper
    unmask_noise = ("exact; the aggregator then adds discrete Gaussian noise N_Z(0, σ²) "
                    "itself and releases only the noisy sum (central noise)"
                    if noise == "central" else
                    "already noisy: every contributor added an N_Z(0, σ²/n) share before "
                    "masking (distributed noise), and the aggregator adds none")
    drop = (f"; clients drop out at rate {c.dropout:g}, so every session runs over the whole "
            "sample (the other clients send zeros) and a majority of each client's "
            "neighbours (t = floor(k/2) + 1) lets the aggregator unmask the rest"
            if c.dropout > 0 else "")
    texts = {
        "setup": "the clients connect to the aggregator",
        "model-broadcast": "the aggregator sends the current model's parameters to the "
                           "sampled clients (one framed message per client, counted on its "
                           "loopback TCP connection)",
        "select": "each sampled client scores the candidates on its own data, draws one with "
                  "a local exponential mechanism and sends the index in the clear. Opened: "
                  "each client's choice, to the aggregator (a DP output)",
        "secagg-keys": "SecAgg+ steps 1 and 2 (one ledger phase): (1) advertise keys: each "
                       "client sends two public keys, the aggregator relays them to the "
                       "client's neighbours; (2) share keys: each client Shamir-shares its "
                       "mask secrets among its neighbours, encrypted and routed through the "
                       "aggregator. Nothing is opened",
        "secagg-masked-input": "SecAgg+ step 3, masked input: each client sends its marginal "
                               "vector under pairwise and self masks; it looks random to the "
                               "aggregator",
        "secagg-unmask": f"SecAgg+ step 4, unmask: the surviving clients send the key shares "
                         f"that let the aggregator remove the masks{drop}. Opened to the "
                         f"aggregator: the sum over the session's clients (a lone chooser's "
                         f"session is joined by cover clients, and that session's clients "
                         f"add noise shares, so no sum is one client's exact vector), "
                         f"{unmask_noise}",
        "proxy": "AugFLAIM (Private): sampled clients also submit their one-way marginals by "
                 "secure aggregation, to estimate heterogeneity privately. Opened: the noisy "
                 "sum, to the aggregator",
        "share-inputs": f"--aggregation servers: each client secret-shares its vector to the "
                        f"{c.servers} compute servers instead of SecAgg+",
        "measure": "the compute servers add noise shares; the noisy sum is opened to them",
    }
    return texts.get(phase, "")


def phase_text(protocol: str, phase: str, config: RunConfig) -> str:
    """What happens in ``phase`` of ``protocol`` under ``config``, and what is opened to whom."""
    if protocol != "distaim":
        return _flaim(config, phase)
    m = config.servers
    texts = {
        "setup": f"MPyC connects the {m} servers pairwise: each connection opens with the "
                 "connecting server's id (2 B) and its PRSS keys; then each server sends every "
                 "other the digest of its --peers list; counted where written and read",
        "share-inputs": _share_inputs(config), "score": _score(config),
        "select": _select(config), "measure": _measure(config),
    }
    return texts.get(phase, "")


def phase_texts(protocol: str, config: RunConfig, phases: tuple[str, ...]) -> dict[str, str]:
    return {p: phase_text(protocol, p, config) for p in phases}


__all__ = ["phase_text", "phase_texts"]
