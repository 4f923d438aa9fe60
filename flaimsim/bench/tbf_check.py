"""``flaimsim bench tbf``: the relay's bandwidth against the kernel's token bucket (``tc tbf``).

This kernel has no ``netem``, so latency cannot be cross-checked against the kernel; ``tbf``
works inside a network namespace and shapes bandwidth. Per rate R, the same bulk transfer
(``--tbf-mbytes`` MB over one TCP connection, sender to receiver in one process) runs

- over the loopback of a fresh network namespace whose ``lo`` has ``tbf rate R`` (the kernel
  shapes it; needs root and ``ip netns``), and
- through :mod:`flaimsim.parties.netem`'s relay on a link of R and no latency,

and the throughput of each is printed against R. The relay honours its rate if it is within a
few percent of R and of the kernel's. Latency has no kernel reference here (no ``netem``):
:func:`relay_round_trip_s` times a one-byte ping-pong through the relay at the LAN preset and
with no delay, so the relay's own cost per exchange shows beside 2 × the latency.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Callable, Sequence

from flaimsim.parties.links import Network
from flaimsim.parties.netem import LinkEmulator

CHUNK = 1 << 16


class TbfError(RuntimeError):
    """The namespace or the qdisc could not be set up (not root, no ``ip``/``tc``)."""


def bulk_transfer_s(nbytes: int, connect: Callable[[tuple[str, int]], socket.socket]) -> float:
    """Seconds from the first byte sent to the last byte received, ``nbytes`` over one TCP
    connection opened by ``connect(address)`` to a local receiver."""
    srv = socket.create_server(("127.0.0.1", 0))
    got: list[float] = []

    def receive() -> None:
        conn, _ = srv.accept()
        with conn:
            left = nbytes
            while left > 0:
                data = conn.recv(CHUNK)
                if not data:
                    break
                left -= len(data)
            got.append(time.perf_counter())

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    sock = connect(srv.getsockname())
    payload = b"\0" * CHUNK
    start = time.perf_counter()
    with sock:
        left = nbytes
        while left > 0:
            n = min(left, CHUNK)
            sock.sendall(payload[:n])
            left -= n
        receiver.join(timeout=600)
    srv.close()
    if not got:
        raise TbfError("the receiver did not get every byte within 600 s")
    return got[0] - start


_IN_NAMESPACE = """
import socket, sys
from flaimsim.bench.tbf_check import bulk_transfer_s
print(bulk_transfer_s(int(sys.argv[1]), lambda a: socket.create_connection(a)))
"""


def _run(cmd: Sequence[str]) -> str:
    done = subprocess.run(list(cmd), capture_output=True, text=True)
    if done.returncode:
        raise TbfError(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def kernel_tbf_transfer_s(nbytes: int, mbit: float) -> float:
    """The bulk transfer over ``lo`` of a fresh namespace shaped by ``tbf rate mbit``."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        raise TbfError("needs the ip and tc commands (iproute2)")
    name = f"flaimsim-tbf-{uuid.uuid4().hex[:8]}"
    _run(["ip", "netns", "add", name])
    try:
        # an Ethernet-sized MTU: lo's 64 KiB segments would not fit a small bucket
        _run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "mtu", "1500", "up"])
        # burst: ~1 ms at the rate, at least 64 KiB (a smaller bucket starves TSO segments)
        burst = max(64 * 1024, int(mbit * 1e6 / 8 * 1e-3))
        _run(["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "tbf",
              "rate", f"{mbit}mbit", "burst", str(burst), "latency", "400ms"])
        out = _run(["ip", "netns", "exec", name, sys.executable, "-c", _IN_NAMESPACE,
                    str(nbytes)])
        return float(out.strip().splitlines()[-1])
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def relay_transfer_s(nbytes: int, mbit: float) -> float:
    """The bulk transfer through the relay on a link of ``mbit`` and no latency."""
    with LinkEmulator(Network(f"0ms/{mbit:g}Mbit", 0.0, mbit * 1e6)) as em:
        return bulk_transfer_s(nbytes, lambda a: em.connect("sender", "receiver", a))


def relay_round_trip_s(network: Network, exchanges: int = 300) -> float:
    """Mean seconds per one-byte request and reply through the relay on ``network``."""
    srv = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(64):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    with LinkEmulator(network) as em, em.connect("a", "b", srv.getsockname()) as sock:
        sock.sendall(b"x")
        sock.recv(64)
        start = time.perf_counter()
        for _ in range(exchanges):
            sock.sendall(b"x")
            sock.recv(64)
        elapsed = time.perf_counter() - start
    srv.close()
    return elapsed / exchanges


def tbf_check(rates_mbit: Sequence[float] = (10.0, 100.0), mbytes: float = 20.0
              ) -> list[dict[str, Any]]:
    """Throughput of the kernel's tbf and of the relay per rate (Mbit/s, payload bytes)."""
    nbytes = int(mbytes * 1e6)
    rows = []
    for mbit in rates_mbit:
        kernel = kernel_tbf_transfer_s(nbytes, mbit)
        relay = relay_transfer_s(nbytes, mbit)
        rows.append({"rate_mbit": mbit, "mbytes": mbytes,
                     "kernel_tbf_mbit": 8 * nbytes / kernel / 1e6,
                     "relay_mbit": 8 * nbytes / relay / 1e6,
                     "kernel_s": kernel, "relay_s": relay,
                     "relay_vs_kernel": kernel / relay - 1})
    return rows


def latency_check(exchanges: int = 300) -> list[dict[str, Any]]:
    """Round trips through the relay with no delay and at the LAN preset."""
    from flaimsim.parties.links import PRESETS, RELAY_ONLY

    return [{"network": net.describe(), "two_latencies_ms": 2e3 * net.latency_s,
             "round_trip_ms": 1e3 * relay_round_trip_s(net, exchanges)}
            for net in (RELAY_ONLY, PRESETS["lan"])]


def format_latency_check(rows: list[dict[str, Any]]) -> str:
    from flaimsim.text_table import text_table

    lines = text_table(("network", "2 x latency ms", "round trip ms"),
                       [(r["network"], f"{r['two_latencies_ms']:.2f}",
                         f"{r['round_trip_ms']:.3f}") for r in rows])
    lines.append("one-byte ping-pong through the relay (mean of 300 exchanges): the round trip "
                 "less 2 x latency is the relay's own cost per exchange")
    return "\n".join(lines)


def format_tbf_check(rows: list[dict[str, Any]]) -> str:
    from flaimsim.text_table import text_table

    body = [(f"{r['rate_mbit']:g}", f"{r['mbytes']:g}", f"{r['kernel_tbf_mbit']:.1f}",
             f"{r['relay_mbit']:.1f}", f"{r['relay_vs_kernel']:+.1%}") for r in rows]
    lines = text_table(("rate Mbit/s", "MB", "kernel tbf Mbit/s", "relay Mbit/s",
                        "relay vs kernel"), body)
    lines.append("payload throughput of one bulk TCP transfer; kernel: tc tbf on lo of a "
                 "network namespace (TCP/IP headers count against its rate, ~3-5 %); relay: "
                 "flaimsim.parties.netem at the same rate, no latency")
    return "\n".join(lines)


__all__ = ["TbfError", "bulk_transfer_s", "format_latency_check", "format_tbf_check",
           "kernel_tbf_transfer_s", "latency_check", "relay_round_trip_s", "relay_transfer_s",
           "tbf_check"]
