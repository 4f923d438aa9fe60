"""The user errors of issue 25 (items 6-11), each run as a user would run it: its exit code,
how many ``Traceback`` lines its stderr holds (must be 0) and its last stderr line.

    python -m flaimsim.bench.error_cases [--only NAME,...] [--json]

Each case is a ``flaimsim`` command line (in a subprocess, with this checkout first on
PYTHONPATH); the fault cases start three ``flaimsim serve`` processes on loopback, or
signal a server of a running ``flaimsim run``. Prints one row per case and the totals.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from flaimsim.parties.mpc.faults import server_processes

TINY = ["--dataset", "synthfs", "--clients", "4", "--synthfs-features", "4",
        "--synthfs-records", "60", "--synthfs-bins", "4", "--workload-marginals", "4",
        "--rounds", "2", "--iters-round", "30", "--iters-final", "50"]
MPC_TINY = ["--protocol", "distaim", "--mpc", "real", "--dataset", "synthfs", "--clients", "3",
            "--synthfs-features", "4", "--synthfs-records", "40", "--synthfs-bins", "4",
            "--workload-marginals", "2", "--iters-round", "10", "--iters-final", "10"]


@dataclass(frozen=True)
class Outcome:
    case: str
    item: int
    exit_code: int
    tracebacks: int
    last_line: str
    expect_error: bool | None = True  # None: either, as long as there is no traceback
    setup_failed: bool = False

    @property
    def ok(self) -> bool:
        return not self.setup_failed and self.tracebacks == 0 and (self.expect_error is None
                                         or (self.exit_code != 0) == self.expect_error)


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def flaimsim(*argv: str) -> list[str]:
    return [sys.executable, "-m", "flaimsim.bench.cli", *argv]


def _default_sigint() -> None:
    # Started from a background job, SIGINT arrives ignored (kept across exec); a user's
    # terminal gives the command the default, so the cases do too.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_case(name: str, item: int, cmd: list[str], timeout: float = 600,
             expect_error: bool | None = True,
             during: Callable[[subprocess.Popen], None] | None = None) -> Outcome:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env(), start_new_session=True, preexec_fn=_default_sigint)
    if during is not None:
        try:
            during(proc)
        except Exception as exc:  # the case's setup failed: report it as such
            proc.kill()
            proc.wait()
            return Outcome(name, item, -1, 0, f"case setup failed: {exc}", expect_error, True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        return Outcome(name, item, -1, err.count("Traceback"), "TIMED OUT", expect_error)
    lines = [line for line in err.splitlines() if line.strip()]
    return Outcome(name, item, proc.returncode, err.count("Traceback"),
                   lines[-1] if lines else "", expect_error)


def server_pids(driver: int) -> dict[int, int]:
    """Party index -> pid of the compute servers started by ``driver`` (from /proc)."""
    return {int(argv[argv.index("-I") + 1]): pid
            for pid, argv in server_processes(driver).items() if "-I" in argv}


def signal_server(party: int, sig: int, after_s: float) -> Callable[[subprocess.Popen], None]:
    """Once the driver's servers are up, wait ``after_s`` and send ``sig`` to ``party``."""
    def during(proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + 300
        while len(server_pids(proc.pid)) < 3:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the run's servers never came up")
            time.sleep(0.1)
        time.sleep(after_s)
        os.kill(server_pids(proc.pid)[party], sig)
    return during


def signal_driver(sig: int, after_s: float) -> Callable[[subprocess.Popen], None]:
    def during(proc: subprocess.Popen) -> None:
        time.sleep(after_s)
        proc.send_signal(sig)
    return during


def standing_servers() -> tuple[list[subprocess.Popen], list[str]]:
    from flaimsim.parties.mpc.launcher import free_ports

    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    ports = free_ports(6)
    peers = ",".join(f"{h}:{p}" for h, p in zip(hosts, ports))
    controls = [f"{h}:{p}" for h, p in zip(hosts, ports[3:])]
    procs = [subprocess.Popen(flaimsim("serve", "--party", str(i), "--peers", peers,
                                       "--control", controls[i], "--idle-timeout", "900"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
             for i in range(3)]
    return procs, controls


def data_files(folder: Path) -> None:
    rows = "\n".join(f"{i % 2},{(i // 2) % 2},{(i // 4) % 2}" for i in range(40))
    (folder / "bom.csv").write_bytes(b"\xef\xbb\xbf" + f"a,b,c\n{rows}\n".encode())
    (folder / "bom-domain.json").write_text('{"a": 2, "b": 2, "c": 2}')
    two = "\n".join(f"{i % 2},{(i // 2) % 2}" for i in range(40))
    (folder / "two.csv").write_text(f"a,b\n{two}\n")
    (folder / "two-domain.json").write_text('{"a": 2, "b": 2}')


def cases(tmp: Path, controls: list[str], http_port: int, unused_port: int
          ) -> list[tuple[str, int, list[str], dict]]:
    a, b, c = controls
    run = ("run", "--protocol", "central", *TINY)
    return [
        ("epsilon 1e9", 11, flaimsim(*run, "--epsilon", "1e9"), {}),
        ("epsilon 1e6", 11, flaimsim(*run, "--epsilon", "1e6"), {}),
        ("seed -1", 11, flaimsim(*run, "--seed", "-1"), {}),
        ("dropout 0.3 on FLAIM (runs)", 12, flaimsim(
            "run", "--protocol", "naive-flaim", *TINY, "--clients", "20", "--dropout", "0.3"),
         {"expect_error": False}),
        ("dropout 0.5 on FLAIM (no round can succeed)", 12, flaimsim(
            "run", "--protocol", "naive-flaim", *TINY, "--clients", "20", "--dropout", "0.5"),
         {}),
        ("CSV with a byte-order mark (read)", 11, flaimsim(
            *run, "--dataset", "custom", "--data-name", "bom", "--data-dir", str(tmp),
            "--clients", "2", "--workload-marginals", "1"), {"expect_error": False}),
        ("two columns, 3-way workload", 11, flaimsim(
            *run, "--dataset", "custom", "--data-name", "two", "--data-dir", str(tmp),
            "--clients", "2"), {}),
        ("test fraction leaves no test record", 11, flaimsim(*run, "--test-fraction", "0.001"),
         {}),
        ("--command-timeout given to run", 11, flaimsim(*run, "--command-timeout", "5"), {}),
        ("T = 10^6 (refused with the time estimate)", 6, flaimsim(*run, "--rounds",
                                                                  "1000000"), {}),
        ("--out is a file", 3, flaimsim(*run, "--out", str(tmp / "bom.csv")), {}),
        ("SIGINT to run", 6, flaimsim("run", "--protocol", "central", *TINY, "--rounds",
                                      "20000"), {"during": signal_driver(signal.SIGINT, 6.0)}),
        ("SIGKILL of server 1 mid-run", 7, flaimsim("run", *MPC_TINY, "--rounds", "30"),
         {"during": signal_server(1, signal.SIGKILL, 4.0)}),
        ("SIGSTOP of server 1 mid-run", 7, flaimsim("run", *MPC_TINY, "--rounds", "30",
                                                    "--party-timeout", "8"),
         {"during": signal_server(1, signal.SIGSTOP, 4.0)}),
        ("--servers-at in the wrong order", 8, flaimsim(
            "run", *MPC_TINY, "--rounds", "1", "--servers-at", f"{b},{a},{c}"), {}),
        ("--servers-at with 2 of 3 addresses", 8, flaimsim(
            "run", *MPC_TINY, "--rounds", "1", "--servers-at", f"{a},{b}"), {}),
        ("--servers-at with an HTTP server", 8, flaimsim(
            "run", *MPC_TINY, "--rounds", "1", "--servers-at",
            f"127.0.0.1:{http_port},{b},{c}"), {}),
        ("--servers-at with nothing listening", 8, flaimsim(
            "run", *MPC_TINY, "--rounds", "1", "--servers-at",
            f"127.0.0.1:{unused_port},{b},{c}"), {}),
        ("serve --peers with one address", 9, flaimsim(
            "serve", "--party", "0", "--peers", f"127.0.0.1:{unused_port}", "--control",
            "127.0.0.1:1"), {}),
        ("serve --control equal to its MPyC port", 9, flaimsim(
            "serve", "--party", "0", "--peers", f"127.0.0.1:{unused_port},{b},{c}",
            "--control", f"127.0.0.1:{unused_port}"), {}),
        ("serve timing out waiting for peers", 9, flaimsim(
            "serve", "--party", "0", "--peers",
            f"127.0.0.1:{unused_port},127.0.0.9:{unused_port},127.0.0.10:{unused_port}",
            "--control", f"127.0.0.1:{_free_port()}", "--connect-timeout", "3"), {}),
        ("serve with a different --peers list", 9, mismatched_serve(),
         {"during": start_peers_for_mismatch}),
        ("run --base-port with a port in the range held", 10, flaimsim(
            "run", *MPC_TINY, "--rounds", "1", "--base-port", str(http_port - 3)), {}),
        ("serve --control on a port in use", 10, flaimsim(
            "serve", "--party", "0", "--peers", f"127.0.0.1:{unused_port},{b},{c}",
            "--control", f"127.0.0.1:{http_port}"), {}),
    ]


_MISMATCH: dict[str, list] = {}


def mismatched_serve() -> list[str]:
    """Party 2 of three new servers, started with a wrong entry for party 0 (parties 0 and
    1 are started by :func:`start_peers_for_mismatch` with the right list)."""
    from flaimsim.parties.mpc.launcher import free_ports

    ports = free_ports(7)
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    peers = ",".join(f"{h}:{p}" for h, p in zip(hosts, ports))
    wrong = ",".join([f"127.0.0.1:{ports[6]}"] + peers.split(",")[1:])
    _MISMATCH["argv"] = [flaimsim("serve", "--party", str(i), "--peers", peers, "--control",
                                  f"{hosts[i]}:{ports[3 + i]}", "--connect-timeout", "60")
                         for i in range(2)]
    return flaimsim("serve", "--party", "2", "--peers", wrong, "--control",
                    f"127.0.0.3:{ports[5]}", "--connect-timeout", "60")


def start_peers_for_mismatch(proc: subprocess.Popen) -> None:
    """Start parties 0 and 1 (they exit with the same refusal; reaped, or ended after 90 s
    if they keep serving)."""
    peers = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=_env()) for argv in _MISMATCH["argv"]]

    def reap() -> None:
        for p in peers:
            try:
                p.wait(90)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    threading.Thread(target=reap, daemon=True).start()


def _free_port() -> int:
    from flaimsim.parties.mpc.launcher import free_ports

    return free_ports(1)[0]


def run_all(only: set[str] | None = None) -> list[Outcome]:
    from flaimsim.parties.mpc.launcher import free_ports

    procs, controls = standing_servers()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = socketserver.TCPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    (unused,) = free_ports(1)
    try:
        with tempfile.TemporaryDirectory(prefix="flaimsim-errors-") as tmp:
            data_files(Path(tmp))
            out = []
            for name, item, cmd, kw in cases(Path(tmp), controls, httpd.server_address[1],
                                             unused):
                if only and not any(o in name for o in only):
                    continue
                out.append(run_case(name, item, cmd, **kw))
                print(f"{'ok ' if out[-1].ok else 'BAD'} [{item}] {name}: exit "
                      f"{out[-1].exit_code}, {out[-1].tracebacks} tracebacks | "
                      f"{out[-1].last_line[:200]}", file=sys.stderr, flush=True)
            alive = sum(p.poll() is None for p in procs)
            print(f"standing servers still serving after the cases: {alive} of 3",
                  file=sys.stderr)
            return out
    finally:
        httpd.shutdown()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(15)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flaimsim.bench.error_cases",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=None, help="comma list of words in the case names")
    ap.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that the standing servers are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    outcomes = run_all(set(args.only.split(",")) if args.only else None)
    if args.json:
        print(json.dumps([asdict(o) for o in outcomes], indent=1))
    bad = [o for o in outcomes if not o.ok]
    print(f"{len(outcomes)} cases, {sum(o.tracebacks for o in outcomes)} tracebacks, "
          f"{len(bad)} not as expected{': ' + ', '.join(o.case for o in bad) if bad else ''}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
