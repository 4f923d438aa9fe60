"""Protocols: central AIM, DistAIM and the FLAIM variants, each a ``run_*(config) -> RunResult``.

:func:`runner` maps a protocol name to its entry point; modules are imported lazily so that
``central`` runs without the MPC stack.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from flaimsim.protocols.config import PROTOCOLS, ConfigError, RunConfig

_ENTRY = {
    "central": ("central", "run_central"),
    "distaim": ("distaim", "run_distaim"),
    "naive-flaim": ("flaim", "run_flaim"),
    "aug-flaim-oracle": ("flaim", "run_flaim"),
    "aug-flaim-private": ("flaim", "run_flaim"),
}


def runner(protocol: str) -> Callable:
    if protocol not in _ENTRY:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    module, name = _ENTRY[protocol]
    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = ["PROTOCOLS", "ConfigError", "RunConfig", "runner"]
