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
        held.bind(("127.0.0.1", d))
        held.listen()
        line = one_line_error(["serve", "--party", "0", "--peers", peers, "--control",
                               f"127.0.0.1:{d}"], capsys)
    assert f"port {d} on 127.0.0.1 is in use" in line and "--control" in line


def test_absurd_rounds_need_force(capsys):
    line = one_line_error(["run", "--protocol", "central", *TINY, "--rounds", "1000000"],
                          capsys)
    assert "at least 28 hours" in line and "--force" in line
