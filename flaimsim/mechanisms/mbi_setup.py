"""Imports ``mbi`` with JAX configured first: 64-bit floats (32-bit fits stall on large
data) and no persistent compilation cache (mbi warns against it). Import ``mbi`` from here."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_enable_compilation_cache", False)

import mbi  # noqa: E402

__all__ = ["jax", "mbi"]
