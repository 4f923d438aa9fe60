"""``--sharing``: how a client splits its vector among the compute servers, as a type that a
configuration checks once. The codecs are :mod:`flaimsim.parties.mpc.input_sharing`'s (its
docstring describes the three modes) and the servers' ``share-inputs`` handlers; this module
stays free of MPyC so that a configuration can name a mode without loading the MPC stack."""

from __future__ import annotations

from enum import StrEnum


class Sharing(StrEnum):
    """A client's sharing mode; compares and serialises as its string."""

    COMPACT = "compact"     # additive mod 2^b, b = bitlen(public bound): packed, seeds
    SHAMIR = "shamir"       # degree-t Shamir shares over the servers' field
    ADDITIVE = "additive"   # additive mod p: one masked vector, seeds to the rest

    @property
    def converts_to_shamir(self) -> bool:
        """The servers turn the received pieces into Shamir shares (a resharing step)."""
        return self is not Sharing.SHAMIR
