"""FLAIM's aggregation through the DistAIM compute servers instead of SecAgg+.

Each client secret-shares its vector to the m MPyC servers (``share-inputs``, framed and
counted by :class:`~flaimsim.parties.transport.ClientTransport`); the servers add the shares
locally and open the sum to server 0 only (``mpc.output(x, receivers=[0])``), which writes it
to the aggregator's socket as one OPENED_SUM frame (``reveal``; counted where server 0 wrote
it and again where the aggregator read it). No other server, and no client, learns the sum.
The aggregator learns the same exact sum as with SecAgg+ and adds the central noise as
before, so outputs are identical in distribution and only the traffic differs: per client one
share vector per server and no key agreement, against SecAgg+'s keys, masked input and
unmasking. A client that drops after uploading is still counted (its shares are already with
the servers). Every call's openings are checked from outside the commands
(:mod:`flaimsim.parties.mpc.openings`): only ``open_to`` may open, once, to server 0.

With m = 2 servers the threshold is t = 0 (one server holds every share): NOT private; the
launcher's ``privacy_note`` says so and the run's outputs carry it.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from flaimsim.parties.fl.aggregator import SecureSum
from flaimsim.parties.ledger import AGGREGATOR, Ledger, server
from flaimsim.parties.mpc.input_sharing import share_inputs
from flaimsim.parties.mpc.warm_start import connect_servers
from flaimsim.parties.mpc.openings import Rule, verify_servers
from flaimsim.parties.mpc.wire import add_setup_rows
from flaimsim.parties.transport import (ClientTransport, Frame, TransportError,
                                        WireLog, WireRecord, decode_elements, read_frame_sync,
                                        sender_name)

OPENING_RULES = {"open_to": Rule(count=1, receivers=(0,))}


class _SumReceiver:
    """The aggregator's listening socket for opened sums; reads one frame per :meth:`expect`
    in a thread (server 0 may write more than a socket buffer before the driver reads)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(timeout)
        self.received = WireLog()
        self._frame: Frame | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.getsockname()[:2]

    def expect(self) -> None:
        self._frame, self._error = None, None
        self._thread = threading.Thread(target=self._read_one, daemon=True)
        self._thread.start()

    def _read_one(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(self.timeout)
                self._frame = read_frame_sync(conn)
        except BaseException as exc:
            self._error = exc

    def take(self) -> Frame:
        assert self._thread is not None
        self._thread.join(self.timeout)
        if self._error is not None or self._frame is None:
            raise TransportError(f"no opened sum reached the aggregator: {self._error}")
        f = self._frame
        self.received.append(WireRecord(sender_name(f.sender), AGGREGATOR, f.round, f.phase,
                                        f.kind.name, f.nbytes))
        return f

    def close(self) -> None:
        self.listener.close()


class ServerAggregation:
    """m compute servers kept up for a whole FLAIM run; one :meth:`sum` per aggregate."""

    def __init__(self, m: int = 3, max_sum: int = 2**31 - 1, timeout: float = 600.0,
                 servers_at: Sequence[tuple[str, int]] | None = None,
                 network: Any = None, ports: Any = None) -> None:
        # Opened sums are signed SecInt values: one spare bit above the largest sum.
        self.bits = max(int(max_sum).bit_length() + 2, 8)
        # servers_at: servers already running on their hosts (their default SecInt may
        # differ, so every step names the bit length)
        self.launcher = connect_servers(m, servers_at, bit_length=self.bits,
                                        command_timeout=timeout,
                                        **({"network": network} if network else {}),
                                        **({"ports": ports} if ports else {}))
        self.transport = ClientTransport(self.launcher.client_addresses, network=network)
        self.network = network
        self.privacy_note = self.launcher.privacy_note
        self.receiver = _SumReceiver(timeout)
        self.sent = WireLog()   # server 0's writes to the aggregator, as it reported them
        self._count = 0

    def charge_setup(self, ledger: Ledger) -> int:
        """MPyC's connection handshakes between the servers, as ``setup`` rows; the total."""
        return add_setup_rows(ledger, self.launcher.call("setup_counters"))

    def sum(self, vectors: Mapping[int, np.ndarray], ledger: Ledger, round: int,
            phase: str | None = None, late_dropout: Collection[int] = (),
            covers: Collection[int] = ()) -> SecureSum:
        name = f"agg{self._count}"
        self._count += 1
        share_inputs(self.launcher, self.transport, vectors, name, "shamir", round=round,
                     phase=phase or "share-inputs", ledger=ledger, bit_length=self.bits)
        reveal = phase or "reveal"
        host, port = self.receiver.address
        if self.network is not None:   # server 0 reaches the aggregator over its link
            from flaimsim.parties.netem import emulator

            host, port = emulator(self.network).route(server(0), AGGREGATOR, (host, port))
        self.receiver.expect()
        with self.launcher.measure(ledger, round, reveal):
            out = self.launcher.call("open_to", name=name, host=host, port=port, round=round,
                                     phase=reveal, label=f"round {round}", receiver=0)
        frame = self.receiver.take()
        written = int(out[0]["bytes"])
        # Server 0 writes the sum once the opening's step is over: one round more (stamp 1 of
        # its own step, flushed alone).
        self.sent.append(WireRecord(server(0), AGGREGATOR, round, reveal, frame.kind.name,
                                    written, 1))
        self.sent.flush_to_ledger(ledger)
        spec = self.launcher.field_spec_for(self.bits)
        p = spec.modulus
        raw = decode_elements(frame.payload, spec.element_bytes)
        total = np.array([int(v) - p if int(v) > p // 2 else int(v) for v in raw],
                         dtype=np.int64)
        self.launcher.call("drop", names=[name])
        late = tuple(k for k in late_dropout if k in vectors)
        contributors = tuple(k for k in sorted(vectors) if k not in set(covers))
        return SecureSum(total, contributors, tuple(covers), late, None)

    def check_openings(self) -> int:
        """Every server opened only through ``open_to``, once per call, to server 0 (raises
        OpeningViolation otherwise); returns the openings counted at server 0."""
        return len(verify_servers(self.launcher.call, OPENING_RULES))

    def close(self) -> None:
        try:
            self.receiver.close()
            self.transport.close()
        finally:
            self.launcher.close()
