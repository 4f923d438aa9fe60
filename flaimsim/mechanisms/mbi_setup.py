"""Access to ``mbi`` (private-pgm 2.0) in two weights. Import ``mbi`` from here only.

- ``Domain``, ``clique_utils`` and ``junction_tree``: mbi's JAX-free modules, which the
  numpy fitter and the AIM size rule use. ``mbi``'s package
  init imports JAX (1.3–2 s, mostly ``ml_dtypes``) and every estimator; a run that fits in
  numpy never needs them. So the package object is created without running its init and
  only these submodules are executed into it.
- :func:`full` (or ``from flaimsim.mechanisms.mbi_setup import mbi, jax``): the whole
  package, for the optional JAX fitter and interoperability. JAX is configured first: 64-bit
  floats (32-bit fits stall on large data) and no persistent compilation cache (mbi warns
  against it). The init then runs into the same package object, so ``mbi.Domain`` is the
  ``Domain`` already handed out and objects cross between the two freely.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

PURE_SUBMODULES = ("domain", "clique_utils", "junction_tree")


def _package() -> ModuleType:
    """The ``mbi`` package object, its init not (yet) run unless someone imported it."""
    existing = sys.modules.get("mbi")
    if existing is not None:
        return existing
    spec = importlib.util.find_spec("mbi")
    if spec is None or spec.loader is None:
        raise ImportError("private-pgm is not installed (pip install mbi)")
    package = importlib.util.module_from_spec(spec)
    package._flaimsim_init_pending = True  # type: ignore[attr-defined]

    def on_missing(name: str) -> Any:  # ``import mbi; mbi.Dataset`` elsewhere: init first
        if package.__dict__.get("_flaimsim_init_pending", False):
            full()
            if name in package.__dict__:
                return package.__dict__[name]
        raise AttributeError(f"module 'mbi' has no attribute {name!r}")

    package.__getattr__ = on_missing  # type: ignore[attr-defined]
    sys.modules["mbi"] = package
    return package


def _load_pure(name: str) -> ModuleType:
    _package()
    return importlib.import_module(f"mbi.{name}")


domain, clique_utils, junction_tree = (_load_pure(n) for n in PURE_SUBMODULES)
Domain = domain.Domain


def full() -> ModuleType:
    """The whole ``mbi`` package, JAX configured first (runs mbi's init once)."""
    package = _package()
    if package.__dict__.get("_flaimsim_init_pending", False):
        os.environ.setdefault("JAX_ENABLE_X64", "1")
        os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "0")
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_enable_compilation_cache", False)
        del package._flaimsim_init_pending  # type: ignore[attr-defined]
        try:
            package.__spec__.loader.exec_module(package)  # type: ignore[union-attr]
        except BaseException:
            package._flaimsim_init_pending = True  # type: ignore[attr-defined]
            raise
        package.__dict__.pop("__getattr__", None)
    return package


def __getattr__(name: str) -> Any:
    """``mbi`` and ``jax`` on first use (``from flaimsim.mechanisms.mbi_setup import mbi``)."""
    if name == "mbi":
        return full()
    if name == "jax":
        full()
        import jax

        return jax
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
