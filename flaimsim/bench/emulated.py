"""A run over emulated links beside the same run without them: wall time, compute time and
the network model's estimate in one record.

``flaimsim run --network SPEC`` runs each protocol on the same prepared data and seed: once on
plain loopback (it also pays the process's one-off costs: imports, caches that later runs
reuse; its bytes are ``bytes_unemulated``), then, ``repeats`` times, with every protocol
socket routed through :mod:`flaimsim.parties.netem` on SPEC's links (the measured time on that
network) and through the same relay with no latency and unlimited bandwidth
(:data:`~flaimsim.parties.links.RELAY_ONLY`). The relay-only run's wall time is the run's
*compute time*: it holds the parties' work and the relay's own copying and scheduling, which
the emulated run also pays but a real network would not, so that measured − compute is what
the links' latency and bandwidth add, the part the model estimates. (On this 2-core machine
the relay alone adds up to 40 % to a LAN run of DistAIM on Adult: it copies every byte
through one more Python process; plain loopback as the compute time left LAN estimates
12–28 % low.) The record of the emulated run gains::

    network, network_spec     the links (``describe()``) and the spec given
    compute_seconds           the relay-only run's wall time (median over repeats;
                              compute_source says so)
    loopback_seconds          the plain run's wall time (no relay; first run, so with the
                              process's one-off costs)
    network_comm_estimate_s   the model's communication time from the ledger
                              (:func:`flaimsim.bench.network.wall_time`)
    network_estimate_s        compute_seconds + network_comm_estimate_s
    network_estimate_error    network_estimate_s / wall_seconds − 1
    bytes_unemulated          the first plain run's total bytes (equal to the emulated run's for
                              every seeded flow; DistAIM's later rounds depend on unseeded MPC
                              randomness through its selections)
"""

from __future__ import annotations

from statistics import median
from typing import Any, Callable, Sequence

from flaimsim.bench.network import wall_time
from flaimsim.parties.netem import emulator
from flaimsim.protocols import RunConfig, runner
from flaimsim.protocols.prepare import PreparedData
from flaimsim.protocols.result import RunResult

COMPUTE_SOURCE = ("wall time of the same seeded run through the relay with no latency and "
                  "unlimited bandwidth (median over repeats)")


NETWORK_FIELDS = ("network", "network_spec", "compute_seconds", "compute_source",
                  "network_comm_estimate_s", "network_estimate_s", "network_estimate_error")


def network_fields(config: RunConfig, emulated: RunResult, compute_seconds: float
                   ) -> dict[str, Any]:
    """The record fields above, for an emulated run and its compute time."""
    network = config.network_spec
    comm = wall_time(emulated.ledger.rows, network)
    estimate = compute_seconds + comm
    wall = float(emulated.record["wall_seconds"])
    return {"network": network.describe(), "network_spec": config.network,
            "compute_seconds": compute_seconds, "compute_source": COMPUTE_SOURCE,
            "network_comm_estimate_s": comm, "network_estimate_s": estimate,
            "network_estimate_error": estimate / wall - 1 if wall > 0 else None}


def _wall(result: RunResult) -> float:
    return float(result.record["wall_seconds"])


def runs_on_networks(config: RunConfig, data: PreparedData, networks: Sequence[str],
                     progress: Callable[[int], None] | None = None, repeats: int = 1
                     ) -> tuple[float, RunResult, dict[str, RunResult]]:
    """The compute time, the plain run, and one annotated run per network.

    Order: plain, then ``repeats`` times (each network, relay only). Compute time: the median
    of the relay-only runs (module docstring). Per network the median run is returned
    (``wall_runs_s`` lists all)."""
    run = runner(config.protocol)
    plain = run(config.replace(network=None), data=data)
    relay_config = config.replace(network="relay")
    relay_only: list[RunResult] = []
    emulated: dict[str, list[RunResult]] = {net: [] for net in networks}
    for _ in range(max(1, repeats)):
        for net in networks:
            emulated_config = config.replace(network=net)
            emulator(emulated_config.network_spec)   # the relay's start-up is not the run's
            emulated[net].append(run(emulated_config, data=data, progress=progress))
        emulator(relay_config.network_spec)
        relay_only.append(run(relay_config, data=data))
    walls = [_wall(r) for r in relay_only]
    compute = float(median(walls))
    chosen = {}
    for net, results in emulated.items():
        result = sorted(results, key=_wall)[len(results) // 2]
        result.record.update(network_fields(config.replace(network=net), result, compute))
        result.record["loopback_seconds"] = _wall(plain)
        result.record["wall_runs_s"] = [_wall(r) for r in results]
        result.record["compute_runs_s"] = walls
        result.record["bytes_unemulated"] = sum(r.bytes for r in plain.ledger.rows)
        result.record["bytes_emulated"] = sum(r.bytes for r in result.ledger.rows)
        result.record["bytes_relay_only"] = sum(r.bytes for r in relay_only[0].ledger.rows)
        chosen[net] = result
    return compute, plain, chosen


def run_on_network(config: RunConfig, data: PreparedData,
                   progress: Callable[[int], None] | None = None) -> RunResult:
    """``config`` over its emulated network, annotated (:func:`runs_on_networks`)."""
    if config.protocol == "central":   # no party, no socket: nothing to emulate
        result = runner("central")(config.replace(network=None), data=data,
                                   progress=progress)
        result.record["network"] = "none (central AIM has no parties)"
        return result
    assert config.network is not None
    if config.network_compute == "none":
        emulator(config.network_spec)   # the relay's start-up is not the run's
        result = runner(config.protocol)(config, data=data, progress=progress)
        result.record.update({
            "network": config.network_spec.describe(), "network_spec": config.network,
            "compute_seconds": None, "compute_source": "not measured (--network-compute none)",
            "network_comm_estimate_s": wall_time(result.ledger.rows, config.network_spec),
            "bytes_emulated": sum(r.bytes for r in result.ledger.rows)})
        return result
    return runs_on_networks(config, data, [config.network], progress)[2][config.network]


def format_network_lines(records: list[dict[str, Any]]) -> list[str]:
    """One line per emulated record: measured wall time against the model's estimate."""
    out = []
    for r in records:
        if r.get("network_spec") is not None and r.get("compute_seconds", 0) is None:
            out.append(f"network ({r['protocol']}): {r['network']}: measured "
                       f"{r['wall_seconds']:.2f} s (wire); model communication "
                       f"{r['network_comm_estimate_s']:.2f} s; compute not measured "
                       "(--network-compute none)")
        if "network_estimate_s" not in r:
            continue
        out.append(f"network ({r['protocol']}): {r['network']}: measured {r['wall_seconds']:.2f} s"
                   f" (wire); compute {r['compute_seconds']:.2f} s ({COMPUTE_SOURCE}) + model "
                   f"{r['network_comm_estimate_s']:.2f} s = {r['network_estimate_s']:.2f} s "
                   f"({r['network_estimate_error']:+.1%})")
    return out


__all__ = ["COMPUTE_SOURCE", "NETWORK_FIELDS", "format_network_lines", "network_fields",
           "run_on_network", "runs_on_networks"]
