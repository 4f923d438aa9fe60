"""Plain-text tables for the terminal: left-aligned columns under a dashed rule.

The one layout the profile, the network bench and similar printouts share; it imports nothing
from flaimsim, so every layer may use it."""
from __future__ import annotations

from typing import Sequence


def text_table(head: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """``head`` and the rows of ``body`` as left-aligned lines, each column as wide as its
    widest cell, with a dashed rule under the head."""
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    return lines + ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]


__all__ = ["text_table"]
