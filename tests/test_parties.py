"""Compute servers as processes, client sharing, transport and wire byte counting."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import numpy as np
import pytest
from scipy.stats import chisquare

from flaimsim.parties.mpc.input_sharing import (
    SEED_BYTES, FieldSpec, SharingError, additive_pieces, expand_seed, shamir_shares,
    share_inputs, upload_bytes)
from flaimsim.parties.mpc.launcher import (
    NOT_PRIVATE_NOTE, LauncherConfigError, PartyFailure, PortInUseError, ServerLauncher,
    free_ports)
from flaimsim.parties.ledger import Ledger
from flaimsim.parties.transport import (
    FRAME_HEADER_BYTES, ClientTransport, Frame, FrameKind, decode_elements, dumps,
    encode_elements, loads)
from flaimsim.parties.mpc.wire import WireSnapshot, add_wire_rows, unmatched_pairs

pytestmark = pytest.mark.timeout(120)

P64 = 18446744073709551427  # the 64-bit prime MPyC uses for SecInt(32)
D, K, M = 10_000, 20, 3


def assert_all_dead(pids: list[int]) -> None:
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ---- no processes -------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [3, 8, 12])
def test_fixed_width_elements_round_trip(width: int) -> None:
    rng = np.random.default_rng(width)
    vals = np.array([int(v) for v in rng.integers(0, 2**62, 50)] + [256**width - 1, 0],
                    dtype=object) % 256**width
    buf = encode_elements(vals, width)
    assert len(buf) == width * len(vals)
    assert list(decode_elements(buf, width)) == list(vals)


def test_frame_header_and_json_payloads() -> None:
    f = Frame(FrameKind.SHAMIR_SHARES, 7, 3, "share-inputs", b"abc")
    assert FRAME_HEADER_BYTES == 14 and len(f.encode()) == f.nbytes == 17
    msg = {"a": np.arange(4), "b": b"\x00\x01", "c": np.array([2**70], dtype=object)}
    back = loads(dumps(msg))
    assert np.array_equal(back["a"], np.arange(4)) and back["b"] == b"\x00\x01"
    assert back["c"][0] == 2**70


@pytest.mark.parametrize("array", [
    np.random.default_rng(0).random(1000),                  # the score command's public marginals
    np.array([[1, -2], [3, 4]], dtype=">i4"),                # big-endian arrives as the same values
    np.array([True, False]), np.zeros((0, 3)), np.uint64(2**64 - 1) * np.ones(2, np.uint64)])
def test_numeric_arrays_travel_as_raw_bytes_bit_for_bit(array: np.ndarray) -> None:
    payload = dumps({"x": array})
    back = loads(payload)["x"]
    assert back.shape == array.shape and back.dtype.kind == array.dtype.kind
    assert back.tobytes() == array.astype(array.dtype.newbyteorder("<")).tobytes()
    if array.size >= 1000:  # raw bytes, not one JSON number per value
        assert len(payload) < 1.4 * array.nbytes


@pytest.mark.parametrize("bad, names", [
    ({"__ndarray_raw__": "AAAA", "dtype": "|O", "shape": [1]}, "dtype object"),
    ({"__ndarray_raw__": "AAAA", "dtype": "<f8", "shape": [1]}, "cannot hold 3 bytes")])
def test_a_control_array_that_is_not_plain_numbers_is_refused(bad, names) -> None:
    import json
    with pytest.raises(Exception, match=names):
        loads(json.dumps({"x": bad}).encode())


def test_prg_expansion_is_deterministic_and_in_field() -> None:
    s1, s2 = bytes(range(16)), bytes(range(1, 17))
    a = expand_seed(s1, 1000, P64)
    assert np.array_equal(a, expand_seed(s1, 1000, P64))
    assert np.array_equal(a[:10], expand_seed(s1, 10, P64))  # a prefix of the same stream
    assert not np.array_equal(a, expand_seed(s2, 1000, P64))
    assert all(0 <= v < P64 for v in a)
    small = expand_seed(s1, 20 * 1009, 1009)  # rejection sampling on a 10-bit prime
    counts = np.bincount(small.astype(np.int64), minlength=1009)
    assert len(counts) == 1009 and chisquare(counts).pvalue > 1e-4  # uniform on [0, p)
    with pytest.raises(SharingError):
        expand_seed(b"short", 4, P64)


def test_additive_and_shamir_shares_reconstruct() -> None:
    spec = FieldSpec(P64, 3, 1)
    x = np.array([0, 5, -3, 100, 2**40])
    masked, seeds = additive_pieces(x, spec)
    assert len(seeds) == 2 and all(len(s) == SEED_BYTES for s in seeds)
    total = (masked + sum(expand_seed(s, len(x), P64) for s in seeds)) % P64
    assert list(total) == [v % P64 for v in x.tolist()]
    sh = shamir_shares(x, spec)  # degree 1: f(0) = 2 f(1) - f(2)
    assert list((2 * sh[0] - sh[1]) % P64) == [v % P64 for v in x.tolist()]
    with pytest.raises(SharingError):
        shamir_shares(np.array([0.5]), spec)


def test_wire_rows_give_received_side_in_ledger() -> None:
    before = [WireSnapshot(i, (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)) for i in range(3)]
    after = [WireSnapshot(0, (0, 10, 20), (0, 1, 1), (0, 5, 7), (0, 1, 1)),
             WireSnapshot(1, (5, 0, 30), (1, 0, 2), (10, 0, 9), (1, 0, 1)),
             WireSnapshot(2, (7, 9, 0), (1, 1, 0), (20, 30, 0), (1, 2, 0))]
    led = Ledger()
    diffs = add_wire_rows(led, before, after, 0, "score")
    assert unmatched_pairs(diffs) == []
    tot = led.totals()
    assert tot["server:0"] == {"sent": 30, "received": 12, "messages_sent": 2,
                               "messages_received": 2}
    assert tot["server:2"]["received"] == 50
    assert unmatched_pairs([after[0], after[1], WireSnapshot(2, (7, 9, 0), (1, 1, 0),
                                                             (21, 30, 0), (1, 2, 0))])


def test_bad_launcher_configuration() -> None:
    with pytest.raises(LauncherConfigError):
        ServerLauncher(m=3, threshold=2)
    with pytest.raises(LauncherConfigError):
        ServerLauncher(m=1)


# ---- three real server processes ----------------------------------------------------------------

@pytest.fixture(scope="module")
def servers():
    with ServerLauncher(m=M, command_timeout=60) as launcher:
        yield launcher
    assert_all_dead(launcher.pids)


@pytest.fixture(scope="module")
def vectors() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(7)
    return {k: rng.integers(0, 101, D) for k in range(K)}


@pytest.mark.parametrize("mode", ["shamir", "additive"])
def test_sum_opens_exactly_with_exact_upload_bytes(servers, vectors, mode) -> None:
    assert servers.private and servers.privacy_note == ""
    spec = servers.field_spec
    assert spec.element_bytes == 8
    expected = {"shamir": M * D * 8 + M * FRAME_HEADER_BYTES,
                "additive": D * 8 + (M - 1) * SEED_BYTES + M * FRAME_HEADER_BYTES}[mode]
    assert upload_bytes(mode, D, spec) == expected
    def server_client_bytes() -> int:
        return sum(int(v) for r in servers.call("counters") for v in r["client_bytes"].values())
    received_before = server_client_bytes()
    runs = []
    with ClientTransport(servers.client_addresses) as transport:
        for rnd in (0, 1):  # two runs: byte counts must be identical
            ledger = Ledger(run=f"r{rnd}", protocol=mode)
            before = servers.counters()
            res = share_inputs(servers, transport, vectors, name=f"{mode}{rnd}", mode=mode,
                               round=rnd, ledger=ledger)
            assert np.array_equal(servers.open(f"{mode}{rnd}"), sum(vectors.values()))
            assert res.upload_bytes == {k: expected for k in range(K)}
            client_rows = [r for r in ledger.rows if r.sender.startswith("client:")]
            assert {r.phase for r in client_rows} == {"share-inputs"}
            assert len(client_rows) == K * M and sum(r.bytes for r in client_rows) == K * expected
            assert ledger.summary(K, M)["client_bytes_sent_mean"] == expected
            if mode == "additive":  # each server inputs its piece to both peers
                assert res.conversion_bytes_sent == (2 * (D * 8 + 12),) * M
            else:
                assert res.conversion_bytes_sent == ()
            after = servers.counters()
            assert unmatched_pairs([a - b for a, b in zip(after, before)]) == []
            runs.append((res.upload_bytes, res.conversion_bytes_sent,
                         sorted((r.sender, r.receiver, r.bytes) for r in ledger.rows)))
    assert runs[0] == runs[1]
    # the servers counted the same client bytes as the transport did
    assert server_client_bytes() - received_before == sum(f.nbytes for f in transport.log)


def test_reveal_log_holds_only_what_was_opened(servers) -> None:
    start = len(servers.reveal_log())
    rng = np.random.default_rng(3)
    vecs = {k: rng.integers(-50, 50, 16) for k in range(3)}
    with ClientTransport(servers.client_addresses) as transport:
        share_inputs(servers, transport, vecs, "hidden", "shamir", round=90)
        share_inputs(servers, transport, vecs, "shown", "additive", round=91)
    servers.call("aggregate", names=["hidden", "shown"], out="both")
    assert np.array_equal(servers.open("shown", label="test"), sum(vecs.values()))
    log = servers.reveal_log()[start:]
    assert [e["name"] for e in log] == ["shown"] and log[0]["label"] == "test"
    held = servers.call("arrays")[0]["secure"]
    assert {"hidden", "shown", "both"} <= set(held)


@pytest.mark.parametrize("mode", ["shamir", "additive"])
def test_other_bit_length_shares_in_its_own_field(servers, mode) -> None:
    spec = servers.field_spec_for(64)
    assert spec.modulus != servers.field_spec.modulus and spec.element_bytes == 12
    vecs = {k: np.full(16, 2**40 + k, dtype=np.int64) for k in range(3)}
    with ClientTransport(servers.client_addresses) as transport:
        res = share_inputs(servers, transport, vecs, f"wide-{mode}", mode, round=80,
                           bit_length=64)
    assert set(res.upload_bytes.values()) == {upload_bytes(mode, 16, spec)}
    assert np.array_equal(servers.open(f"wide-{mode}"), sum(vecs.values()))


# ---- failures, concurrency, two servers --------------------------------------------------------

def test_share_elements_not_below_the_modulus_are_refused_by_name() -> None:
    """A masked vector whose word is ≥ p is no field element: the server names the client
    (the driver then stops every party, as for any failed command)."""
    with ServerLauncher(m=3, command_timeout=20) as launcher:
        spec = launcher.field_spec
        words = [spec.modulus - 1, spec.modulus, 5]
        with ClientTransport(launcher.client_addresses) as transport:
            transport.send(4, 0, FrameKind.ADDITIVE_MASKED, 0, "share-inputs",
                           encode_elements(np.array(words, dtype=object), spec.element_bytes))
            for j in (1, 2):
                transport.send(4, j, FrameKind.ADDITIVE_SEED, 0, "share-inputs",
                               bytes(SEED_BYTES))
            with pytest.raises(PartyFailure, match="client 4: 1 share elements are not below"):
                launcher.call("receive_shares", name="bad", round=0, phase="share-inputs",
                              clients=[4], mode="additive", length=3)



def test_killed_server_raises_party_failure_and_nothing_survives() -> None:
    launcher = ServerLauncher(m=3, command_timeout=20).start()
    try:
        pids = launcher.pids
        launcher.call("ping")
        os.kill(pids[1], signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(PartyFailure) as err:
            launcher.call("ping", sleep=0.5)
        assert time.monotonic() - t0 < 20
        msg = str(err.value)
        assert "server 1" in msg and "exit code -9" in msg
        assert "[server 1" in msg and "control on" in msg  # that party's stderr tail
    finally:
        launcher.close()
    assert_all_dead(pids)


def test_command_timeout_kills_every_party() -> None:
    with ServerLauncher(m=3) as launcher:
        pids = launcher.pids
        with pytest.raises(PartyFailure, match="exceeded its timeout of 1.0 s"):
            launcher.call("ping", timeout=1.0, sleep=30)
        with pytest.raises(PartyFailure, match="not running"):
            launcher.call("ping")
    assert_all_dead(pids)


def test_two_launchers_at_once_do_not_collide() -> None:
    launchers = [ServerLauncher(m=3) for _ in range(2)]
    errors: list[BaseException] = []

    def start(lau: ServerLauncher) -> None:
        try:
            lau.start()
        except BaseException as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=start, args=(lau,)) for lau in launchers]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(90)
        assert not errors
        ports = [set(lau.mpc_ports) | set(lau.control_ports) for lau in launchers]
        assert not ports[0] & ports[1]
        vecs = {k: np.arange(100) * (k + 1) for k in range(4)}
        results = []
        for lau in launchers:
            with ClientTransport(lau.client_addresses) as tr:
                res = share_inputs(lau, tr, vecs, "x", "additive")
            assert np.array_equal(lau.open("x"), sum(vecs.values()))
            results.append((res.upload_bytes, res.conversion_bytes_sent))
        assert results[0] == results[1]  # separate processes, same bytes
    finally:
        for lau in launchers:
            lau.close()
    for lau in launchers:
        assert_all_dead(lau.pids)


def test_two_servers_run_but_are_flagged_not_private() -> None:
    with ServerLauncher(m=2) as launcher:
        assert not launcher.private
        assert "not private (t=0)" in launcher.privacy_note == NOT_PRIVATE_NOTE
        assert launcher.field_spec.threshold == 0
        vecs = {0: np.array([1, 2, 3]), 1: np.array([10, 20, 30])}
        with ClientTransport(launcher.client_addresses) as tr:
            res = share_inputs(launcher, tr, vecs, "x", "shamir")
        assert res.privacy_note == NOT_PRIVATE_NOTE
        assert list(launcher.open("x")) == [11, 22, 33]


@pytest.mark.parametrize("which", ["control", "mpc"])
def test_port_in_use_error_names_the_port(which: str) -> None:
    mpc_ports, control_ports = free_ports(3), free_ports(3)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    busy = (control_ports if which == "control" else mpc_ports)[2]
    blocker.bind(("127.0.0.1" if which == "control" else "", busy))
    blocker.listen()
    launcher = ServerLauncher(m=3, ports=(mpc_ports, control_ports), start_timeout=20)
    try:
        with pytest.raises(PortInUseError) as err:
            launcher.start()
        assert err.value.port == busy and f"port {busy} in use" in str(err.value)
    finally:
        launcher.close()
        blocker.close()
    assert_all_dead(launcher.pids)


def test_port_race_is_retried_with_fresh_ports(monkeypatch) -> None:
    import flaimsim.parties.mpc.launcher as launcher_mod
    blocker = socket.socket()
    blocker.bind(("", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    real, calls = launcher_mod.free_ports, []

    def racy_free_ports(n: int, host: str = "") -> list[int]:
        ports = real(n, host)
        calls.append(ports)
        return ports[:1] + [busy] + ports[2:] if len(calls) == 1 else ports  # MPyC port of server 1
    monkeypatch.setattr(launcher_mod, "free_ports", racy_free_ports)
    try:
        with ServerLauncher(m=3, port_retries=3) as launcher:
            assert len(calls) == 2 and busy not in launcher.mpc_ports
            assert launcher.call("ping")[1]["pid"] == 1
    finally:
        blocker.close()
    assert_all_dead(launcher.pids)


EXTRA_COMMANDS = '''
from flaimsim.parties.mpc.server import ServerState, command

@command("double")
async def double(state: ServerState, name: str, out: str) -> dict:
    y = 2 * state.array(name)
    await state.runtime.gather(y)
    state.arrays[out] = y
    return {"name": out}
'''


def test_commands_can_be_added_by_loading_a_module(tmp_path, monkeypatch) -> None:
    (tmp_path / "extra_server_commands.py").write_text(EXTRA_COMMANDS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]))
    with ServerLauncher(m=2, load=["extra_server_commands"]) as launcher:
        assert "double" in launcher.info[0]["commands"]
        with ClientTransport(launcher.client_addresses) as tr:
            share_inputs(launcher, tr, {0: np.array([1, -2, 3])}, "x", "shamir")
        launcher.call("double", name="x", out="y")
        assert list(launcher.open("y")) == [2, -4, 6]
        with pytest.raises(PartyFailure, match="unknown command 'nope'"):
            launcher.call("nope")
    assert_all_dead(launcher.pids)


def test_prestarted_servers_are_claimed_once_and_unclaimed_ones_closed() -> None:
    from flaimsim.parties.mpc import warm_start
    from flaimsim.parties.distaim.engines import MpcEngine, launcher_options
    from flaimsim.parties.distaim.options import DistAimOptions

    warm_start.prestart_servers(3, **launcher_options(60.0))
    engine = MpcEngine(Ledger(), DistAimOptions(m=3, max_count=100), command_timeout=60.0)
    try:
        assert engine.launcher.prestart_ready_s is not None     # the prestarted session
        vectors = {0: np.array([1, 2, 3]), 1: np.array([4, 5, 6])}
        engine.share(0, [0, 1], vectors.__getitem__)           # it works like a fresh one
        engine.decompose(0)
    finally:
        engine.close()
    assert warm_start.release_prestarted() == 0                  # nothing left over
    # other options: not claimed, a fresh start; the prestarted one is closed on release
    warm_start.prestart_servers(3, **launcher_options(61.0))
    fresh = MpcEngine(Ledger(), DistAimOptions(m=3, max_count=100), command_timeout=60.0)
    try:
        assert fresh.launcher.prestart_ready_s is None
    finally:
        fresh.close()
    pending = list(warm_start._PENDING.values())
    assert warm_start.release_prestarted() == 1
    procs = pending[0].result["launcher"].procs
    assert all(p.poll() is not None for p in procs)
