"""The user-space link emulator: latency and bandwidth honoured (lower bounds from physics,
never an upper bound on time), bytes intact and in order, EOF and resets propagated."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from flaimsim.parties.links import RELAY_ONLY, TCP_FRAMING, Network, NetworkError, PRESETS, parse_network
from flaimsim.parties.netem import LinkClock, LinkEmulator, PreciseEpollSelector, chunk_bytes


def _echo_server(handler) -> tuple[socket.socket, threading.Thread]:
    srv = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            handler(conn)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv, t


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, f"EOF after {len(buf)} of {n} bytes"
        buf.extend(chunk)
    return bytes(buf)


def _recv_all(s: socket.socket) -> bytes:
    buf = bytearray()
    while chunk := s.recv(1 << 16):
        buf.extend(chunk)
    return bytes(buf)


@pytest.mark.parametrize("per", ["link", "party"])
def test_ping_pong_pays_two_latencies_per_exchange(per: str) -> None:
    k, latency = 5, 0.020

    def echo(conn: socket.socket) -> None:
        for _ in range(k):
            conn.sendall(_recv_exactly(conn, 4))

    srv, t = _echo_server(echo)
    with LinkEmulator(Network("t", latency, 1e9, per)) as em:  # type: ignore[arg-type]
        s = em.connect("client:0", "server:0", srv.getsockname(), timeout=30)
        start = time.monotonic()
        for i in range(k):
            s.sendall(i.to_bytes(4, "little"))
            assert _recv_exactly(s, 4) == i.to_bytes(4, "little")
        elapsed = time.monotonic() - start
        s.close()
    t.join(5)
    srv.close()
    assert elapsed >= k * 2 * latency


@pytest.mark.parametrize("per", ["link", "party"])
def test_bulk_transfer_no_faster_than_bandwidth_and_intact(per: str) -> None:
    nbytes, mbit = 1_000_000, 40.0   # 0.2 s at 40 Mbit/s
    payload = os.urandom(nbytes)
    got: list[bytes] = []
    srv, t = _echo_server(lambda conn: got.append(_recv_all(conn)))
    with LinkEmulator(Network("t", 0.001, mbit * 1e6, per)) as em:  # type: ignore[arg-type]
        s = em.connect("client:1", "server:2", srv.getsockname(), timeout=30)
        start = time.monotonic()
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)      # half-close: the server's recv sees EOF
        assert s.recv(1) == b""         # ... and closes; EOF comes back the other way
        t.join(30)
        elapsed = time.monotonic() - start
        relayed = em.relayed()
        s.close()
    srv.close()
    assert got == [payload]
    assert relayed[("client:1", "server:2")] == nbytes
    assert elapsed >= 8 * nbytes / (mbit * 1e6) + 0.001


def test_half_close_keeps_the_other_direction_open() -> None:
    def reply_after_eof(conn: socket.socket) -> None:
        data = _recv_all(conn)                # EOF arrives through the relay
        conn.sendall(b"got " + data)          # the reverse direction still works

    srv, t = _echo_server(reply_after_eof)
    with LinkEmulator(Network("t", 0.005, 1e8)) as em:
        s = em.connect("client:0", "aggregator", srv.getsockname(), timeout=30)
        s.sendall(b"abc")
        s.shutdown(socket.SHUT_WR)
        assert _recv_all(s) == b"got abc"
        s.close()
    t.join(5)
    srv.close()


def test_party_uplink_is_shared_by_its_links() -> None:
    """Per party, two links from one sender share its uplink: together they take at least
    the time of all their bytes at B (per link they could overlap)."""
    nbytes, mbit = 400_000, 40.0
    got: list[bytes] = []
    servers = [_echo_server(lambda conn: got.append(_recv_all(conn))) for _ in range(2)]
    with LinkEmulator(Network("t", 0.0, mbit * 1e6, "party")) as em:
        socks = [em.connect("client:0", f"server:{i}", srv.getsockname(), timeout=30)
                 for i, (srv, _) in enumerate(servers)]
        start = time.monotonic()
        for s in socks:
            s.sendall(b"x" * nbytes)
            s.shutdown(socket.SHUT_WR)
        for _, t in servers:
            t.join(30)
        elapsed = time.monotonic() - start
        for s in socks:
            s.close()
    for srv, _ in servers:
        srv.close()
    assert sorted(map(len, got)) == [nbytes, nbytes]
    assert elapsed >= 8 * 2 * nbytes / (mbit * 1e6)


def test_refused_target_resets_the_connector() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        dead = probe.getsockname()       # closed below: nothing listens there
    with LinkEmulator(Network("t", 0.001, 1e8), connect_wait_s=0.2) as em:
        s = em.connect("client:0", "server:0", dead, timeout=10)
        with pytest.raises((ConnectionError, OSError)) as info:
            s.sendall(b"x")
            if s.recv(1) == b"":          # a reset may show as an abrupt EOF on some stacks
                raise ConnectionResetError("closed")
        assert info.value is not None
        s.close()


def test_clock_orders_chunks_and_charges_serialisation() -> None:
    clock = LinkClock(0.01, 8e6, "link")             # 1 MB/s
    tx = 1e-3 * TCP_FRAMING                          # 1,000 payload bytes and their headers
    a = clock.deliver_at("a", "b", 1000, 0.0)        # tx on the link, then 10 ms
    b = clock.deliver_at("a", "b", 1000, 0.0)        # queued behind the first
    c = clock.deliver_at("b", "a", 1000, 0.0)        # the other direction is free
    assert a == pytest.approx(0.01 + tx) and b == pytest.approx(0.01 + 2 * tx)
    assert c == pytest.approx(0.01 + tx)
    assert Network("x", 0.01, 8e6).transfer_s(1000) == pytest.approx(tx)   # the model's too
    party = LinkClock(0.0, 8e6, "party")
    party.deliver_at("c:1", "s", 1000, 0.0)
    assert party.deliver_at("c:2", "s", 1000, 0.0) == pytest.approx(2 * tx)  # s's downlink


def test_chunks_stay_short_on_the_link() -> None:
    assert chunk_bytes(1e8) == 12500 and chunk_bytes(1e6) == 4096 and chunk_bytes(1e12) == 65536


@pytest.mark.parametrize("spec,expected", [
    ("lan", PRESETS["lan"]), ("WAN", PRESETS["wan"]),
    ("20,50", Network("20ms/50Mbit", 0.02, 50e6)),
    ("20,50,party", Network("20ms/50Mbit", 0.02, 50e6, "party")),
    ("wan,party", Network("WAN-party", 0.05, 100e6, "party")),
    ("relay", RELAY_ONLY)])
def test_parse_network(spec: str, expected: Network) -> None:
    assert parse_network(spec) == expected


@pytest.mark.parametrize("spec", ["moon", "20", "a,b", "20,0", "20,50,hub"])
def test_parse_network_refuses(spec: str) -> None:
    with pytest.raises(NetworkError):
        parse_network(spec)


def test_a_session_started_by_the_driver_adds_a_round() -> None:
    """Emulated links showed one latency per SecAgg+ session that the stamps missed: clients
    start a session when the in-process driver moves on, after everything before it."""
    from flaimsim.parties.rounds import LamportClocks

    clocks = LamportClocks()
    first = clocks.send("client:1")                  # a client's key, stamp 1
    clocks.take("aggregator", first)
    echo = clocks.send("aggregator")                 # the aggregator's reply, stamp 2
    clocks.take("client:1", echo)
    assert clocks.charge([(1, "secagg-keys", "client:1", "aggregator", first),
                          (1, "secagg-keys", "aggregator", "client:1", echo)])
    clocks.barrier()                                  # the next session
    fresh = clocks.send("client:7")                   # a client that never took anything
    assert fresh == echo + 1
    assert clocks.charge([(1, "secagg-keys", "client:7", "aggregator", fresh)]) == {
        (1, "secagg-keys", "client:7", "aggregator"): 1}


def test_relay_timers_wait_sub_millisecond_timeouts_exactly(monkeypatch) -> None:
    """epoll rounds a timeout up to whole ms (a 0.5 ms LAN hop took 1.2-1.4 ms); the relay's
    selector hands the exact timeout to select() on the epoll descriptor, then polls with 0."""
    import select as select_module
    waits: list[float] = []
    real_select = select_module.select

    def spy(r, w, x, timeout=None):
        waits.append(timeout)
        return real_select(r, w, x, timeout)

    monkeypatch.setattr(select_module, "select", spy)
    selector = PreciseEpollSelector()
    try:
        assert selector.select(0.0005) == []     # nothing registered: the timeout elapses
        assert selector.select(0) == []           # a zero timeout polls without waiting
    finally:
        selector.close()
    assert waits == [0.0005]


def _netns_works() -> bool:
    import shutil
    import subprocess
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        return False
    name = f"flaimsim-probe-{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ok


@pytest.mark.skipif(not _netns_works(), reason="needs root, ip netns and tc")
def test_relay_bandwidth_matches_the_kernels_token_bucket() -> None:
    """The same bulk transfer through `tc tbf` (in a network namespace) and through the relay
    at 20 Mbit/s: neither carries more payload than the rate less the TCP/IP headers (a
    bound from physics; the bench compares the two: `flaimsim bench tbf`)."""
    from flaimsim.bench.tbf_check import tbf_check
    (row,) = tbf_check(rates_mbit=(20.0,), mbytes=2.0)
    payload_rate = 20.0 / TCP_FRAMING
    # the kernel's bucket starts full (64 KiB): a 2 MB transfer may beat the rate by ~3 %
    assert 0 < row["kernel_tbf_mbit"] <= (2e6 + 65536) / 2e6 * 20.0
    assert 0 < row["relay_mbit"] <= payload_rate * 1.01


def test_latency_check_rows_name_the_network_and_pay_two_latencies() -> None:
    from flaimsim.bench.tbf_check import format_latency_check, latency_check
    rows = latency_check(exchanges=20)
    assert [r["two_latencies_ms"] for r in rows] == [0.0, 1.0]
    assert rows[1]["round_trip_ms"] >= 1.0          # never sooner than the two latencies
    assert "LAN" in format_latency_check(rows)
