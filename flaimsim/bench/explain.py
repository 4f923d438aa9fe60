"""``flaimsim explain``: a tiny run, narrated step by step for teaching.

It runs DistAIM (real MPC: 3 MPyC server processes on loopback, bytes counted on the wire)
and AugFLAIM (Private) (SecAgg+, bytes measured) on a tiny SynthFS (4 clients, 2 rounds) and
prints, per round and phase, who sends what to whom, how many bytes, and what is opened —
read from the ledger rows, DistAIM's reveal log and FLAIM's per-round choices — then each
party's totals and the network model's time on a LAN and a WAN. Each phase's text comes from
:mod:`narration`, derived from the options that ran. ``--html --out E`` also writes
E/explain.html, the same story as a message sequence diagram (:mod:`sequence`).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import replace
from typing import Sequence

from flaimsim.parties.ledger import Ledger, LedgerRow, party_kind
from flaimsim.protocols.config import RunConfig
from flaimsim.protocols.knowledge import format_knowledge
from flaimsim.bench.tiny import TINY, TinyRuns, run_tiny
from flaimsim.bench.network import PHASE_ORDER, PRESETS, wall_time_split
from flaimsim.bench.runs import human_bytes


# Why a phase takes the communication rounds it does (ledger comm_rounds, docs/rounds.md).
WHY_ROUNDS: dict[str, str] = {
    "setup": "all connections open at once, then the --peers digests: two rounds",
    "share-inputs": "clients upload at once (1 round); with additive or compact pieces the "
                    "servers then reshare them to Shamir form (a round per reshare)",
    "score": "bit decomposition and each priced comparison are chains of multiplications, "
             "one round each; independent cells go in the same messages, so the depth is "
             "the longest chain, not the number of cells; in the narrow field (3 servers, "
             "a counts' field above 62 bits) the candidates' sums move back in 10 more rounds",
    "select": "Gumbel noise per candidate, then an argmax tournament of ceil(log2 k) levels, "
              "each level a secure comparison (its bit-wise rounds) and a selection",
    "measure": "per measured marginal, noise shares input (1 round) and the noisy marginal "
               "opened (1); a server that takes a peer's noise shares before sending its "
               "own adds one (docs/rounds.md); plus any bit decomposition of cells measured "
               "before they were scored",
    "model-broadcast": "one message down to each client, all at once: one round",
    "select#flaim": "each client answers the model it received: one round up",
    "secagg-keys": "keys up, neighbours' keys down, encrypted shares up, forwarded down: "
                   "4 rounds for a session's first step pair (3 more per later session: the "
                   "clients' keys go up while the aggregator is still busy)",
    "secagg-masked-input": "masked vectors up: 1 round per session",
    "secagg-unmask": "requests down, shares up: 2 rounds per session",
    "proxy": "one more SecAgg+ session per round of one-way marginals (its 4 steps)",
}


def rounds_line(phase: str, rounds: int, flaim: bool) -> str:
    """``rounds: N (why)`` for one (round, phase) of a narration."""
    why = WHY_ROUNDS.get(f"{phase}#flaim" if flaim else phase) or WHY_ROUNDS.get(phase, "")
    return f"communication rounds: {rounds}" + (f" ({why})" if why else "")


def _group(party: str) -> str:
    return party_kind(party)


def _party_order(party: str) -> tuple[str, int]:
    return party_kind(party), int(party.split(":")[1]) if ":" in party else 0


def _order(link: tuple[str, str]) -> tuple:
    return _party_order(link[0]), _party_order(link[1])


def describe_step(rows: Sequence[LedgerRow], max_flows: int = 6) -> list[str]:
    """Lines for one (round, phase): per direction (kind → kind) flows, messages, bytes."""
    # One flow per (sender, receiver): several sessions in a phase are summed.
    flows: dict[tuple[str, str], LedgerRow] = {}
    for r in rows:
        f = flows.get((r.sender, r.receiver))
        flows[(r.sender, r.receiver)] = r if f is None else replace(
            f, bytes=f.bytes + r.bytes, messages=f.messages + r.messages)
    by_dir: dict[tuple[str, str], list[LedgerRow]] = defaultdict(list)
    for (s, t), r in sorted(flows.items(), key=lambda kv: _order(kv[0])):
        by_dir[(_group(s), _group(t))].append(r)
    lines = []
    for (a, b), rs in sorted(by_dir.items()):
        total = sum(r.bytes for r in rs)
        msgs = sum(r.messages for r in rs)
        senders = len({r.sender for r in rs})
        lines.append(f"{a} → {b}: {len(rs)} flows from {senders} {a}(s), {msgs} messages, "
                     f"{human_bytes(total)} in total")
        if len(rs) <= max_flows:
            lines += [f"    {r.sender} → {r.receiver}: {r.bytes:,} B in {r.messages} msg"
                      for r in rs]
        else:
            sizes = sorted(r.bytes for r in rs)
            lines.append(f"    per flow {sizes[0]:,} … {sizes[-1]:,} B")
    return lines


def narrate(title: str, ledger: Ledger, what: dict[str, str],
            opened: dict[int, list[str]], n_clients: int,
            operations: Sequence[dict[str, Any]] = ()) -> str:
    """The step-by-step story of one run's ledger."""
    steps: dict[tuple[int, str], list[LedgerRow]] = defaultdict(list)
    for r in ledger.rows:
        steps[(r.round, r.phase)].append(r)
    out = [f"=== {title} ===  (bytes: {ledger.bytes_source()})"]
    rounds = sorted({r for r, _ in steps} | set(opened))
    depth = ledger.rounds_by_step()
    flaim = "secagg-keys" in what
    for t in rounds:
        out.append(f"-- round {t}{' (initial one-way measurements)' if t == 0 else ''}")
        for phase in sorted({p for r, p in steps if r == t}, key=PHASE_ORDER.index):
            out.append(f"  [{phase}] {what.get(phase, '')}")
            out += ["    " + line for line in describe_step(steps[(t, phase)])]
            out.append("    " + rounds_line(phase, depth.get((t, phase), 0), flaim))
        for item in opened.get(t, []):
            out.append(f"  opened: {item}")
    tot = ledger.totals()
    out.append("-- totals per party (sent / received)")
    for party in sorted(tot, key=_party_order):
        out.append(f"    {party:<11} {human_bytes(tot[party]['sent']):>10} / "
                   f"{human_bytes(tot[party]['received']):>10}")
    client_total = sum(v["sent"] + v["received"] for p, v in tot.items()
                       if party_kind(p) == "client")
    out.append(f"    per client (sent + received, mean over {n_clients}): "
               f"{human_bytes(client_total / n_clients)}")
    out.append(f"    communication rounds on the critical path: {ledger.comm_rounds} "
               "(phases run one after another; docs/rounds.md)")
    if operations:
        from flaimsim.parties.profile import format_profile

        out.append("-- where the rounds and bytes go, per secure operation (the run's profile)")
        out += ["    " + line for line in format_profile(operations).splitlines()]
    for net in PRESETS.values():
        lat, xfer = wall_time_split(ledger.rows, net)
        out.append(f"    network model, {net.describe()}: {lat + xfer:.3f} s "
                   f"({lat:.3f} s latency + {xfer:.3f} s transfer)")
    return "\n".join(out)


def explain(config: RunConfig | None = None, bill: bool = True,
            tiny: TinyRuns | None = None) -> str:
    """Run the tiny DistAIM and AugFLAIM (Private) (or take ``tiny``) and return the
    narration; ``bill`` adds DistAIM's cost by option (:mod:`flaimsim.bench.option_bill`)."""
    tiny = tiny or run_tiny(config)
    config, K = tiny.config, tiny.clients
    parts = [tiny.head() + "\n"]
    for i, story in enumerate(tiny.stories()):
        parts += [""] * (i > 0) + [narrate(story.title, story.ledger, story.texts,
                                          story.opened, K, story.operations)]
        record = (tiny.distaim if story.protocol == "distaim" else tiny.flaim).record
        parts.append(format_knowledge(record["privacy"]["knowledge"]))
    distaim, flaim = tiny.distaim, tiny.flaim
    dt, ft = distaim.ledger.totals(), flaim.ledger.totals()
    mpc = sum(v["sent"] for p, v in dt.items() if party_kind(p) == "server")
    client_d = sum(v["sent"] + v["received"] for p, v in dt.items()
                   if party_kind(p) == "client") / K
    client_f = sum(v["sent"] + v["received"] for p, v in ft.items()
                   if party_kind(p) == "client") / K
    parts += ["", "=== What to take away ===",
              f"DistAIM: each client pays once ({human_bytes(client_d)}) to share all its "
              f"answers; the servers then exchange {human_bytes(mpc)} among themselves, "
              "mostly to score candidates under MPC.",
              f"AugFLAIM (Private): each client pays every round it is sampled "
              f"({human_bytes(client_f)} in total here); the aggregator sees the clients' "
              "choices and noisy sums only.",
              f"Utility (L1 workload error): DistAIM {distaim.record['l1_workload_error']:.3f}, "
              f"AugFLAIM (Private) {flaim.record['l1_workload_error']:.3f}."]
    if bill:
        from flaimsim.bench.option_bill import format_bill, option_bill

        parts += ["", "=== DistAIM's bill by option (the same tiny run, one option changed "
                  "at a time; bytes per server per phase) ===",
                  format_bill(option_bill(config.replace(protocol="distaim"), tiny.data))]
    return "\n".join(parts)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="a tiny run narrated step by step (teaching)")
    p.add_argument("--rounds", type=int, default=TINY["rounds"])
    p.add_argument("--seed", type=int, default=TINY["seed"])
    p.add_argument("--mpc", choices=("real", "model"), default=TINY["mpc"])
    for flag, choices in (("--sharing", ("compact", "shamir", "additive")),
                          ("--score", ("l1", "l2")), ("--em", ("gumbel", "rnm"))):
        p.add_argument(flag, choices=choices, default=None,
                       help=f"DistAIM's option (default: {getattr(RunConfig, flag[2:])})")
    p.add_argument("--no-bill", dest="bill", action="store_false",
                   help="skip DistAIM's bill by option (five more tiny runs)")
    p.add_argument("--html", action="store_true",
                   help="write the run as a message sequence diagram, OUT/explain.html")
    p.add_argument("--out", default=None, help="folder for --html's explain.html")
    p.add_argument("--png", default=None, metavar="FILE",
                   help="with --html: also a PNG of the whole diagram in headless Chromium")
    p.add_argument("--png-height", type=int, default=None, metavar="PX",
                   help="keep the top PX pixels of the PNG (default: the whole page)")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from flaimsim.protocols.config import ConfigError

    chosen = {k: getattr(args, k) for k in ("sharing", "score", "em")
              if getattr(args, k) is not None}
    config = RunConfig(**{**TINY, "rounds": args.rounds, "seed": args.seed, "mpc": args.mpc,
                          **chosen})
    if args.html and not args.out:
        raise ConfigError("--html needs --out DIR (where explain.html goes)")
    tiny = run_tiny(config)
    print(explain(bill=args.bill and not args.html, tiny=tiny))
    if args.html:
        from flaimsim.bench.sequence import write_sequence

        page = write_sequence(tiny, args.out)
        print(f"wrote {page}")
        if args.png:
            from flaimsim.bench.screenshot import screenshot

            print(f"wrote {screenshot(page, args.png, 1400, args.png_height, 'all-steps')}")
    return 0


__all__ = ["explain", "narrate", "describe_step", "TINY"]
