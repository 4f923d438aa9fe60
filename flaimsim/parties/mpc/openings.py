"""Every opening a compute server makes, counted from outside the commands that make it.

The server program (:mod:`flaimsim.parties.mpc.server`) installs :class:`OpeningCounter` on
its MPyC runtime before any command module is loaded: it replaces the runtime's ``output``
(the one call through which MPyC opens a secret) by a wrapper that records, for each call, the
server command running, the calling function, the number of elements and the receivers. The
commands' own reveal log is not consulted; a command that opens more than it logs is caught.

MPyC opens masked values inside its own protocols (comparisons, truncation, random bits:
``a + r`` with r uniform, which reveals nothing); calls made from inside the ``mpyc`` package
are counted apart as ``internal`` and not listed. So are the openings of
:mod:`flaimsim.parties.distaim.fixed_point` and :mod:`flaimsim.parties.mpc.bit_decomposition`
(``MASKED_OPENING_MODULES``), the project's own truncation, field change and bit
decomposition, which open only v + r with r from PRSS and secure random bits, statistically
hiding v (the argument is in each module's docstring). Everything else called from project
code is an application opening and must match a rule: :func:`check_openings` with, per command, the
number of elements it may open and to whom.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence


@dataclass(frozen=True)
class Opening:
    """One application-level ``output`` call at one server."""

    seq: int
    call: int                       # which command invocation (the driver's sequence number)
    command: str
    caller: str                     # module.function that called runtime.output
    elements: int
    receivers: tuple[int, ...] | None   # None: every server

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "Opening":
        rec = d.get("receivers")
        return Opening(int(d["seq"]), int(d["call"]), str(d["command"]), str(d["caller"]), int(d["elements"]),
                       None if rec is None else tuple(int(r) for r in rec))


def _elements(x: Any) -> int:
    if isinstance(x, (list, tuple)):
        return sum(_elements(v) for v in x)
    shape = getattr(x, "shape", None)
    if shape is not None:
        n = 1
        for s in shape:
            n *= int(s)
        return n
    return 1


def _receivers(r: Any) -> tuple[int, ...] | None:
    if r is None:
        return None
    if isinstance(r, int):
        return (r,)
    return tuple(int(i) for i in r)


# Project modules whose every output is a masked value v + r (r uniform, hiding v); reviewed.
MASKED_OPENING_MODULES = ("flaimsim.parties.distaim.fixed_point",
                          "flaimsim.parties.mpc.bit_decomposition",
                          "flaimsim.parties.mpc.narrow_field")


class OpeningCounter:
    """Wraps ``runtime.output`` and records every application opening (module docstring)."""

    def __init__(self) -> None:
        self.openings: list[Opening] = []
        self.internal = 0
        self.internal_elements = 0   # masked values v + r opened (each within 2^-k of r)
        self.command, self.call = "", -1

    def start_command(self, call: int, name: str) -> None:
        """Called by the server loop before it runs each command."""
        self.call, self.command = int(call), str(name)

    def install(self, runtime: Any) -> None:
        original = runtime.output
        if getattr(original, "_flaimsim_counted", False):
            raise RuntimeError("the opening counter is already installed")

        def output(x: Any, receivers: Any = None, threshold: Any = None, raw: bool = False
                   ) -> Any:
            caller = sys._getframe(1)
            module = str(caller.f_globals.get("__name__", "?"))
            if module == "mpyc" or module.startswith("mpyc.") or module in MASKED_OPENING_MODULES:
                self.internal += 1
                self.internal_elements += _elements(x)
            else:
                self.openings.append(Opening(len(self.openings), self.call, self.command,
                                             f"{module}.{caller.f_code.co_name}",
                                             _elements(x), _receivers(receivers)))
            return original(x, receivers=receivers, threshold=threshold, raw=raw)

        output._flaimsim_counted = True  # type: ignore[attr-defined]
        runtime.output = output

    def report(self) -> dict[str, Any]:
        return {"openings": [o.to_dict() for o in self.openings], "internal": self.internal,
                "internal_elements": self.internal_elements}


@dataclass(frozen=True)
class Rule:
    """What one server command may open per call: ``count`` outputs of at most
    ``max_elements`` elements each, to exactly ``receivers`` (None: every server)."""

    count: int = 1
    max_elements: int | None = None
    receivers: tuple[int, ...] | None = None


class OpeningViolation(RuntimeError):
    """A server opened something its rules do not allow."""


def check_openings(openings: Sequence[Opening], rules: Mapping[str, Rule],
                   elements: Callable[[Opening], int | None] = lambda o: None) -> None:
    """Raise :class:`OpeningViolation` unless every opening is allowed by ``rules``: its
    command has a rule, the command call opens at most ``count`` times, each opening has at
    most ``max_elements`` elements (exactly ``elements(o)`` when that is not None) and goes
    to ``receivers`` exactly (None: to every server)."""
    bad = []
    per_call: dict[int, int] = {}
    for o in openings:
        rule = rules.get(o.command)
        if rule is None:
            bad.append(f"#{o.seq} {o.caller} opened {o.elements} element(s) in command "
                       f"{o.command!r}, which may open nothing")
            continue
        per_call[o.call] = per_call.get(o.call, 0) + 1
        want = elements(o)
        if want is not None and o.elements != want:
            bad.append(f"#{o.seq} {o.command}: opened {o.elements} element(s), expected {want}")
        if rule.max_elements is not None and o.elements > rule.max_elements:
            bad.append(f"#{o.seq} {o.command}: opened {o.elements} element(s), at most "
                       f"{rule.max_elements} allowed")
        if o.receivers != rule.receivers:
            bad.append(f"#{o.seq} {o.command}: opened to {o.receivers or 'every server'}, "
                       f"allowed: {rule.receivers or 'every server'}")
        if per_call[o.call] > rule.count:
            bad.append(f"#{o.seq} {o.command}: opening {per_call[o.call]} in one call, "
                       f"{rule.count} allowed")
    if bad:
        raise OpeningViolation("; ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))


def fetch_openings(call: Callable[..., list[Any]]) -> list[list[Opening]]:
    """Every server's recorded openings via the ``openings`` command (``launcher.call``)."""
    return [[Opening.from_dict(d) for d in r["openings"]] for r in call("openings")]


MASKED_OPENINGS_NOTE = (
    "masked openings: MPyC's comparisons, truncations and random-bit generation and the "
    "project's fixed_point and bit_decomposition open only v + r, r uniform on a range 2^k "
    "times wider than v (k = MPyC's sec_param), so each opened element is within statistical "
    "distance 2^-k of a value independent of the data; they are counted here, not listed "
    "as application openings")


def masked_openings(call: Callable[..., list[Any]]) -> dict[str, int]:
    """Server 0's masked (internal) openings: output calls and elements."""
    report = call("openings")[0]
    return {"calls": int(report["internal"]),
            "elements": int(report.get("internal_elements", 0))}


def verify_servers(call: Callable[..., list[Any]], rules: Mapping[str, Rule]) -> list[Opening]:
    """Fetch every server's openings, check each against ``rules`` and that all servers
    opened the same things; returns server 0's list."""
    per_server = fetch_openings(call)
    for opened in per_server:
        check_openings(opened, rules)
    shape = [[(o.command, o.elements, o.receivers) for o in opened] for opened in per_server]
    if any(s != shape[0] for s in shape):
        raise OpeningViolation("servers opened different things")
    return per_server[0]


__all__ = ["MASKED_OPENINGS_NOTE", "masked_openings", "verify_servers", "Opening",
           "OpeningCounter", "OpeningViolation", "Rule", "check_openings",
           "fetch_openings"]
