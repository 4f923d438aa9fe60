"""A run over emulated links beside the same run without them: wall time, compute time and
the network model's estimate in one record.

``flaimsim run --network SPEC`` runs each protocol twice on the same prepared data and seed:
first on plain loopback (its wall time is the run's *compute time*: loopback adds no
latency to speak of and its bandwidth is far above any preset's), then with every protocol
socket routed through :mod:`flaimsim.parties.netem` (its wall time is the measured time on
that network). The record of the emulated run gains::

    network, network_spec     the links (``describe()``) and the spec given
    compute_seconds           the plain run's wall time (compute_source says so)
    network_comm_estimate_s   the model's communication time from the ledger
                              (:func:`flaimsim.bench.network.wall_time`)
    network_estimate_s        compute_seconds + network_comm_estimate_s
    network_estimate_error    network_estimate_s / wall_seconds − 1
    bytes_unemulated          the plain run's total bytes (equal to the emulated run's for
                              every seeded flow; DistAIM's later rounds depend on unseeded MPC
                              randomness through its selections)
"""

from __future__ import annotations

from typing import Any, Callable

from flaimsim.bench.network import wall_time
from flaimsim.protocols import RunConfig, runner
from flaimsim.protocols.prepare import PreparedData
from flaimsim.protocols.result import RunResult

COMPUTE_SOURCE = "wall time of the same seeded run without emulation"


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


def run_on_network(config: RunConfig, data: PreparedData,
                   progress: Callable[[int], None] | None = None) -> RunResult:
    """The protocol without, then with, emulated links; the second's result, annotated."""
    run = runner(config.protocol)
    if config.protocol == "central":   # no party, no socket: nothing to emulate
        result = run(config.replace(network=None), data=data, progress=progress)
        result.record["network"] = "none (central AIM has no parties)"
        return result
    plain = run(config.replace(network=None), data=data)
    result = run(config, data=data, progress=progress)
    result.record.update(network_fields(config, result,
                                        float(plain.record["wall_seconds"])))
    result.record["bytes_unemulated"] = sum(r.bytes for r in plain.ledger.rows)
    result.record["bytes_emulated"] = sum(r.bytes for r in result.ledger.rows)
    return result


def format_network_lines(records: list[dict[str, Any]]) -> list[str]:
    """One line per emulated record: measured wall time against the model's estimate."""
    out = []
    for r in records:
        if "network_estimate_s" not in r:
            continue
        out.append(f"network ({r['protocol']}): {r['network']}: measured {r['wall_seconds']:.2f} s"
                   f" (wire); compute {r['compute_seconds']:.2f} s ({COMPUTE_SOURCE}) + model "
                   f"{r['network_comm_estimate_s']:.2f} s = {r['network_estimate_s']:.2f} s "
                   f"({r['network_estimate_error']:+.1%})")
    return out


__all__ = ["COMPUTE_SOURCE", "format_network_lines", "network_fields", "run_on_network"]
