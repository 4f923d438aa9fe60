"""The compute servers' prime field and Shamir parameters: what a client needs to share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from mpyc import finfields

from flaimsim.parties.transport import element_bytes


class SharingError(ValueError):
    """Input that cannot be shared as asked (wrong type, out of range, unknown mode)."""


@dataclass(frozen=True)
class FieldSpec:
    """The servers' prime field and Shamir parameters, as clients need them."""

    modulus: int
    m: int
    threshold: int

    def __post_init__(self) -> None:
        if self.m < 1 or self.threshold < 0 or 2 * self.threshold >= self.m:
            raise SharingError(f"invalid m={self.m}, t={self.threshold} (need 2t < m)")

    @property
    def element_bytes(self) -> int:
        return element_bytes(self.modulus)

    @property
    def field(self) -> Any:
        return finfields.GF(self.modulus)

    @staticmethod
    def from_info(info: Mapping[str, Any]) -> "FieldSpec":
        """From a server's ``ping`` reply."""
        return FieldSpec(int(info["modulus"]), int(info["m"]), int(info["threshold"]))
