"""Secure aggregation (Bonawitz et al. 2017) with the SecAgg+ neighbour graph (Bell et al. 2020).

This module owns the protocol: the public parameters, the parties' state and the four message
steps, each a function, in the style of Flower's SecAgg+ workflow. Primitives are in
:mod:`flaimsim.parties.secagg.crypto`, the byte format and the counting transport in
:mod:`flaimsim.parties.secagg.wire`.

Maths. Clients u in U hold x_u in [0, max_value]^L. Arithmetic is mod 2^b with
b = ceil(log2(|U| * max_value + 1)), so the true sum never wraps. Each client has a neighbour
set N(u) (a public, seeded random graph: the complete graph for small |U|, else a randomly
labelled Harary graph, every client with exactly k neighbours, k ~ 3 log2 |U|). It submits

    y_u = x_u + PRG(b_u) + sum_{v in N(u), u < v} PRG(s_uv) - sum_{v in N(u), u > v} PRG(s_uv)

where b_u is a fresh self-mask seed and s_uv = HKDF(X25519(s_sk_u, s_pk_v)) is the pairwise
seed. Pairwise masks cancel between clients whose inputs both arrive. Before masking, u
Shamir-shares s_sk_u and b_u t-out-of-|N(u)| among N(u) (encrypted under a second pairwise
key c_uv and routed through the aggregator). At unmasking, each responding client reveals, for
each neighbour, the share of b_v if v's input arrived and the share of s_sk_v if it did not
(never both). The aggregator rebuilds the self-masks of the arrived clients and the mask keys
of the dropped ones, and removes PRG(b_u) and the unmatched pairwise masks:

    sum_{u in U3} x_u = sum_{u in U3} y_u - sum_{u in U3} PRG(b_u)
                        - sum_{v dropped} sum_{u in N(v) n U3} sign(u, v) PRG(s_uv)  (mod 2^b)

Steps and ledger phases: (1) ``advertise_keys`` and (2) ``share_keys`` -> ``secagg-keys``;
(3) ``collect_masked_inputs`` -> ``secagg-masked-input``; (4) ``unmask`` -> ``secagg-unmask``.

Client state (as in Bell et al. and Flower's SecAgg+ mod): every client keeps its stage
(:class:`Stage`); each step runs once per session, in order, and a client refuses a message
out of turn. In particular it answers ONE unmask request per session, and it never reveals
both b_v and s_sk_v for the same neighbour v whatever the requests say (``revealed``). Without
this, an aggregator that sends a second request ("client 0 dropped") after the honest one
gets s_sk_0 as well as b_0, removes every mask from y_0 and reads x_0 (tests/test_secagg.py
``test_double_unmask_request_recovers_nothing``).

Threat model: semi-honest clients; an aggregator that may send extra or out-of-order requests
is refused as above. No signatures and no consistency-check round (Bonawitz's round 3
"ConsistencyCheck" is omitted): against an aggregator that tells different clients different
survivor lists, any t > k/2 makes the two reconstructions need more than k of v's
neighbours, so one session cannot yield both secrets of v. The default is the smallest such
t, the majority t = floor(k/2) + 1 (:data:`MAJORITY`): it tolerates the most dropouts the
argument allows (k - t = ceil(k/2) - 1 of a client's k neighbours) and keeps a client's
secrets from an aggregator colluding with up to t - 1 = floor(k/2) of its neighbours (fewer
than t shares reveal nothing). The earlier default t = ceil(2k/3) tolerated only floor(k/3)
dropped neighbours: at 30% dropout most FLAIM rounds failed (docs/robustness.md). A fraction
(float) or an absolute t (int) can still be asked for. The aggregator learns the exact sum; DP
noise added by the caller afterwards protects the sum from everyone downstream, not from the
aggregator. Cryptographic randomness comes from ``os.urandom`` and cannot be seeded; the
caller's ``rng`` only draws the public neighbour graph.

Running a whole session (checks, dropouts, the ledger) and keyed sums:
:mod:`flaimsim.parties.secagg.aggregate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Collection, Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from flaimsim.parties.secagg import crypto as sc
from flaimsim.parties.secagg import wire as sw

# The default reconstruction threshold: t = floor(k/2) + 1, the smallest t > k/2 (docstring).
MAJORITY = "majority"
DEFAULT_THRESHOLD = MAJORITY


class SecAggError(RuntimeError):
    """The secure aggregation round failed (too many dropouts, too few inputs); no sum exists."""


class SecAggInputError(ValueError):
    """Bad arguments to secure aggregation (vector shapes, values, ids, parameters)."""


# ---- public parameters --------------------------------------------------------------------
def auto_degree(n: int) -> int:
    """Default SecAgg+ degree: 3 * ceil(log2 n) rounded up to even, capped at n - 1 (complete)."""
    k = 3 * math.ceil(math.log2(max(n, 2)))
    return min(n - 1, k + (k % 2))


def neighbour_graph(ids: list[int], degree: int | None,
                    rng: np.random.Generator) -> dict[int, tuple[int, ...]]:
    """The public neighbour graph: complete if degree >= n - 1, else a Harary graph H_{k,n}.

    H_{k,n} (k even) joins each node to its k/2 nearest nodes on each side of a ring; the ring
    order is a seeded random permutation, so neighbourhoods are random but every client has
    exactly k neighbours (an odd k is rounded up to the next even number).
    """
    n = len(ids)
    k = auto_degree(n) if degree is None else int(degree)
    if k < 1:
        raise SecAggInputError(f"neighbours must be >= 1, got {degree}")
    k += k % 2
    if k >= n - 1:
        return {u: tuple(v for v in ids if v != u) for u in ids}
    ring = [ids[i] for i in rng.permutation(n)]
    half = k // 2
    return {ring[i]: tuple(sorted(ring[(i + d) % n] for d in range(-half, half + 1) if d))
            for i in range(n)}


def resolve_threshold(threshold: float | int | str, degree: int) -> int:
    """t from :data:`MAJORITY` (floor(k/2) + 1), a fraction of the degree (float in (0, 1]) or
    an absolute count (int)."""
    if threshold == MAJORITY:
        t = degree // 2 + 1
    elif isinstance(threshold, (int, np.integer)) and not isinstance(threshold, bool):
        t = int(threshold)
    elif isinstance(threshold, float) and 0 < threshold <= 1:
        t = math.ceil(threshold * degree - 1e-12)
    else:
        raise SecAggInputError(f"threshold must be {MAJORITY!r}, an int or a float in (0, 1], "
                               f"got {threshold!r}")
    if not 1 <= t <= degree:
        raise SecAggInputError(f"threshold {t} must be in [1, degree {degree}]")
    return t


@dataclass(frozen=True)
class Session:
    """Public parameters of one secure aggregation session."""

    round: int
    length: int
    bits: int
    word_bytes: int
    threshold: int
    degree: int
    graph: Mapping[int, tuple[int, ...]]

    @property
    def mask(self) -> np.uint64:
        return np.uint64((1 << self.bits) - 1)


# ---- parties ------------------------------------------------------------------------------
class Stage(IntEnum):
    """A client's position in its session; each step moves it up by exactly one."""

    NEW = 0
    ADVERTISED = 1      # sent (c_pk, s_pk)
    KEYS_RECEIVED = 2   # holds its neighbours' public keys
    SHARED = 3          # sent its encrypted shares
    SHARES_RECEIVED = 4  # holds its neighbours' shares
    MASKED = 5          # sent y_u
    UNMASKED = 6        # answered the one unmask request


class SecAggRefusal(SecAggError):
    """A client refused a request out of turn (a repeated or out-of-order step)."""


@dataclass
class SecAggClient:
    """A client's secrets and what it has received; only bytes leave it."""

    cid: int
    x: np.ndarray
    neighbours: tuple[int, ...]
    c_sk: X25519PrivateKey = field(init=False, repr=False)   # encrypts shares
    c_pk: bytes = field(init=False)
    s_sk: X25519PrivateKey = field(init=False, repr=False)   # pairwise mask seeds
    s_pk: bytes = field(init=False)
    b_seed: bytes = field(init=False, repr=False)            # self-mask seed b_u
    peer_keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    held_shares: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    stage: Stage = Stage.NEW
    revealed: dict[int, int] = field(default_factory=dict)   # neighbour -> SELF_SEED|MASK_KEY

    def __post_init__(self) -> None:
        self.c_sk, self.c_pk = sc.new_keypair()
        self.s_sk, self.s_pk = sc.new_keypair()
        self.b_seed = sc.new_seed()

    def enter(self, stage: Stage) -> None:
        """Move to ``stage``: only from the stage just before it (each step once, in order)."""
        if self.stage != stage - 1:
            raise SecAggRefusal(f"client {self.cid} refuses {stage.name.lower()}: it is at "
                                f"stage {self.stage.name.lower()} (each step runs once, in "
                                "order)")
        self.stage = stage

    def unmask_entries(self, alive: Sequence[int], gone: Sequence[int]
                       ) -> list[tuple[int, int, bytes]]:
        """The shares this client reveals for one unmask request: b_v's share for v in
        ``alive``, s_sk_v's for v in ``gone``. Refused unless it is the session's first
        request after the masked input, names only neighbours, and never asks both secrets
        of one neighbour (also across requests: ``revealed``)."""
        self.enter(Stage.UNMASKED)
        asked = [(v, sw.SELF_SEED) for v in alive] + [(v, sw.MASK_KEY) for v in gone]
        kinds: dict[int, int] = {}
        for v, what in asked:
            if v not in self.held_shares:
                raise SecAggRefusal(f"client {self.cid}: unmask request names {v}, not a "
                                    "neighbour whose shares it holds")
            if kinds.setdefault(v, what) != what or self.revealed.get(v, what) != what:
                raise SecAggRefusal(f"client {self.cid}: unmask request asks both secrets "
                                    f"of client {v}; never both")
        self.revealed.update(kinds)
        return [(v, what, self.held_shares[v][0 if what == sw.MASK_KEY else 1])
                for v, what in asked]

    def masked_input(self, s: Session) -> np.ndarray:
        """y_u = x_u + PRG(b_u) + sum_v sign(u, v) PRG(s_uv) mod 2^b (uint64 wraps mod 2^64)."""
        self.enter(Stage.MASKED)
        y = self.x + sc.prg_words(self.b_seed, s.length, s.bits)
        for v in self.neighbours:
            seed = sc.agree(self.s_sk, self.peer_keys[v][1], b"mask", s.round, self.cid, v)
            pad = sc.prg_words(seed, s.length, s.bits)
            y = y + pad if self.cid < v else y - pad
        return y & s.mask


@dataclass
class SecAggAggregator:
    """The aggregator: routes messages and sees only public keys, ciphertexts, masked sums."""

    public_keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    masked_sum: np.ndarray | None = None
    arrived: list[int] = field(default_factory=list)
    shares: dict[tuple[int, int], dict[int, bytes]] = field(default_factory=dict)


def _aad(round: int) -> bytes:
    return sw.U32.pack(round)


# ---- step 1: advertise keys ---------------------------------------------------------------
def advertise_keys(clients: Mapping[int, SecAggClient], agg: SecAggAggregator,
                   net: sw.Transport, s: Session) -> None:
    """Clients send (c_pk, s_pk); the aggregator sends each client its neighbours' keys."""
    for u, c in clients.items():
        c.enter(Stage.ADVERTISED)
        net.send(sw.pack(sw.Kind.ADVERTISE_KEYS, s.round, u, sw.AGGREGATOR_ID, c.c_pk + c.s_pk))
    for h, body in net.receive(sw.AGGREGATOR_ID, sw.Kind.ADVERTISE_KEYS):
        agg.public_keys[h.sender] = (body[:sc.KEY_BYTES], body[sc.KEY_BYTES:])
    for u in clients:
        keys = {v: agg.public_keys[v] for v in s.graph[u] if v in agg.public_keys}
        net.send(sw.pack(sw.Kind.NEIGHBOUR_KEYS, s.round, sw.AGGREGATOR_ID, u,
                         sw.encode_neighbour_keys(keys)))
    for u, c in clients.items():
        c.enter(Stage.KEYS_RECEIVED)
        for _, body in net.receive(u, sw.Kind.NEIGHBOUR_KEYS):
            c.peer_keys.update(sw.decode_neighbour_keys(body))
        if set(c.peer_keys) != set(c.neighbours):
            raise SecAggError(f"client {u} did not receive all its neighbours' keys")


# ---- step 2: share keys -------------------------------------------------------------------
def share_keys(clients: Mapping[int, SecAggClient], agg: SecAggAggregator,
               net: sw.Transport, s: Session) -> None:
    """Each client Shamir-shares s_sk and b_u among its neighbours, encrypted per neighbour."""
    for u, c in clients.items():
        c.enter(Stage.SHARED)
        s_shares = sc.shamir_share(sc.private_key_bytes(c.s_sk), c.neighbours, s.threshold)
        b_shares = sc.shamir_share(c.b_seed, c.neighbours, s.threshold)
        blobs = {}
        for v in c.neighbours:
            key = sc.agree(c.c_sk, c.peer_keys[v][0], b"enc", s.round, u, v)
            plain = sw.SHARE_PLAINTEXT.pack(u, v, s_shares[v], b_shares[v])
            blobs[v] = sc.encrypt(key, plain, _aad(s.round))
        net.send(sw.pack(sw.Kind.SHARE_KEYS, s.round, u, sw.AGGREGATOR_ID,
                         sw.encode_blobs(blobs)))
    routed: dict[int, dict[int, bytes]] = {u: {} for u in clients}
    for h, body in net.receive(sw.AGGREGATOR_ID, sw.Kind.SHARE_KEYS):
        for v, blob in sw.decode_blobs(body).items():
            routed[v][h.sender] = blob
    for v, blobs in routed.items():
        net.send(sw.pack(sw.Kind.FORWARD_SHARES, s.round, sw.AGGREGATOR_ID, v,
                         sw.encode_blobs(blobs)))
    for v, c in clients.items():
        c.enter(Stage.SHARES_RECEIVED)
        for _, body in net.receive(v, sw.Kind.FORWARD_SHARES):
            for u, blob in sw.decode_blobs(body).items():
                key = sc.agree(c.c_sk, c.peer_keys[u][0], b"enc", s.round, v, u)
                su, sv, s_share, b_share = sw.SHARE_PLAINTEXT.unpack(
                    sc.decrypt(key, blob, _aad(s.round)))
                if (su, sv) != (u, v):
                    raise SecAggError(f"client {v}: share from {u} is addressed {su}->{sv}")
                c.held_shares[u] = (s_share, b_share)


# ---- step 3: masked input collection ------------------------------------------------------
def collect_masked_inputs(clients: Mapping[int, SecAggClient], senders: Collection[int],
                          agg: SecAggAggregator, net: sw.Transport, s: Session) -> None:
    """Clients in ``senders`` send y_u; the aggregator sums what arrives mod 2^b."""
    for u in senders:
        body = sw.encode_masked(clients[u].masked_input(s), s.bits, s.word_bytes)
        net.send(sw.pack(sw.Kind.MASKED_INPUT, s.round, u, sw.AGGREGATOR_ID, body))
    total = np.zeros(s.length, dtype=np.uint64)
    for h, body in net.receive(sw.AGGREGATOR_ID, sw.Kind.MASKED_INPUT):
        y, bits = sw.decode_masked(body)
        if bits != s.bits or len(y) != s.length:
            raise SecAggError(f"client {h.sender} sent a masked input of the wrong shape")
        total += y
        agg.arrived.append(h.sender)
    agg.masked_sum = total & s.mask


# ---- step 4: unmasking --------------------------------------------------------------------
def unmask(clients: Mapping[int, SecAggClient], responders: Collection[int],
           agg: SecAggAggregator, net: sw.Transport, s: Session) -> np.ndarray:
    """Survivors reveal shares; the aggregator removes the masks and returns the int64 sum."""
    arrived = set(agg.arrived)
    if len(arrived) < 2:
        raise SecAggError(f"only {len(arrived)} masked input(s) arrived; secure aggregation "
                          "needs at least 2 (a sum of one vector reveals it)")
    dropped = sorted(set(agg.public_keys) - arrived)
    for u in responders:
        nb = s.graph[u]
        body = sw.encode_ids([v for v in nb if v in arrived], [v for v in nb if v not in arrived])
        net.send(sw.pack(sw.Kind.UNMASK_REQUEST, s.round, sw.AGGREGATOR_ID, u, body))
    answer_unmask(clients, responders, net, s)
    for h, body in net.receive(sw.AGGREGATOR_ID, sw.Kind.UNMASK_SHARES):
        for owner, what, share in sw.decode_unmask_shares(body):
            agg.shares.setdefault((owner, what), {})[h.sender] = share
    needed = [(u, sw.SELF_SEED) for u in sorted(arrived)] + [(v, sw.MASK_KEY) for v in dropped]
    short = [(o, len(agg.shares.get((o, w), {}))) for o, w in needed
             if len(agg.shares.get((o, w), {})) < s.threshold]
    if short:
        raise SecAggError(
            f"too many dropouts: {len(short)} secret(s) have fewer than t={s.threshold} shares "
            f"(owner, shares) {short[:5]}; {len(responders)} client(s) answered unmasking, "
            f"{len(dropped)} dropped before sending input; round failed, no sum")
    total = agg.masked_sum.copy()
    for u in sorted(arrived):
        seed = sc.shamir_reconstruct(agg.shares[(u, sw.SELF_SEED)], s.threshold)
        total -= sc.prg_words(seed, s.length, s.bits)
    for v in dropped:
        s_sk = sc.private_key_from_bytes(
            sc.shamir_reconstruct(agg.shares[(v, sw.MASK_KEY)], s.threshold))
        for u in s.graph[v]:
            if u in arrived:  # u's input carries sign(u, v) PRG(s_uv) with no partner
                pad = sc.prg_words(sc.agree(s_sk, agg.public_keys[u][1], b"mask", s.round, v, u),
                                   s.length, s.bits)
                total = total - pad if u < v else total + pad
    return (total & s.mask).astype(np.int64)


def answer_unmask(clients: Mapping[int, SecAggClient], responders: Collection[int],
                  net: sw.Transport, s: Session) -> None:
    """The responders' side of step 4: each reads its request and sends the shares it
    reveals (:meth:`SecAggClient.unmask_entries` refuses a second or contradictory one)."""
    for u in responders:
        c = clients[u]
        for _, body in net.receive(u, sw.Kind.UNMASK_REQUEST):
            alive, gone = sw.decode_ids(body, 2)
            net.send(sw.pack(sw.Kind.UNMASK_SHARES, s.round, u, sw.AGGREGATOR_ID,
                             sw.encode_unmask_shares(c.unmask_entries(alive, gone))))
