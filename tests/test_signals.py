"""Signals end a sweep cleanly (issue 25, item 5): SIGTERM or Ctrl-C stops the workers, keeps
the finished cells, discards the cells in progress, ends in one line with 143 or 130, and
the same command resumes without losing or doubling a cell."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--preset", "synthfs-small", "--dataset", "synthfs", "--clients", "4",
        "--synthfs-features", "4", "--synthfs-records", "60", "--synthfs-bins", "4",
        "--workload-marginals", "4", "--iters-round", "30", "--iters-final", "300"]
ROUNDS = list(range(2, 14))  # 12 cells


def sweep_cmd(out: Path, *extra: str, jobs: int = 2) -> list[str]:
    return [sys.executable, "-m", "flaimsim.bench.cli", "sweep", "--protocols", "central",
            "--rounds", ",".join(map(str, ROUNDS)), *TINY, "--jobs", str(jobs), "--out",
            str(out), *extra]


def done_cells(out: Path) -> set[str]:
    cells = out / "cells"
    if not cells.is_dir():
        return set()
    return {p.name for p in cells.glob("*.json") if not p.name.startswith(".")}


def start(out: Path, *extra: str, jobs: int = 2) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(sweep_cmd(out, *extra, jobs=jobs), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_as_from_a_terminal)


def _as_from_a_terminal() -> None:
    # A job started in the background of a non-interactive shell inherits SIGINT ignored
    # (and keeps it across exec): give the sweep the default, as a terminal's Ctrl-C finds.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_after(proc: subprocess.Popen, out: Path, more: int, send) -> tuple[int, str,
                                                                                   int]:
    """Wait until ``more`` new cells are done, note the driver's descendants, call
    ``send(proc)``; return (exit code, stderr, cells done before the signal)."""
    before = len(done_cells(out))
    deadline = time.monotonic() + 600
    while len(done_cells(out)) < before + more:
        assert proc.poll() is None, f"sweep ended before the signal: {proc.communicate()}"
        assert time.monotonic() < deadline, "no cell finished in 600 s"
        time.sleep(0.1)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "the sweep should run worker processes"
    at_signal = len(done_cells(out))
    send(proc)
    _, err = proc.communicate(timeout=120)
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"processes outlived the driver: {[p.pid for p in alive]}"
    assert at_signal < len(ROUNDS), "the sweep finished before the signal"
    return proc.returncode, err, at_signal


def check_stop_line(err: str, code: int, name: str, out: Path) -> None:
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(rf"sweep: stopped by {re.escape(name)}: (\d+) of {len(ROUNDS)} cells "
                     r"done and kept in .*; rerun the same command to resume", last)
    assert m, last
    assert int(m.group(1)) == len(done_cells(out))
    for p in (out / "cells").glob("*.json"):
        assert not p.name.startswith("."), f"temporary file left: {p.name}"
        json.loads(p.read_text())  # every kept cell is complete


def test_sigterm_then_sigint_stop_a_sweep_and_it_resumes(tmp_path):
    out = tmp_path / "sweep"
    proc = start(out)
    code, err, _ = interrupt_after(proc, out, 1, lambda p: p.send_signal(signal.SIGTERM))
    assert code == 143, err
    check_stop_line(err, code, "SIGTERM", out)
    kept = done_cells(out)

    proc = start(out)  # resume, then Ctrl-C to the whole process group
    code, err, _ = interrupt_after(proc, out, 1, lambda p: os.killpg(p.pid, signal.SIGINT))
    assert code == 130, err
    check_stop_line(err, code, "SIGINT (Ctrl-C)", out)
    assert kept <= done_cells(out)  # nothing finished was lost
    kept = done_cells(out)

    proc = start(out, jobs=1)  # the resume (in one process: the pool's imports cost ~10 s)
    outp, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    m = re.search(r"sweep: (\d+) run, (\d+) already done, 0 failed", outp)
    assert m and int(m.group(2)) == len(kept) and int(m.group(1)) == len(ROUNDS) - len(kept)
    assert len(done_cells(out)) == len(ROUNDS)
    rows = (out / "sweep.csv").read_text().strip().splitlines()[1:]
    keys = [r.split(",")[0] for r in rows]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == len(ROUNDS)  # none doubled


def test_sigterm_stops_a_dask_sweep(tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "sweep"
    proc = start(out, "--scheduler", "local")
    code, err, _ = interrupt_after(proc, out, 1, lambda p: p.send_signal(signal.SIGTERM))
    assert code == 143, err
    check_stop_line(err, code, "SIGTERM", out)
