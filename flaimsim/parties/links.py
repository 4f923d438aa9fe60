"""Network links as numbers: a per-link (or per-party) one-way latency and bandwidth.

The one source of truth for the LAN and WAN presets and the ``--network`` syntax, used by the
link emulator (:mod:`flaimsim.parties.netem`, which delays real sockets) and by the network
model (:mod:`flaimsim.bench.network`, which prices a ledger). Bandwidth is in bits per second
(Gbit = 10^9 bit).

``per="link"``: every directed link ``sender → receiver`` has its own bandwidth B.
``per="party"``: every party has one full-duplex access link of bandwidth B, shared by all its
connections: an uplink for what it sends and a downlink for what it receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


# Bytes a link carries per payload byte of a bulk TCP transfer: 1,448 payload bytes in a
# 1,514-byte frame (1,500-byte IPv4 MTU, TCP with timestamps, the 14-byte Ethernet header),
# as the kernel's token bucket counts them: `flaimsim bench tbf` measured 9.6 of 10 and
# 94.7 of 100 Mbit/s of payload through `tc tbf` (2026-12-05). The emulator and the model
# both charge it, so that neither is faster than a real link of the same rate.
TCP_FRAMING = 1514 / 1448


class NetworkError(ValueError):
    """A network specification that cannot be used."""


@dataclass(frozen=True)
class Network:
    """Per-link one-way latency (seconds) and bandwidth (bits per second)."""

    name: str
    latency_s: float
    bandwidth_bps: float
    per: Literal["link", "party"] = "link"

    def __post_init__(self) -> None:
        if not self.latency_s >= 0:
            raise NetworkError(f"latency must be >= 0 s, got {self.latency_s}")
        if not self.bandwidth_bps > 0:
            raise NetworkError(f"bandwidth must be > 0 bit/s, got {self.bandwidth_bps}")
        if self.per not in ("link", "party"):
            raise NetworkError(f"per must be 'link' or 'party', got {self.per!r}")

    def describe(self) -> str:
        return (f"{self.name}: {self.latency_s * 1e3:g} ms, "
                f"{self.bandwidth_bps / 1e6:g} Mbit/s per {self.per}")

    def transfer_s(self, nbytes: float) -> float:
        """Serialisation time of ``nbytes`` of payload on one link: 8 · nbytes · framing / B
        (:data:`TCP_FRAMING`)."""
        return 8.0 * nbytes * TCP_FRAMING / self.bandwidth_bps


PRESETS: dict[str, Network] = {
    "lan": Network("LAN", 0.5e-3, 1e9),
    "wan": Network("WAN", 50e-3, 100e6),
}

# The relay alone: every socket routed through the emulator with no latency and unlimited
# bandwidth. Its wall time is the compute time of an emulated run (the relay's own copying
# and scheduling included, as in the emulated run), so that measured − compute is what the
# links' latency and bandwidth add (``flaimsim.bench.emulated``). Not a network preset.
RELAY_ONLY = Network("relay only", 0.0, float("inf"))


def parse_network(spec: str) -> Network:
    """``lan``, ``wan`` or ``LATENCY_MS,BANDWIDTH_MBIT`` (optionally ``,link`` or ``,party``);
    ``relay`` is :data:`RELAY_ONLY`."""
    key = spec.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    if key == "relay":
        return RELAY_ONLY
    parts = [p.strip() for p in key.split(",")]
    if len(parts) == 2 and parts[0] in PRESETS and parts[1] in ("link", "party"):
        base = PRESETS[parts[0]]
        name = base.name if parts[1] == "link" else f"{base.name}-party"
        return Network(name, base.latency_s, base.bandwidth_bps,
                       parts[1])  # type: ignore[arg-type]
    if len(parts) not in (2, 3):
        raise NetworkError(f"network {spec!r}: expected lan, wan or "
                           "LATENCY_MS,BANDWIDTH_MBIT[,link|party]")
    try:
        latency_ms, mbit = float(parts[0]), float(parts[1])
    except ValueError:
        raise NetworkError(f"network {spec!r}: latency and bandwidth must be numbers") from None
    per = parts[2] if len(parts) == 3 else "link"
    return Network(f"{latency_ms:g}ms/{mbit:g}Mbit", latency_ms * 1e-3, mbit * 1e6,
                   per)  # type: ignore[arg-type]


__all__ = ["Network", "NetworkError", "PRESETS", "RELAY_ONLY", "parse_network"]
