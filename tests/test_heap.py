"""The fitter's heap padding (flaimsim.mechanisms.heap): set once on glibc, never with
FLAIMSIM_MALLOC=system, and it moves no value of a fit (test_fit_step_exact runs with it)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.libc_ver()[0] == "glibc"


def _padded_in_a_fresh_process(**env: str) -> str:
    code = ("from flaimsim.mechanisms.heap import pad_the_heap; "
            "print(pad_the_heap(), pad_the_heap())")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, **env}).stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="M_TOP_PAD is glibc's")
def test_the_heap_is_padded_once_on_glibc() -> None:
    assert _padded_in_a_fresh_process(FLAIMSIM_MALLOC="") == "True True"


def test_flaimsim_malloc_system_leaves_malloc_alone() -> None:
    assert _padded_in_a_fresh_process(FLAIMSIM_MALLOC="system") == "False False"


def test_a_fit_pads_the_heap() -> None:
    import numpy as np

    from flaimsim.mechanisms import heap
    from flaimsim.mechanisms.mbi_setup import mbi
    from flaimsim.mechanisms.mirror_descent import FitSettings, MirrorDescent

    heap._state.clear()
    domain = mbi.Domain(("a", "b"), (2, 3))
    MirrorDescent(domain, [(("a", "b"), np.arange(6.0), 1.0)]).run(FitSettings(2))
    assert heap._state == {"padded": GLIBC and os.environ.get("FLAIMSIM_MALLOC") != "system"}
