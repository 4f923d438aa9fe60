"""Secure aggregation: exact sums, dropouts, masking, what the aggregator sees, byte counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from flaimsim.parties.secagg import crypto as sc
from flaimsim.parties.secagg import wire as sw
from flaimsim.parties.ledger import Ledger
from flaimsim.parties.star import StarNetwork
from flaimsim.parties.transport import FRAME_HEADER_BYTES
from flaimsim.parties.secagg.aggregate import secure_aggregate, secure_aggregate_keyed
from flaimsim.parties.secagg.protocol import (SecAggAggregator, SecAggClient, SecAggError,
                                     SecAggInputError, Session, advertise_keys,
                                     collect_masked_inputs, neighbour_graph, share_keys, unmask)


def _vectors(rng: np.random.Generator, n: int, length: int, max_value: int) -> dict[int, np.ndarray]:
    # non-contiguous ids: the protocol must not assume 0..n-1
    return {3 * u + 1: rng.integers(0, max_value + 1, length) for u in range(n)}


@pytest.mark.parametrize("n,length,degree,n_drop,n_late", [
    (2, 7, None, 0, 0),
    (5, 100, None, 1, 0),
    (10, 50, None, 2, 1),
    (30, 20, 6, 3, 2),        # SecAgg+: 6 neighbours out of 29
    (60, 10, None, 5, 5),     # SecAgg+ with the automatic degree
])
def test_sum_is_exact_with_and_without_dropouts(n, length, degree, n_drop, n_late):
    rng = np.random.default_rng(n)
    vecs = _vectors(rng, n, length, 1000)
    ids = sorted(vecs)
    drop, late = ids[:n_drop], ids[n_drop:n_drop + n_late]
    res = secure_aggregate(vecs, 1000, Ledger(), 3, rng, dropout=drop, late_dropout=late,
                           neighbours=degree, threshold=0.5)
    expected = sum(v for u, v in vecs.items() if u not in drop)
    assert res.sum.dtype == np.int64
    np.testing.assert_array_equal(res.sum, expected)
    assert set(res.survivors) == set(ids) - set(drop)
    if degree is not None or n == 60:
        assert res.session.degree < n - 1


def test_secagg_plus_graph_is_regular_and_symmetric():
    ids = list(range(0, 80, 2))
    g = neighbour_graph(ids, 7, np.random.default_rng(1))  # odd k rounds up to 8
    assert all(len(nb) == 8 and u not in nb for u, nb in g.items())
    assert all(u in g[v] for u, nb in g.items() for v in nb)
    assert neighbour_graph(ids[:5], None, np.random.default_rng(1))[0] == (2, 4, 6, 8)


def test_too_many_dropouts_raises():
    rng = np.random.default_rng(2)
    vecs = _vectors(rng, 5, 10, 5)
    ids = sorted(vecs)
    # complete graph: degree 4, t = 3; three early dropouts leave 2 responders per secret
    with pytest.raises(SecAggError, match="too many dropouts"):
        secure_aggregate(vecs, 5, Ledger(), 0, rng, dropout=ids[:3], threshold=0.75)
    with pytest.raises(SecAggError, match="at least 2"):
        secure_aggregate(vecs, 5, Ledger(), 0, rng, dropout=ids[:4], threshold=1)
    with pytest.raises(SecAggError, match="at least 2 clients"):
        secure_aggregate({0: np.ones(3, int)}, 1, Ledger(), 0, rng)


def test_masked_vector_looks_uniform():
    rng = np.random.default_rng(3)
    length = 256 * 40
    vecs = {u: np.full(length, 7) for u in range(3)}  # a constant input: worst case
    res = secure_aggregate(vecs, 85, Ledger(), 0, rng)  # 3 * 85 = 255 -> b = 8
    assert res.session.bits == 8
    msg = next(r for r in res.transport.log
               if r.kind == "MASKED_INPUT" and r.sender == "client:0")
    y, _ = sw.decode_masked(sw.unpack(msg.payload)[1])
    counts = np.bincount(y.astype(np.int64), minlength=256)
    assert len(counts) == 256
    assert stats.chisquare(counts).pvalue > 1e-3


def test_aggregator_never_sees_a_plain_vector_or_secret():
    rng = np.random.default_rng(4)
    vecs = _vectors(rng, 6, 40, 20)
    ids = sorted(vecs)
    s = Session(5, 40, sc.modulus_bits(6, 20), sc.word_bytes(sc.modulus_bits(6, 20)), 3, 5,
                neighbour_graph(ids, None, rng))
    network = StarNetwork()
    net = sw.Transport(network, 5)
    clients = {u: SecAggClient(u, vecs[u].astype(np.uint64), s.graph[u]) for u in ids}
    agg = SecAggAggregator()
    advertise_keys(clients, agg, net, s)
    share_keys(clients, agg, net, s)
    collect_masked_inputs(clients, ids[1:], agg, net, s)
    total = unmask(clients, ids[1:], agg, net, s)
    network.close()
    np.testing.assert_array_equal(total, sum(vecs[u] for u in ids[1:]))
    to_agg = [r for r in net.log if r.receiver == "aggregator"]
    secrets = [c.b_seed for c in clients.values()]
    secrets += [sc.private_key_bytes(c.s_sk) for c in clients.values()]
    secrets += [sc.private_key_bytes(c.c_sk) for c in clients.values()]
    plains = [sw.encode_masked(v.astype(np.uint64), s.bits, s.word_bytes)[6:]
              for v in vecs.values()]
    for r in to_agg:
        assert not any(x in r.payload for x in secrets + plains)
    masked = [r for r in to_agg if r.kind == "MASKED_INPUT"]
    assert len(masked) == 5
    for r in masked:
        y, _ = sw.decode_masked(sw.unpack(r.payload)[1])
        assert not any(np.array_equal(y, v) for v in vecs.values())
        assert not np.array_equal(y, vecs[int(r.sender.split(":")[1])])


@pytest.mark.parametrize("n,length,max_value", [(4, 100, 255), (12, 1000, 70_000), (40, 10, 1)])
def test_bytes_follow_the_formula(n, length, max_value):
    rng = np.random.default_rng(5)
    ledger = Ledger()
    res = secure_aggregate(_vectors(rng, n, length, max_value), max_value, ledger, 7, rng)
    bits = int(np.ceil(np.log2(n * max_value + 1)))
    width = -(-bits // 8)
    assert (res.session.bits, res.session.word_bytes) == (bits, width)
    framing = FRAME_HEADER_BYTES + sw.HEADER_BYTES  # transport frame + SecAgg+ header
    masked = [r for r in ledger.rows if r.phase == "secagg-masked-input"]
    assert len(masked) == n
    assert all(r.bytes == framing + 6 + length * width for r in masked)
    k = res.session.degree
    shares = [r for r in res.transport.log if r.kind == "SHARE_KEYS"]
    assert all(r.nbytes == framing + 4 + k * (4 + 132) for r in shares)
    # the ledger (sender side) and the session log agree, every row counted on a socket
    assert sum(r.bytes for r in ledger.rows) == sum(r.nbytes for r in res.transport.log)
    assert ledger.sources == {"wire"}
    assert {r.phase for r in ledger.rows} == {"secagg-keys", "secagg-masked-input",
                                              "secagg-unmask"}
    assert sum(sum(b) for b in res.client_bytes.values()) == sum(res.aggregator_bytes)


def test_keyed_modes_sum_per_key():
    rng = np.random.default_rng(6)
    keys = {"a": 5, "b": 3, "c": 4}
    choice = {0: "a", 1: "a", 2: "b", 3: "b", 4: "b", 5: "c"}
    contrib = {u: {k: rng.integers(0, 9, keys[k])} for u, k in choice.items()}
    expected = {k: sum(contrib[u][k] for u in choice if choice[u] == k) for k in keys}
    padded = secure_aggregate_keyed(contrib, 8, Ledger(), 1, rng, mode="padded")
    assert len(padded.sessions) == 1 and padded.counts == {"a": 2, "b": 3, "c": 1}
    for k in keys:
        np.testing.assert_array_equal(padded.sums[k], expected[k])
    with pytest.raises(SecAggError, match="'c'"):
        secure_aggregate_keyed(contrib, 8, Ledger(), 1, rng)
    per = secure_aggregate_keyed(contrib, 8, Ledger(), 1, rng, failures="skip")
    assert set(per.failed) == {"c"} and per.contributors["b"] == (2, 3, 4)
    for k in ("a", "b"):
        np.testing.assert_array_equal(per.sums[k], expected[k])


def test_shamir_any_t_shares_rebuild_the_secret():
    secret = bytes(range(32))
    shares = sc.shamir_share(secret, [3, 8, 9, 20, 21], 3)
    assert all(len(v) == sc.SHARE_BYTES for v in shares.values())
    for pick in ([3, 8, 9], [9, 20, 21], [3, 21, 8]):
        assert sc.shamir_reconstruct({h: shares[h] for h in pick}, 3) == secret
    with pytest.raises(sc.ShamirError):
        sc.shamir_reconstruct({3: shares[3], 8: shares[8]}, 3)


@pytest.mark.parametrize("vecs,max_value", [
    ({0: np.array([1, 2]), 1: np.array([1, 9])}, 8),      # value above max_value
    ({0: np.array([1, 2]), 1: np.array([1, 2, 3])}, 8),   # ragged
    ({0: np.array([0.5, 2]), 1: np.array([1, 2])}, 8),    # not integers
    ({0: np.array([-1, 2]), 1: np.array([1, 2])}, 8),     # negative
])
def test_bad_input_is_rejected(vecs, max_value):
    with pytest.raises(SecAggInputError):
        secure_aggregate(vecs, max_value, Ledger(), 0, np.random.default_rng(0))


def test_bench_rows_have_the_promised_columns():
    from flaimsim.bench.secagg_bench import bench_secagg

    rows = bench_secagg(client_counts=(4,), lengths=(10, 1000))
    assert [(r["clients"], r["length"]) for r in rows] == [(4, 10), (4, 1000)]
    for r in rows:
        assert r["overhead_ratio"] == pytest.approx(r["secagg_bytes_per_client"] / r["plain_bytes"])
        assert r["secagg_bytes_per_client"] > r["plain_bytes"]
    # key and unmask traffic do not depend on the length, so the overhead shrinks with it
    assert rows[0]["keys_bytes_per_client"] == rows[1]["keys_bytes_per_client"]
    assert rows[1]["overhead_ratio"] < rows[0]["overhead_ratio"]


def test_receivers_count_what_senders_wrote():
    """Every session byte is read back off a socket: per (phase, sender, receiver) the bytes
    and frames the receiving end read equal what the sender wrote (and the ledger holds)."""
    rng = np.random.default_rng(9)
    vecs = _vectors(rng, 9, 300, 50)
    ids = sorted(vecs)
    ledger = Ledger()
    with StarNetwork() as network:
        res = secure_aggregate(vecs, 50, ledger, 2, rng, dropout=ids[:1], late_dropout=ids[1:2],
                               network=network)
        sent, received = network.sent.totals(), network.received.totals()
    assert sent == received and len(sent) > 2 * len(ids)
    rows: dict = {}
    for r in ledger.rows:
        b, m = rows.get((r.phase, r.sender, r.receiver), (0, 0))
        rows[(r.phase, r.sender, r.receiver)] = (b + r.bytes, m + r.messages)
    assert rows == received
    np.testing.assert_array_equal(res.sum, sum(vecs[u] for u in ids[1:]))


def _double_unmask_attack(vecs: dict[int, np.ndarray], victim: int) -> np.ndarray | None:
    """A session run honestly, then the aggregator's extra request "victim dropped" to the
    victim's neighbours; returns the victim's input if the shares it gets rebuild it."""
    from flaimsim.parties.secagg.protocol import SecAggRefusal, answer_unmask

    ids = sorted(vecs)
    bits = sc.modulus_bits(len(ids), 20)
    s = Session(9, 12, bits, sc.word_bytes(bits), 3, 4,
                neighbour_graph(ids, 4, np.random.default_rng(0)))
    network = StarNetwork()
    net = sw.Transport(network, 9)
    clients = {u: SecAggClient(u, vecs[u].astype(np.uint64), s.graph[u]) for u in ids}
    agg = SecAggAggregator()
    advertise_keys(clients, agg, net, s)
    share_keys(clients, agg, net, s)
    collect_masked_inputs(clients, ids, agg, net, s)
    honest = unmask(clients, ids, agg, net, s)
    np.testing.assert_array_equal(honest, sum(vecs.values()))   # the honest sum is right
    y_victim = next(sw.decode_masked(sw.unpack(r.payload)[1])[0] for r in net.log
                    if r.kind == "MASKED_INPUT" and r.sender == f"client:{victim}")
    mask_key: dict[int, bytes] = {}
    for u in s.graph[victim]:   # the extra request, after the honest one
        nb = s.graph[u]
        net.send(sw.pack(sw.Kind.UNMASK_REQUEST, s.round, sw.AGGREGATOR_ID, u,
                         sw.encode_ids([v for v in nb if v != victim], [victim])))
        try:
            answer_unmask(clients, [u], net, s)
        except SecAggRefusal:
            continue
    for h, body in net.receive(sw.AGGREGATOR_ID, sw.Kind.UNMASK_SHARES):
        for owner, what, share in sw.decode_unmask_shares(body):
            if owner == victim and what == sw.MASK_KEY:
                mask_key[h.sender] = share
    network.close()
    if len(mask_key) < s.threshold:
        return None
    s_sk = sc.private_key_from_bytes(sc.shamir_reconstruct(mask_key, s.threshold))
    b = sc.shamir_reconstruct(agg.shares[(victim, sw.SELF_SEED)], s.threshold)
    x = y_victim - sc.prg_words(b, s.length, s.bits)
    for u in s.graph[victim]:
        pad = sc.prg_words(sc.agree(s_sk, agg.public_keys[u][1], b"mask", s.round, victim, u),
                           s.length, s.bits)
        x = x - pad if victim < u else x + pad
    return (x & s.mask).astype(np.int64)


def test_double_unmask_request_recovers_nothing():
    """Issue 24's attack: 5 clients, degree 4, t = 3; after the honest unmask the aggregator
    asks client 0's neighbours again, now saying client 0 dropped. Every client refuses (its
    unmask stage ran), so s_sk_0 stays secret and x_0 is not rebuilt. Checked: with the stage
    guard in SecAggClient.unmask_entries removed, this returns x_0 exactly."""
    rng = np.random.default_rng(24)
    vecs = {u: rng.integers(0, 21, 12) for u in range(5)}
    assert _double_unmask_attack(vecs, 0) is None


@pytest.mark.parametrize("step", ["masked-twice", "unmask-before-input", "both-in-one"])
def test_client_refuses_out_of_turn(step):
    from flaimsim.parties.secagg.protocol import SecAggRefusal, Stage

    c = SecAggClient(1, np.zeros(3, np.uint64), (0, 2))
    c.held_shares = {0: (b"s0", b"b0"), 2: (b"s2", b"b2")}
    s = Session(0, 3, 4, 1, 1, 2, {})
    with pytest.raises(SecAggRefusal):
        if step == "masked-twice":
            c.stage = Stage.MASKED
            c.masked_input(s)
        elif step == "unmask-before-input":
            c.stage = Stage.SHARES_RECEIVED
            c.unmask_entries([0], [2])
        else:
            c.stage = Stage.MASKED
            c.unmask_entries([0, 2], [0])
