"""The switch for the exact caches on a run's hot paths (``flaimsim reproduce``'s large-T
cells spend most of their time re-deriving values that cannot have changed).

Each cache keeps a value that is a pure function of its key and hands back the very same
array or number, so a run with the caches gives the same results to the last digit as one
without (``tests/test_fast_paths.py`` checks the selections and the final error):

- a junction tree's per-clique summed axes, its node lookups, Steiner subtrees and the
  contraction paths of spanning marginals (:mod:`~flaimsim.mechanisms.junction`);
- the AIM size filter's model size per (model cliques, candidate)
  (:mod:`~flaimsim.mechanisms.model`);
- the curator's data marginals (central AIM) and each FLAIM client's sparse local counts:
  the data do not change during a run.

``with memo.disabled(): ...`` runs the plain path (for tests and for timing both).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Hashable, Iterator, MutableMapping, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_enabled = True


def enabled() -> bool:
    """Whether the exact caches are in use (default: yes)."""
    return _enabled


@contextmanager
def disabled() -> Iterator[None]:
    """Run the block on the plain paths: every cache is bypassed (neither read nor filled)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def remember(cache: MutableMapping[K, V], key: K, compute: Callable[[K], V]) -> V:
    """``cache[key]``, computed by ``compute(key)`` the first time; with the caches off,
    ``compute(key)`` every time and ``cache`` untouched."""
    if not _enabled:
        return compute(key)
    if key not in cache:
        cache[key] = compute(key)
    return cache[key]


__all__ = ["enabled", "disabled", "remember"]
