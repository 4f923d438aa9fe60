"""Sweeps on a Dask cluster: a scheduler and two workers as processes on 127.0.0.1; one
worker is killed mid-sweep and the driver too, and a resume finishes the sweep with every cell
exactly once."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from flaimsim.parties.mpc.launcher import free_ports

DASK = Path(sys.executable).with_name("dask")
SWEEP = ["--protocols", "central", "--rounds", "2,3", "--repeats", "2",
         "--synthfs-features", "4", "--synthfs-bins", "4", "--workload-marginals", "2",
         "--clients", "3", "--synthfs-records", "40", "--iters-round", "10",
         "--iters-final", "10"]


def wait_until(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    if not DASK.exists() and shutil.which("dask") is None:
        pytest.skip("the dask command line is not installed")
    dask = str(DASK) if DASK.exists() else "dask"
    (port,) = free_ports(1)
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL,
                              stderr=open(logs / "scheduler.log", "w"))]
    try:
        for i in range(2):  # no nanny: a killed worker stays dead
            procs.append(subprocess.Popen(
                [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--host", "127.0.0.1", "--name", f"w{i}", "--death-timeout", "60",
                 "--local-directory", str(tmp_path / f"w{i}")],
                stdout=subprocess.DEVNULL, stderr=open(logs / f"worker{i}.log", "w")))
        from distributed import Client

        with Client(address, timeout=60) as client:
            assert wait_until(lambda: len(client.scheduler_info()["workers"]) == 2, 60), (
                (logs / "worker0.log").read_text()[-2000:])
        yield address, procs
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def sweep_cmd(out: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "flaimsim.bench.cli", "sweep", *SWEEP, "--scheduler",
            address, "--out", str(out)]


@pytest.mark.timeout(900)  # ~15 s on a quiet machine; minutes when the cores are shared
def test_killed_worker_then_resume_runs_every_cell_once(cluster, tmp_path: Path) -> None:
    address, procs = cluster
    out = tmp_path / "sweep"
    cells = out / "cells"
    done = lambda: sorted(cells.glob("*.json")) if cells.is_dir() else []  # noqa: E731
    start = time.monotonic()
    driver = subprocess.Popen(sweep_cmd(out, address), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: len(done()) >= 1 or driver.poll() is not None, 600)
        t_first = time.monotonic() - start
        procs[2].send_signal(signal.SIGKILL)  # worker w1 dies mid-sweep
        # ...and the driver is stopped once one more cell is in, so the resume has work left
        wait_until(lambda: len(done()) >= 2 or driver.poll() is not None, 600)
        driver.send_signal(signal.SIGTERM)
        driver.wait(60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    before = len(done())
    resume = subprocess.run(sweep_cmd(out, address), capture_output=True, text=True,
                            timeout=600)
    total = time.monotonic() - start
    assert resume.returncode == 0, resume.stderr[-3000:]
    keys = [p.stem for p in done()]
    assert len(keys) == len(set(keys)) == 4
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert sorted(r["cell"] for r in rows) == sorted(keys)  # each cell counted once
    assert not [p for p in cells.iterdir() if ".tmp" in p.name]  # no half-written file
    assert all((cells / f"{k}.ledger.csv").is_file() for k in keys)
    summary = resume.stdout.strip().splitlines()[-1]
    ran, skipped = int(summary.split()[1]), int(summary.split(", ")[1].split()[0])
    assert skipped == before and ran == 4 - before, summary
    print(f"\nkill-and-resume: first cell after {t_first:.1f} s; {before} cells done when the "
          f"driver was stopped; resume ran {ran}, skipped {skipped}; {total:.1f} s in all; "
          f"load {os.getloadavg()[0]:.2f}")
