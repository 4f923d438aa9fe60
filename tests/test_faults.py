"""Faults name the faulty party (issue 25, items 7-8): the server killed or stopped is named
first, and a driver's --servers-at mistake is refused by address without taking standing
servers down."""

from __future__ import annotations

import http.server
import signal
import socketserver
import threading
from typing import Iterator

import pytest
from test_hosts import alive, serves, stop  # noqa: F401  (serves: three standing servers)

from flaimsim.parties.mpc.addresses import format_addresses, parse_addresses
from flaimsim.parties.mpc.launcher import (
    PartyFailure, RemoteServers, ServerLauncher, free_ports)


def still_serving(procs) -> bool:
    return all(p.poll() is None for p in procs)


def check_session_works(servers_at: str) -> None:
    """A correct driver still gets a session after the refused ones."""
    remote = RemoteServers(parse_addresses(servers_at), start_timeout=30).start()
    try:
        assert [i["pid"] for i in remote.info] == [0, 1, 2]
    finally:
        remote.close()


def test_wrong_order_is_refused_and_servers_keep_serving(serves) -> None:  # noqa: F811
    procs, servers_at = serves
    a = parse_addresses(servers_at)
    with pytest.raises(PartyFailure, match="out of order") as failure:
        RemoteServers([a[1], a[0], a[2]], start_timeout=30).start()
    assert format_addresses([a[1]]) in str(failure.value)
    with pytest.raises(PartyFailure, match="lists 2 addresses, but the servers there belong "
                                           "to a group of 3"):
        RemoteServers([a[0], a[1]], start_timeout=30).start()
    assert still_serving(procs)
    check_session_works(servers_at)
    assert still_serving(procs)


@pytest.fixture()
def http_port() -> Iterator[int]:
    """An HTTP server on loopback: a port where something else listens."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    with socketserver.TCPServer(("127.0.0.1", 0), Quiet) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield httpd.server_address[1]
        httpd.shutdown()


def test_a_foreign_port_or_nothing_listening_is_named(serves, http_port) -> None:  # noqa: F811
    procs, servers_at = serves
    a = parse_addresses(servers_at)
    with pytest.raises(PartyFailure) as failure:
        RemoteServers([("127.0.0.1", http_port), a[1], a[2]], start_timeout=3).start()
    text = str(failure.value)
    assert f"server 0 at 127.0.0.1:{http_port}" in text and "not a flaimsim server" in text
    assert "server 1" not in text  # the ones that answered are not blamed
    (unused,) = free_ports(1)
    with pytest.raises(PartyFailure, match=f"server 0 at 127.0.0.1:{unused}: connection "
                                           "refused"):
        RemoteServers([("127.0.0.1", unused), a[1], a[2]], start_timeout=2).start()
    assert still_serving(procs)
    check_session_works(servers_at)


def test_sigkill_of_server_1_is_blamed_on_server_1() -> None:
    launcher = ServerLauncher(m=3, command_timeout=60).start()
    pids = launcher.pids
    killer = threading.Timer(1.0, lambda: launcher.procs[1].send_signal(signal.SIGKILL))
    killer.start()
    try:
        with pytest.raises(PartyFailure) as failure:
            launcher.call("ping", sleep=30)  # servers 0 and 2 then exit too (peer lost)
    finally:
        killer.cancel()
        launcher.kill()
    first = str(failure.value).splitlines()[0]
    assert first.startswith(f"server 1 (pid {pids[1]}) was killed by SIGKILL"), first
    assert not any(alive(p) for p in pids)


def test_sigstop_names_the_stalled_server() -> None:
    launcher = ServerLauncher(m=3, command_timeout=3).start()
    pids = launcher.pids
    try:
        launcher.procs[1].send_signal(signal.SIGSTOP)
        with pytest.raises(PartyFailure, match="exceeded its timeout") as failure:
            launcher.call("release")  # a barrier: servers 0 and 2 wait for server 1
    finally:
        launcher.kill()
    first = str(failure.value).splitlines()[0]
    assert f"server 1 (pid {pids[1]}) is stopped" in first, first
    assert "server 0" not in first.split("stopped")[0]
    assert not any(alive(p) for p in pids)


def test_connect_timeout_bounds_the_wait_for_standing_servers(capsys) -> None:
    """`run --connect-timeout` reaches the driver's connection to `--servers-at`: sockets that
    accept but never answer are refused by address within that many seconds, in one line."""
    import socket

    from flaimsim.bench.cli import main

    silent = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]  # accept, never reply
    ports = [s.getsockname()[1] for s in silent]
    try:
        code = main(["run", "--protocol", "distaim", "--mpc", "real", "--dataset", "synthfs",
                     "--rounds", "1", "--servers-at",
                     ",".join(f"127.0.0.1:{p}" for p in ports), "--connect-timeout", "1"])
    finally:
        for s in silent:
            s.close()
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert f"server 0 at 127.0.0.1:{ports[0]} accepted the connection but sent no reply " \
           "within 1 s (--connect-timeout" in err
