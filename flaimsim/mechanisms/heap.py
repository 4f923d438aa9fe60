"""The C heap's top padding, for the fitter's many short-lived large arrays.

Every mirror-descent step allocates and frees node-sized temporaries (450 kB on Adult at
large T, up to ~8 MB on Census). glibc's malloc hands the free top of its heap back to the
kernel once more than 128 kB lies there, so the next step's arrays land on fresh zeroed
pages: page faults that were 17 % of a large Adult fit step (central AIM at T = 160, fits
120 and 158: 2.04 → 1.68 ms a step, `python -m flaimsim.bench.fit_step`). ``M_TOP_PAD``
keeps 16 MiB at the top of the heap instead. It changes no value, only where memory comes
from; ``FLAIMSIM_MALLOC=system`` leaves malloc as it is. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TOP_PAD = -2              # glibc's mallopt parameter number
TOP_PAD_BYTES = 16 << 20
_state: dict[str, bool] = {}


def pad_the_heap() -> bool:
    """Set glibc's ``M_TOP_PAD`` once per process; True if it is set."""
    if "padded" not in _state:
        _state["padded"] = _set_top_pad()
    return _state["padded"]


def _set_top_pad() -> bool:
    if os.environ.get("FLAIMSIM_MALLOC", "") == "system":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.mallopt(M_TOP_PAD, TOP_PAD_BYTES) == 1
    except (OSError, AttributeError):  # no C library by that name, or no mallopt in it
        return False
