"""flaimsim: DistAIM (AIM under MPC) versus FLAIM (federated AIM), bytes measured on the wire.

Subpackages: ``mechanisms`` (DP and AIM pieces, no networking), ``parties`` (clients,
MPC compute servers, secure aggregation, transport and the communication ledger),
``protocols`` (central AIM, DistAIM, FLAIM variants), ``bench`` (CLI, sweeps, tables, plots).
"""

from __future__ import annotations

import os

# JAX must be configured before mbi is imported anywhere (PGM-NOTES): 64-bit floats keep
# mirror descent stable, and the persistent compilation cache only slows many small programs.
os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

__version__ = "0.1.0"

_API = ("run", "sweep", "RunOutput", "SweepOutput")


def __getattr__(name: str):
    """``flaimsim.run`` and ``flaimsim.sweep`` (:mod:`flaimsim.bench.api`), imported on first
    use so that ``import flaimsim`` stays light."""
    if name in _API:
        from flaimsim.bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'flaimsim' has no attribute {name!r}")
