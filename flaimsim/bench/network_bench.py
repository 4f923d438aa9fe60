"""``flaimsim bench network``: the network model against links emulated in user space.

Per case (a protocol on a data set), the runs through the relay with no latency give the
compute time (:func:`~flaimsim.bench.emulated.runs_on_networks`) and, per network (LAN and WAN unless ``--network`` names one), the same seeded run over
emulated links (:mod:`flaimsim.bench.emulated`) gives the measured wall time. The model's
estimate is compute + communication from that run's ledger (:func:`flaimsim.bench.network.
wall_time`: the wire's communication rounds × latency + the busiest link's bytes / bandwidth).
The target is |estimate / measured − 1| ≤ 10 %. ``--repeats R`` measures every time R times
and takes medians (a shared machine's wall times vary by tens of percent between runs).

Cases: the main job's (SynthFS, T = 4: DistAIM under ``--mpc real`` and the three FLAIM
variants) and a mid-size DistAIM (Adult coarsened to 4 values per attribute, T = 2, iid split).
``--protocol`` keeps the cases of those protocols; ``--dataset`` runs them on that data set
instead (no separate mid-size case).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flaimsim.bench.emulated import NETWORK_FIELDS, runs_on_networks
from flaimsim.protocols.prepare import prepare
from flaimsim.text_table import text_table

TARGET = 0.10
MAIN_JOB = dict(dataset="synthfs", rounds=4, epsilon=1.0)
CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("distaim, main job", dict(MAIN_JOB, protocol="distaim", mpc="real")),
    ("naive-flaim, main job", dict(MAIN_JOB, protocol="naive-flaim")),
    ("aug-flaim-oracle, main job", dict(MAIN_JOB, protocol="aug-flaim-oracle")),
    ("aug-flaim-private, main job", dict(MAIN_JOB, protocol="aug-flaim-private")),
    ("distaim, adult max-bins 4, T = 2", dict(protocol="distaim", mpc="real", dataset="adult",
                                              max_bins=4, rounds=2, partition="iid")),
)


def _cases(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    keep = set(getattr(args, "protocol", None) or ())
    cases = [c for c in CASES if not keep or c[1]["protocol"] in keep]
    if getattr(args, "dataset", None):
        cases = [(f"{c[1]['protocol']}, {args.dataset}", {k: v for k, v in c[1].items()
                                                          if k != "dataset"})
                 for c in cases if c[1]["dataset"] == "synthfs"]
    return cases


def bench_network(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One figure set per (case, network): measured wall time against compute + model."""
    from flaimsim.bench.options import config_from_args

    networks = [args.network] if getattr(args, "network", None) else ["lan", "wan"]
    out = []
    for label, defaults in _cases(args):
        config = config_from_args(args, defaults).replace(protocol=defaults["protocol"],
                                                         network=None)
        data = prepare(config)
        _, _, emulated = runs_on_networks(config, data, networks,
                                          repeats=getattr(args, "repeats", 1) or 1)
        for net, result in emulated.items():
            rec = result.record
            out.append({"case": label, **{k: rec[k] for k in NETWORK_FIELDS},
                        "wall_seconds": rec["wall_seconds"], "wall_runs_s": rec["wall_runs_s"],
                        "compute_runs_s": rec["compute_runs_s"],
                        "comm_rounds": sum(getattr(r, "comm_rounds", 0) or 0
                                           for r in result.ledger.rows),
                        "bytes": rec["bytes_emulated"],
                        "bytes_unemulated": rec["bytes_unemulated"],
                        "within_target": abs(rec["network_estimate_error"]) <= TARGET})
            print(format_network_bench(out[-1:]).splitlines()[2], file=sys.stderr, flush=True)
    return out


def format_network_bench(rows: list[dict[str, Any]]) -> str:
    head = ("case", "network", "compute s", "measured s", "model comm s", "estimate s",
            "error", "rounds")
    body = [(r["case"], r["network"].split(":")[0], f"{r['compute_seconds']:.2f}",
             f"{r['wall_seconds']:.2f}", f"{r['network_comm_estimate_s']:.2f}",
             f"{r['network_estimate_s']:.2f}", f"{r['network_estimate_error']:+.1%}",
             str(r["comm_rounds"]) if r["comm_rounds"] else "- (messages)")
            for r in rows]
    lines = text_table(head, body)
    lines.append("measured: wall time over links emulated in user space (wire); compute: the "
                 "same seeded run through the relay with no latency and unlimited bandwidth; estimate = compute + model comm "
                 f"(rounds x latency + busiest link's bytes / bandwidth); target |error| <= "
                 f"{TARGET:.0%}")
    return "\n".join(lines)


__all__ = ["CASES", "TARGET", "bench_network", "format_network_bench"]
