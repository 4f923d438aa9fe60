"""Running SecAgg+: one whole session over the star network, and one sum per key.

This module owns the drivers: :func:`secure_aggregate` checks the inputs, fixes the public
parameters (:class:`~flaimsim.parties.secagg.protocol.Session`), runs the four steps of
:mod:`flaimsim.parties.secagg.protocol` over a
:class:`~flaimsim.parties.star.StarNetwork` and writes the traffic counted on its sockets to
the ledger; :func:`secure_aggregate_keyed` sums several vectors per client, one sum per key
(per-marginal sessions, or one padded session).

Dropouts: ``dropout`` clients finish the key steps but never send a masked input (their input
is excluded; their pairwise masks are removed via their reconstructed mask keys);
``late_dropout`` clients send a masked input and then vanish before unmasking (their input is
included; their self-mask is rebuilt from their neighbours' shares). If a secret cannot be
rebuilt (fewer than t responding neighbours), or fewer than 2 inputs arrive, the round fails
with :class:`SecAggError` and no partial sum is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Hashable, Mapping, Sequence

import numpy as np

from flaimsim.parties import profile
from flaimsim.parties.ledger import AGGREGATOR, Ledger, client
from flaimsim.parties.secagg import crypto as sc
from flaimsim.parties.secagg import wire as sw
from flaimsim.parties.secagg.protocol import (DEFAULT_THRESHOLD, SecAggAggregator,
                                              SecAggClient, SecAggError, SecAggInputError,
                                              Session, advertise_keys, collect_masked_inputs,
                                              neighbour_graph, resolve_threshold, share_keys,
                                              unmask)
from flaimsim.parties.star import StarNetwork


@dataclass(frozen=True)
class SecAggResult:
    """The sum over ``survivors`` (clients whose masked input arrived) and the traffic counted on the sockets.

    ``client_bytes[k] = (sent, received)`` over the session; ``transport.log`` lists every
    message (sender, receiver, phase, kind, frame bytes on the socket, payload).
    """

    sum: np.ndarray
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    late_dropped: tuple[int, ...]
    session: Session
    bytes_by_phase: dict[str, int]
    client_bytes: dict[int, tuple[int, int]]
    aggregator_bytes: tuple[int, int]
    transport: sw.Transport


def _check_vectors(vectors: Mapping[int, np.ndarray], max_value: int) -> dict[int, np.ndarray]:
    if not vectors:
        raise SecAggInputError("no client vectors given")
    if int(max_value) != max_value or max_value < 0:
        raise SecAggInputError(f"max_value must be a non-negative integer, got {max_value!r}")
    out, length = {}, None
    for k, v in vectors.items():
        if int(k) != k or not 0 <= k < sw.AGGREGATOR_ID:
            raise SecAggInputError(f"client ids must be integers in [0, 2^32 - 1), got {k!r}")
        a = np.asarray(v)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise SecAggInputError(f"client {k}: need a 1-D integer vector, got {a.dtype} {a.shape}")
        if length is None:
            length = len(a)
        if len(a) != length:
            raise SecAggInputError(f"client {k}: length {len(a)} differs from {length}")
        if a.size and (a.min() < 0 or a.max() > max_value):
            raise SecAggInputError(f"client {k}: values must lie in [0, max_value={max_value}]")
        out[int(k)] = a.astype(np.uint64)
    return out


def secure_aggregate(vectors: Mapping[int, np.ndarray], max_value: int, ledger: Ledger,
                     round: int, rng: np.random.Generator, dropout: Collection[int] = (),
                     late_dropout: Collection[int] = (),
                     threshold: float | int | str = DEFAULT_THRESHOLD,
                     neighbours: int | None = None,
                     keep_payloads: bool = True, network: StarNetwork | None = None,
                     phase: str | None = None) -> SecAggResult:
    """Run one SecAgg+ session over ``vectors`` (client id -> int vector in [0, max_value]^L).

    Every message crosses ``network`` (a fresh loopback :class:`StarNetwork` when None); the
    traffic counted on its sockets goes to ``ledger`` (phases secagg-keys /
    secagg-masked-input / secagg-unmask, or all ``phase``; source ``wire``), also when the
    session fails. ``threshold``: ``"majority"`` (t = floor(k/2) + 1, the default), a fraction
    of the degree (float) or absolute t (int).
    ``neighbours``: degree k (None: :func:`auto_degree`). Raises :class:`SecAggError` if the
    round fails; the caller then has no sum for it.
    """
    xs = _check_vectors(vectors, max_value)
    ids = sorted(xs)
    drop, late = {int(u) for u in dropout}, {int(u) for u in late_dropout}
    if not drop <= set(ids) or not late <= set(ids) or drop & late:
        raise SecAggInputError("dropout and late_dropout must be disjoint subsets of the clients")
    if len(ids) < 2:
        raise SecAggError("secure aggregation needs at least 2 clients; one client's sum is "
                          "its own vector")
    bits = sc.modulus_bits(len(ids), int(max_value))
    if bits > sc.MAX_BITS:
        raise SecAggInputError(f"{bits}-bit sums exceed {sc.MAX_BITS} bits; lower max_value")
    graph = neighbour_graph(ids, neighbours, rng)
    degree = len(graph[ids[0]])
    s = Session(int(round), len(xs[ids[0]]), bits, sc.word_bytes(bits),
                resolve_threshold(threshold, degree), degree, graph)
    own_network = network is None
    network = network or StarNetwork()
    net = sw.Transport(network, s.round, keep_payloads, phase)
    network.clocks.barrier()   # the session starts when the driver moves on (docs/network.md)
    try:
        clients = {u: SecAggClient(u, xs[u], graph[u]) for u in ids}
        agg = SecAggAggregator()
        with profile.star_step(network.sent, s.round, phase or "secagg-keys", "SecAgg+ advertise keys"):
            advertise_keys(clients, agg, net, s)
        with profile.star_step(network.sent, s.round, phase or "secagg-keys", "SecAgg+ share keys"):
            share_keys(clients, agg, net, s)
        senders = [u for u in ids if u not in drop]
        with profile.star_step(network.sent, s.round, phase or "secagg-masked-input",
                       "SecAgg+ masked input"):
            collect_masked_inputs(clients, senders, agg, net, s)
        with profile.star_step(network.sent, s.round, phase or "secagg-unmask", "SecAgg+ unmask"):
            total = unmask(clients, [u for u in senders if u not in late], agg, net, s)
    finally:
        network.flush_to_ledger(ledger)
        if own_network:
            network.close()
    client_bytes = {u: net.party_bytes(client(u)) for u in ids}
    return SecAggResult(total, tuple(senders), tuple(sorted(drop)), tuple(sorted(late)), s,
                        net.bytes_by_phase(), client_bytes, net.party_bytes(AGGREGATOR), net)


# ---- several vectors per client: one sum per key (e.g. per chosen marginal) ---------------
@dataclass(frozen=True)
class KeyedSums:
    """Per-key sums over the surviving clients that contributed a vector for that key.

    ``counts[key]`` is the number of surviving contributors (in ``padded`` mode the aggregator
    learns it only through the secure sum of one-hot indicators). ``failed`` maps keys whose
    session failed to the reason (only with ``failures="skip"``).
    """

    sums: dict[Hashable, np.ndarray]
    contributors: dict[Hashable, tuple[int, ...]]
    counts: dict[Hashable, int]
    sessions: tuple[SecAggResult, ...]
    failed: dict[Hashable, str]


def secure_aggregate_keyed(contributions: Mapping[int, Mapping[Hashable, np.ndarray]],
                           max_value: int, ledger: Ledger, round: int,
                           rng: np.random.Generator, mode: str = "per-marginal",
                           layout: Sequence[tuple[Hashable, int]] | None = None,
                           failures: str = "raise", dropout: Collection[int] = (),
                           late_dropout: Collection[int] = (),
                           threshold: float | int | str = DEFAULT_THRESHOLD,
                           neighbours: int | None = None,
                           keep_payloads: bool = True,
                           network: StarNetwork | None = None) -> KeyedSums:
    """Sum, for every key, the vectors of the clients that submitted that key.

    ``per-marginal``: one :func:`secure_aggregate` session per key over its contributors. A key
    chosen by one client cannot be hidden from the aggregator (the sum is that client's vector)
    so its session fails like any other (:class:`SecAggError`, or listed in ``failed`` with
    ``failures="skip"``). ``padded``: one session over all clients, each sending the
    concatenation over ``layout`` (default: every key submitted, with its length) of its
    vector or zeros, plus a one-hot block of the keys it submitted. If the caller also keeps
    the choices out of the clear, the aggregator learns per-key sums and counts only, not who
    chose what (a key with one contributor still reveals that vector, but not its owner). It
    costs sum(layout lengths) words per client instead of the client's own lengths.
    """
    if mode not in ("per-marginal", "padded") or failures not in ("raise", "skip"):
        raise SecAggInputError(f"mode must be per-marginal|padded, failures raise|skip; got "
                               f"{mode!r}, {failures!r}")
    ids = sorted(int(u) for u in contributions)
    if layout is None:
        seen: dict[Hashable, int] = {}
        for u in ids:
            for key, vec in contributions[u].items():
                seen.setdefault(key, len(vec))
        layout = list(seen.items())
    lengths = dict(layout)
    for u in ids:
        for key, vec in contributions[u].items():
            if key not in lengths or len(vec) != lengths[key]:
                raise SecAggInputError(f"client {u}: key {key!r} missing from the layout or "
                                       f"of the wrong length")
    drop, late = set(dropout), set(late_dropout)
    kw = dict(threshold=threshold, neighbours=neighbours, keep_payloads=keep_payloads,
              network=network)
    sums, contributors, counts, sessions, failed = {}, {}, {}, [], {}
    if mode == "per-marginal":
        for key, _ in layout:
            group = [u for u in ids if key in contributions[u]]
            try:
                res = secure_aggregate({u: contributions[u][key] for u in group}, max_value,
                                       ledger, round, rng, dropout=drop & set(group),
                                       late_dropout=late & set(group), **kw)
            except SecAggError as err:
                if failures == "raise":
                    raise SecAggError(f"key {key!r}: {err}") from err
                failed[key] = str(err)
                continue
            sessions.append(res)
            sums[key], contributors[key] = res.sum, res.survivors
            counts[key] = len(res.survivors)
        return KeyedSums(sums, contributors, counts, tuple(sessions), failed)
    offsets = np.cumsum([0] + [n for _, n in layout])
    total_len = int(offsets[-1])
    padded = {}
    for u in ids:
        vec = np.zeros(total_len + len(layout), dtype=np.int64)
        for i, (key, n) in enumerate(layout):
            if key in contributions[u]:
                vec[offsets[i]:offsets[i + 1]] = contributions[u][key]
                vec[total_len + i] = 1
        padded[u] = vec
    res = secure_aggregate(padded, max(int(max_value), 1), ledger, round, rng,
                           dropout=drop, late_dropout=late, **kw)
    alive = set(res.survivors)
    for i, (key, _) in enumerate(layout):
        sums[key] = res.sum[offsets[i]:offsets[i + 1]]
        counts[key] = int(res.sum[total_len + i])
        contributors[key] = tuple(u for u in ids if u in alive and key in contributions[u])
    return KeyedSums(sums, contributors, counts, (res,), failed)
