"""Nothing lost: the --out folder is locked, checked before a run and never left with a cut
file or an earlier run's ledgers beside a new result (issue 25, items 1-3)."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from flaimsim.bench.cli import main
from flaimsim.safe_output import OutFolder, OutputError, write_text

TINY = ["--dataset", "synthfs", "--clients", "4", "--synthfs-features", "4",
        "--synthfs-records", "60", "--synthfs-bins", "4", "--workload-marginals", "4",
        "--rounds", "2", "--iters-round", "30", "--iters-final", "50"]
REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> int:
    return main(["run", *TINY, *args])


def assert_complete_files(folder: Path) -> None:
    """Every JSON parses, and no temporary file is left behind."""
    for p in folder.iterdir():
        assert ".tmp-" not in p.name, f"temporary file left: {p.name}"
        if p.suffix == ".json":
            json.loads(p.read_text())


def test_second_writer_is_refused_by_name(tmp_path, capsys):
    out = tmp_path / "out"
    with OutFolder.claim(out):  # another run holds the folder
        assert run_cli("--protocol", "central", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"in use by another flaimsim run (pid {os.getpid()})" in err
    assert not (out / "result.json").exists()
    assert run_cli("--protocol", "central", "--out", str(out)) == 0  # the lock went with it


def test_rerun_refused_without_force_and_replaced_whole_with_it(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("--protocol", "central", "--out", str(out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run_cli("--protocol", "naive-flaim", "--out", str(out)) == 2
    assert "already holds an earlier run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert run_cli("--protocol", "naive-flaim", "--out", str(out), "--force") == 0
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert not [n for n in names if "central" in n], names  # no stale ledger or privacy log
    doc = json.loads((out / "result.json").read_text())
    assert [r["protocol"] for r in doc["results"]] == ["naive-flaim"] and doc["complete"]


def test_atomic_write_keeps_the_old_file_on_a_failed_write(tmp_path):
    target = tmp_path / "result.json"
    write_text(target, '{"old": true}')

    with pytest.raises(OutputError, match="result.json: no space left"):
        from flaimsim.safe_output import open_atomic

        with open_atomic(target) as fh:
            fh.write('{"new": ')
            raise OSError(errno.ENOSPC, "No space left on device")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def _limit_file_size() -> None:
    # A file system that takes 4096 bytes and no more per file: the disk is "full" there.
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_full_disk_leaves_no_cut_file(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "flaimsim.bench.cli", "run", *TINY,
                           "--protocol", "central", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=tmp_path,
                          preexec_fn=_limit_file_size, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cannot write" in proc.stderr and "result.json" in proc.stderr
    assert_complete_files(out)  # never a cut file: each is the last complete version
    if (out / "result.json").exists():  # the references alone fit; the record did not
        doc = json.loads((out / "result.json").read_text())
        assert doc["results"] == [] and doc["complete"] is False


def test_bad_out_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    import flaimsim.bench.runs as runs

    def no_run(*a, **k):
        raise AssertionError("the run started before --out was checked")

    monkeypatch.setattr(runs, "prepare", no_run)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, why in ((a_file, "is a file"), (a_file / "sub", "cannot create the folder")):
        assert run_cli("--protocol", "central", "--out", str(out)) == 2
        assert why in capsys.readouterr().err


def test_read_only_out_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    import flaimsim.bench.runs as runs

    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(ro)],
        capture_output=True).returncode == 0
    if not mounted:
        ro.chmod(0o555)
        if os.access(ro, os.W_OK):
            pytest.skip("cannot make a read-only folder here (root without mount)")
    try:
        monkeypatch.setattr(runs, "prepare", lambda *a, **k: pytest.fail("run started"))
        assert run_cli("--protocol", "central", "--out", str(ro / "out")) == 2
        assert "read-only file system" in capsys.readouterr().err or not mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=True)


def test_a_later_failure_keeps_the_earlier_protocols_records(tmp_path, monkeypatch, capsys):
    import flaimsim.bench.runs as runs

    real = runs.runner

    def failing(name):
        if name == "naive-flaim":
            def boom(*a, **k):
                raise RuntimeError("injected failure in the second protocol")
            return boom
        return real(name)

    monkeypatch.setattr(runs, "runner", failing)
    out = tmp_path / "out"
    assert run_cli("--protocol", "central", "--protocol", "naive-flaim", "--out",
                   str(out)) == 2
    err = capsys.readouterr().err
    assert "injected failure" in err and "kept the finished protocols' records" in err
    doc = json.loads((out / "result.json").read_text())
    assert [r["protocol"] for r in doc["results"]] == ["central"]
    assert doc["complete"] is False and doc["failed"]["protocol"] == "naive-flaim"
    assert (out / "ledger-central-T2-s0.csv").is_file()
    assert_complete_files(out)
