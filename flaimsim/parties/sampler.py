"""Where a party's time goes: a sampling profiler of its main thread, cheap enough to leave on
for a full-size run (no tracing: a background thread looks at the main thread's stack every
``interval`` seconds).

Set ``FLAIMSIM_SAMPLE_DIR`` and every compute server writes ``server<i>-samples.json`` there
when it exits normally: per sampled stack, how often it was seen. :func:`summarise` groups the
samples into *waiting* (the event loop blocked in its selector: the party waits for the
network or the driver), *MPyC* (the runtime's scheduling and share arithmetic), *numpy*
(vectorised work) and *other Python*, and names the top functions by own and inclusive time.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ENV = "FLAIMSIM_SAMPLE_DIR"


class StackSampler:
    """Samples one thread's stack (innermost ``depth`` frames) every ``interval`` s."""

    def __init__(self, thread_id: int | None = None, interval: float = 0.01,
                 depth: int = 12) -> None:
        self.thread_id = thread_id or threading.main_thread().ident
        self.interval, self.depth = interval, depth
        self.stacks: Counter[tuple[str, ...]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-sampler", daemon=True)
        self.started = time.monotonic()

    def start(self) -> "StackSampler":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self.thread_id)  # noqa: SLF001 - by design
            stack = []
            while frame is not None and len(stack) < self.depth:
                code = frame.f_code
                stack.append(f"{Path(code.co_filename).name}:{code.co_name}")
                frame = frame.f_back
            if stack:
                self.stacks[tuple(stack)] += 1

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(1.0)
        return {"interval_s": self.interval, "seconds": time.monotonic() - self.started,
                "stacks": [[list(s), n] for s, n in self.stacks.most_common()]}


def start_from_env(name: str) -> "tuple[StackSampler, Path] | None":
    """A running sampler if ``FLAIMSIM_SAMPLE_DIR`` is set, with the file to write."""
    where = os.environ.get(ENV)
    if not where:
        return None
    Path(where).mkdir(parents=True, exist_ok=True)
    return StackSampler().start(), Path(where) / f"{name}-samples.json"


def write(sampler: "tuple[StackSampler, Path] | None") -> None:
    if sampler is not None:
        sampler[1].write_text(json.dumps(sampler[0].stop()))


def category(stack: list[str]) -> str:
    """waiting | mpyc | numpy | python, from the innermost frames of one sample."""
    top = stack[0]
    if top.startswith(("selectors.py:", "base_events.py:_run_once")) and "select" in top:
        return "waiting"
    if any(f.startswith(("selectors.py:select",)) for f in stack[:2]):
        return "waiting"
    if top.split(":")[0] in ("runtime.py", "asyncoro.py", "finfields.py", "sectypes.py",
                             "gmpy.py", "thresha.py", "mpctools.py"):
        return "mpyc"
    if any(f.startswith(("_methods.py", "fromnumeric.py", "numeric.py")) for f in stack[:2]):
        return "numpy"
    return "python"


def summarise(report: dict[str, Any], top: int = 10) -> dict[str, Any]:
    """Shares of time by category, and the top functions by own and inclusive samples."""
    cats: Counter[str] = Counter()
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for stack, n in report["stacks"]:
        total += n
        cats[category(stack)] += n
        own[stack[0]] += n
        for f in set(stack):
            incl[f] += n
    share = lambda c: {k: v / total for k, v in c.most_common(top)} if total else {}  # noqa
    return {"samples": total, "seconds": report["seconds"], "categories": share(cats),
            "own": share(own), "inclusive": share(incl)}


__all__ = ["ENV", "StackSampler", "category", "start_from_env", "summarise", "write"]
