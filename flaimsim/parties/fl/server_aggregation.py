"""FLAIM's aggregation through the DistAIM compute servers instead of SecAgg+.

Each client secret-shares its vector to the m MPyC servers (``share-inputs``); the servers add
the shares locally and open only the sum to the aggregator (``reveal``). The aggregator learns
the same exact sum as with SecAgg+ and adds the central noise as before, so outputs are
identical in distribution and only the traffic differs: per client one share vector per
server and no key agreement, against SecAgg+'s keys, masked input and unmasking. A client that
drops after uploading is still counted (its shares are already with the servers).
"""

from __future__ import annotations

from typing import Collection, Mapping

import numpy as np

from flaimsim.parties.fl.aggregator import SecureSum
from flaimsim.parties.mpc.input_sharing import share_inputs
from flaimsim.parties.mpc.launcher import ServerLauncher
from flaimsim.parties.ledger import AGGREGATOR, Ledger, server
from flaimsim.parties.transport import ClientTransport


class ServerAggregation:
    """m compute servers kept up for a whole FLAIM run; one :meth:`sum` per aggregate."""

    def __init__(self, m: int = 3, max_sum: int = 2**31 - 1, timeout: float = 600.0) -> None:
        # Opened sums are signed SecInt values: one spare bit above the largest sum.
        self.bits = int(max_sum).bit_length() + 2
        self.launcher = ServerLauncher(m=m, bit_length=max(self.bits, 8),
                                       command_timeout=timeout).start()
        self.transport = ClientTransport(self.launcher.client_addresses)
        self.privacy_note = self.launcher.privacy_note
        self._count = 0

    def sum(self, vectors: Mapping[int, np.ndarray], ledger: Ledger, round: int,
            phase: str | None = None, late_dropout: Collection[int] = (),
            covers: Collection[int] = ()) -> SecureSum:
        name = f"agg{self._count}"
        self._count += 1
        share_inputs(self.launcher, self.transport, vectors, name, "shamir", round=round,
                     phase=phase or "share-inputs", ledger=ledger)
        with self.launcher.measure(ledger, round, phase or "reveal"):
            total = np.asarray(self.launcher.open(name, label=f"round {round}"), dtype=np.int64)
        # The opened sum reaches the aggregator from server 0 (fixed-width elements).
        width = self.launcher.field_spec.element_bytes
        ledger.add(round, phase or "reveal", server(0), AGGREGATOR, total.size * width, 1,
                   "wire")
        self.launcher.call("drop", names=[name])
        late = tuple(k for k in late_dropout if k in vectors)
        contributors = tuple(k for k in sorted(vectors) if k not in set(covers))
        return SecureSum(total, contributors, tuple(covers), late, None)

    def close(self) -> None:
        self.launcher.close()
