"""Errors a user can cause end in one line naming the option, exit 2, no traceback; --debug
shows the traceback (issue 25, items 9-11). The slower cases (signals, faults, standing
servers) are in ``python -m flaimsim.bench.error_cases``."""

from __future__ import annotations

import socket

import pytest

from flaimsim.bench.cli import main
from flaimsim.parties.mpc.launcher import free_ports
from flaimsim.protocols.config import ConfigError

TINY = ["--dataset", "synthfs", "--clients", "4", "--synthfs-features", "4",
        "--synthfs-records", "60", "--synthfs-bins", "4", "--workload-marginals", "4",
        "--rounds", "2", "--iters-round", "30", "--iters-final", "50"]


def one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flaimsim: error: "), err
    return err[0]


@pytest.mark.parametrize("extra, words", [
    (["--epsilon", "1e9"], "--epsilon 1e+09 is too large"),
    (["--epsilon", "1e6"], "--epsilon 1e+06 is too large"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--test-fraction", "0.001"], "--test-fraction 0.001 of 240 records leaves no test"),
])
def test_run_errors_name_the_option(extra, words, capsys):
    assert words in one_line_error(["run", "--protocol", "central", *TINY, *extra], capsys)


def test_data_with_a_bom_reads_and_two_columns_explain_the_workload(tmp_path, capsys):
    rows = "\n".join(f"{i % 2},{(i // 2) % 2},{(i // 4) % 2}" for i in range(40))
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + f"a,b,c\n{rows}\n".encode())
    (tmp_path / "bom-domain.json").write_text('{"a": 2, "b": 2, "c": 2}')
    custom = ["--dataset", "custom", "--data-dir", str(tmp_path), "--clients", "2"]
    assert main(["run", "--protocol", "central", *TINY, *custom, "--data-name", "bom",
                 "--workload-marginals", "1"]) == 0
    capsys.readouterr()
    (tmp_path / "two.csv").write_text("a,b\n" + "\n".join(f"{i % 2},{i // 2 % 2}"
                                                          for i in range(40)) + "\n")
    (tmp_path / "two-domain.json").write_text('{"a": 2, "b": 2}')
    line = one_line_error(["run", "--protocol", "central", *TINY, *custom, "--data-name",
                           "two"], capsys)
    assert "3-way marginals" in line and "--workload-degree" in line


def test_debug_shows_the_traceback():
    with pytest.raises(ConfigError, match="--seed must be >= 0"):
        main(["run", "--protocol", "central", *TINY, "--seed", "-1", "--debug"])


def test_serve_refusals_name_the_option(capsys):
    a, b, c, d = free_ports(4)
    peers = f"127.0.0.1:{a},127.0.0.1:{b},127.0.0.1:{c}"
    assert "--peers lists 1 address" in one_line_error(
        ["serve", "--party", "0", "--peers", f"127.0.0.1:{a}", "--control", f"127.0.0.1:{d}"],
        capsys)
    assert "also an MPyC address in --peers" in one_line_error(
        ["serve", "--party", "0", "--peers", peers, "--control", f"127.0.0.1:{a}"], capsys)
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # binds past TIME_WAIT
        held.bind(("127.0.0.1", d))
        held.listen()
        line = one_line_error(["serve", "--party", "0", "--peers", peers, "--control",
                               f"127.0.0.1:{d}"], capsys)
    assert f"port {d} on 127.0.0.1 is in use" in line and "--control" in line


def test_absurd_rounds_need_force(capsys):
    line = one_line_error(["run", "--protocol", "central", *TINY, "--rounds", "1000000"],
                          capsys)
    assert "this run would take about 3 h" in line and "1,000,000 rounds × (central 0.0121 s)" \
        in line and "cells of the candidate marginals" in line and "--force" in line


def _free_run(n: int) -> int:
    """A port P with P..P+n-1 all free a moment ago."""
    from flaimsim.parties.mpc.launcher import port_in_use

    for _ in range(100):
        p = free_ports(1)[0]
        if p + n < 65536 and not any(port_in_use("127.0.0.1", q) for q in range(p, p + n)):
            return p
    raise RuntimeError(f"no run of {n} free ports found")


@pytest.mark.parametrize("protocol, held, role", [
    (["--protocol", "distaim", "--mpc", "real"], 4, "server 1's control port"),
    (["--protocol", "naive-flaim", "--aggregation", "servers"], 6 + 2, "server 2's MPyC port"),
])
def test_a_port_in_use_names_the_port_and_base_port(protocol, held, role, capsys):
    """--base-port P fixes the spawned servers' ports (DistAIM's P..P+5, FLAIM's --aggregation
    servers P+6..P+11); a held one is named with the option that moves it, before any
    server starts. Checked: without the ports reaching the launcher this fails."""
    base = _free_run(12)
    with socket.socket() as sock:
        # a port free to port_in_use may still have connections in TIME_WAIT: the holder
        # binds it as a server would (SO_REUSEADDR); listening, it holds the port alike
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", base + held))
        sock.listen()
        line = one_line_error(["run", *protocol, *TINY, "--rounds", "1", "--base-port",
                               str(base)], capsys)
    assert f"port {base + held} in use on 127.0.0.1 ({role}) by another program: " \
           "choose another --base-port" in line


def test_base_port_out_of_range_or_with_servers_at_is_named(capsys):
    assert "--base-port 65530" in one_line_error(
        ["run", "--protocol", "central", *TINY, "--base-port", "65530"], capsys)
    assert "--base-port sets the ports of servers this run spawns" in one_line_error(
        ["run", "--protocol", "distaim", "--mpc", "real", *TINY, "--base-port", "20000",
         "--servers-at", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"], capsys)


def test_base_port_is_where_the_servers_listen(capsys):
    import os
    import threading

    from flaimsim.parties.mpc.faults import server_processes

    base, seen, done = _free_run(12), set(), threading.Event()

    def watch() -> None:   # the spawned servers' command lines, from /proc
        while not done.is_set():
            for argv in server_processes(os.getpid()).values():
                seen.update(a for a in argv if a.startswith("127.0.0.1:"))
                if "--control-port" in argv:
                    seen.add(f"control:{argv[argv.index('--control-port') + 1]}")
            done.wait(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        assert main(["run", "--protocol", "distaim", "--mpc", "real", *TINY, "--rounds", "1",
                     "--base-port", str(base)]) == 0
    finally:
        done.set()
        thread.join()
    capsys.readouterr()
    assert seen == {f"127.0.0.1:{base + i}" for i in range(3)} | {
        f"control:{base + 3 + i}" for i in range(3)}


def test_absurd_settings_are_refused_with_the_estimate_unless_forced():
    from flaimsim.bench.estimate import LIMIT_S, check_time
    from flaimsim.protocols.config import PRESETS, RunConfig

    # Adult at DistAIM's real-MPC cost (~23 s a round): T = 500 is hours; T = 10 is not.
    adult = RunConfig(**dict(PRESETS["adult-paper"], protocol="distaim", mpc="real",
                             rounds=500))
    with pytest.raises(ConfigError, match=r"--rounds 500: this run would take about 3 h .* "
                                          r"2,870,490 cells of the candidate marginals .* "
                                          r"pass --force"):
        check_time(adult, ["distaim"], force=False)
    assert check_time(adult, ["distaim"], force=True).seconds > LIMIT_S
    assert check_time(adult.replace(rounds=10), ["distaim"], force=False).seconds < LIMIT_S


def test_a_long_round_still_shows_progress(capsys):
    """Off a terminal, a line every few seconds even while no round ends (was: only when a
    round ended, so one long round, or round 0, was silent)."""
    import time

    from flaimsim.bench.runs import progress_callback

    update, close = progress_callback(5, "central", every_s=0.05)
    try:
        deadline, seen = time.monotonic() + 20, ""
        while "central: round 0/5 done" not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
            seen += capsys.readouterr().err
    finally:
        close()
    assert "central: round 0/5 done" in seen


def test_no_free_port_or_lost_races_name_base_port(monkeypatch):
    """Every port grabbed (binding port 0 fails), or the free ports taken before the servers
    bind them on every try: one line naming --base-port, no OSError traceback."""
    import errno

    import flaimsim.parties.mpc.launcher as launcher

    def grabbed(n: int, host: str = "") -> list[int]:
        raise OSError(errno.EADDRINUSE, "Address already in use")

    monkeypatch.setattr(launcher, "free_ports", grabbed)
    with pytest.raises(launcher.PortInUseError, match="no free port on this host for the 3 "
                                                      "servers .* --base-port"):
        launcher.ServerLauncher(m=3).start()
    monkeypatch.undo()

    def lost(self) -> None:
        raise launcher.PortInUseError("server 1 could not bind: port 1234 in use", 1234)

    monkeypatch.setattr(launcher.ServerLauncher, "_launch", lost)
    with pytest.raises(launcher.PortInUseError, match=r"could not bind their ports on 3 tries "
                                                      r"\(last: port 1234 in use\): choose "
                                                      "the ports with --base-port"):
        launcher.ServerLauncher(m=3).start()
