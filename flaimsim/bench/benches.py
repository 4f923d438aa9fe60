"""``flaimsim bench WHAT``: each benchmark returns a JSON-serialisable figure set."""

from __future__ import annotations

import argparse
import time
from typing import Any

from flaimsim.protocols.config import ConfigError, RunConfig


def bench_central(config: RunConfig) -> dict[str, Any]:
    """Central AIM's phase timings and utility, beside the one-way-only baseline."""
    from flaimsim.protocols.central import run_central, run_oneway_baseline
    from flaimsim.protocols.prepare import prepare

    data = prepare(config)
    t0 = time.perf_counter()
    result = run_central(config, data=data)
    total = time.perf_counter() - t0
    rec = result.record
    return {"select_s": rec["select_s"], "estimate_s": rec["estimate_s"],
            "generate_s": rec["generate_s"], "evaluate_s": rec["evaluate_s"],
            "total_s": total,
            "l1_workload_error": rec["l1_workload_error"],
            "l1_workload_error_3way": rec["l1_workload_error_3way"],
            "rho_budget": rec["rho_budget"], "rho_spent": rec["rho_spent"],
            **run_oneway_baseline(config, data)}


def run_bench(what: str, args: argparse.Namespace) -> Any:
    from flaimsim.bench.options import config_from_args

    if what == "central":
        # Central AIM ignores the federation: an iid split spares the paper preset's UMAP
        # embedding (~90 s cold on Adult) unless --partition asks for another.
        return bench_central(config_from_args(args, {"protocol": "central", "partition": "iid"}))
    if what == "transport":
        from flaimsim.bench.transport_bench import bench_transport
        return bench_transport()
    if what == "scoring":
        from flaimsim.bench.secure_bench import bench_scoring
        return bench_scoring(frac_bits=getattr(args, "score_frac_bits", None) or 0,
                             data_dir=getattr(args, "data_dir", None))
    if what == "em":
        from flaimsim.bench.secure_bench import bench_em
        from flaimsim.protocols.distaim import cost_setting
        from flaimsim.protocols.prepare import prepare

        # The generic rows, then one draw in the widths of this data set's DistAIM run (its
        # public score bound and per-round ε/Δ; the paper setting with --dataset adult).
        config = config_from_args(args, {"protocol": "distaim", "partition": "iid"})
        data = prepare(config)
        setting = cost_setting(config, data)
        k = len(data.workload.candidates)
        return bench_em() + bench_em(ks=(k,), score_bound=setting.score_bound,
                                     epsilon=setting.select_epsilon, sensitivity=1.0,
                                     setting=f"{config.dataset} DistAIM, T = {config.rounds}")
    if what == "options":
        # DistAIM's bill by option on this data set (the defaults: --mpc model, modelled bytes).
        from flaimsim.bench.option_bill import bill_records, format_bill, option_bill

        rows = option_bill(config_from_args(args, {"protocol": "distaim"}))
        if not getattr(args, "json", False):
            print(format_bill(rows))
        return bill_records(rows)
    if what == "flaim-options":
        # FLAIM's bill by option (bytes on the wire, L1), flaim_bill's docstring.
        from flaimsim.bench.flaim_bill import flaim_bill, flaim_bill_records, format_flaim_bill

        rows = flaim_bill(config_from_args(args, {"protocol": "aug-flaim-private"}))
        if not getattr(args, "json", False):
            print(format_flaim_bill(rows))
        return flaim_bill_records(rows)
    if what == "secagg":
        from flaimsim.bench.secagg_bench import bench_secagg
        return bench_secagg()
    if what == "noise":
        from flaimsim.bench.noise_bench import bench_noise
        return bench_noise()
    if what == "network":
        from flaimsim.bench.network_bench import bench_network, format_network_bench

        rows = bench_network(args)
        if not getattr(args, "json", False):
            print(format_network_bench(rows))
        return rows
    if what == "tbf":
        from flaimsim.bench.tbf_check import (TbfError, format_latency_check,
                                              format_tbf_check, latency_check, tbf_check)

        latency = latency_check()
        try:
            rows = tbf_check()
        except TbfError as exc:
            raise ConfigError(f"bench tbf needs root and ip netns: {exc}") from None
        if not getattr(args, "json", False):
            print(format_tbf_check(rows))
            print(format_latency_check(latency))
        return {"bandwidth": rows, "latency": latency}
    if what == "resharing":
        from flaimsim.bench.resharing_bench import bench_resharing
        return bench_resharing()
    if what == "fastpaths":
        # One reproduce cell (the paper's setting, --mpc model), plain and cached paths.
        from flaimsim.bench.fastpath_bench import bench_fastpaths
        from flaimsim.bench.reproduce import base_config

        config = config_from_args(args, {"protocol": "central"})
        protocol = (getattr(args, "protocol", None) or ["central"])[0]
        return bench_fastpaths(base_config(config.dataset, protocol=protocol,
                                           rounds=config.rounds, seed=config.seed),
                               pairs=getattr(args, "bench_pairs", 1))
    raise ValueError(f"unknown benchmark {what!r}")
