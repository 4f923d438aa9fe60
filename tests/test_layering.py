"""The import layering of the package, read from the source with ``ast`` (imports inside
functions included), and no import cycle between modules.

Layers, lowest first; a module imports only from its own layer or lower ones:

    safe_output, text_table  <  mechanisms, datasets  <  parties  <  protocols  <  bench

(``safe_output``, the one atomic file writer, and ``text_table`` import nothing from flaimsim.
``datasets``, the shipped and fetched data, sits beside ``mechanisms``: its loaders ask it
where data lives and its fetch codes data with ``mechanisms.raw_data``.)

Inside ``parties`` (lowest first; rooms of the same rank do not import each other):

    ledger, rounds, links, sampler  <  netem  <  transport, profile  <  star, mpc  <  secagg  <  distaim, fl

``parties.star`` is FLAIM's aggregator-to-clients network, built on ``transport``'s frames;
SecAgg+ (``parties.secagg``) runs over it. ``parties.mpc`` is the generic compute-server
runtime (server program, loop, launcher, wire counters, input sharing, resharing, field): it
never imports DistAIM's room (``parties.distaim``), FLAIM's (``parties.fl``) or SecAgg+
(``parties.secagg``). DistAIM's room builds on ``mpc``; FLAIM's on ``mpc`` (server-side
aggregation) and ``secagg``.

One exception: the root package re-exports the Python API (``flaimsim.run``,
``flaimsim.sweep``) from ``bench.api``, imported lazily on first use (``FACADE``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import flaimsim

ROOT = Path(flaimsim.__file__).parent
LAYERS = {"safe_output": -1, "text_table": -1, "mechanisms": 0, "datasets": 0, "parties": 1, "protocols": 2,
          "bench": 3}
PARTIES = {"ledger": 0, "rounds": 0, "links": 0, "netem": 1, "sampler": 0, "transport": 2,
           "profile": 2, "star": 3, "mpc": 3, "secagg": 4, "distaim": 5, "fl": 5}
FACADE = {("flaimsim", "flaimsim.bench.api")}  # the package's lazy re-export of the API


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported flaimsim module, line) for every import in the file, at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative: from the file's package upwards
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:   # ``from pkg import module`` imports the module
                sub = f"{base}.{a.name}"
                out.append((sub if sub in known else base, node.lineno))
    return [(m, line) for m, line in out if m == "flaimsim" or m.startswith("flaimsim.")]


def graph() -> dict[str, list[tuple[str, int]]]:
    mods = modules()
    known = set(mods)
    edges = {}
    for name, path in mods.items():
        first: dict[str, int] = {}
        for m, line in imports(path, known):
            if m != name:
                first.setdefault(m, line)
        edges[name] = sorted(first.items())
    return edges


def rank(module: str) -> tuple[int, int]:
    """(layer, rank inside parties); the root package sits below everything."""
    parts = module.split(".")
    if len(parts) < 2:
        return (-1, 0)
    layer = LAYERS[parts[1]]
    inner = PARTIES[parts[2]] if parts[1] == "parties" and len(parts) > 2 else 0
    return (layer, inner)


def placed(module: str) -> bool:
    try:
        rank(module)
    except KeyError:
        return False
    return True


def room(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:3]) if len(parts) > 2 and parts[1] == "parties" else ".".join(parts[:2])


def upward_imports(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    bad = []
    for name, targets in edges.items():
        for target, line in targets:
            if room(target) == room(name) or not (placed(name) and placed(target)):
                continue   # an unplaced module is reported by test_every_module_is_in_a_layer
            if (name, target) in FACADE:
                continue
            (la, ia), (lb, ib) = rank(name), rank(target)
            if lb > la or (lb == la and la == LAYERS["parties"] and ib >= ia):
                bad.append(f"{name}:{line} imports {target}")
    return bad


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in edges.get(v, []):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_a_layer() -> None:
    """A new package or ``parties`` module must be given its place in the order above."""
    missing = []
    for name in modules():
        try:
            rank(name)
        except KeyError as exc:
            missing.append(f"{name}: add {exc} to LAYERS or PARTIES in tests/test_layering.py")
    assert not missing, "\n".join(missing)


def test_no_import_runs_upward() -> None:
    bad = upward_imports(graph())
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_import_cycle_between_modules() -> None:
    edges = graph()
    found = cycles(edges)
    detail = ["  " + " <-> ".join(c) + ": " + "; ".join(
        f"{a} -> {b} (line {line})" for a in c for b, line in edges[a] if b in c) for c in found]
    assert not found, "import cycles:\n" + "\n".join(detail)


@pytest.mark.parametrize("importer, imported, upward", [
    ("flaimsim.parties.mpc.wire", "flaimsim.parties.distaim.plan", True),
    ("flaimsim.parties.distaim.engines", "flaimsim.parties.mpc.launcher", False),
    ("flaimsim.parties.distaim.engines", "flaimsim.parties.fl.clients", True),
    ("flaimsim.parties.mpc.server", "flaimsim.parties.secagg.wire", True),
    ("flaimsim.mechanisms.dp", "flaimsim.protocols.config", True),
    ("flaimsim.bench.cli", "flaimsim.mechanisms.data", False),
    ("flaimsim", "flaimsim.bench.api", False),
    ("flaimsim", "flaimsim.bench.sweep", True),
])
def test_the_rule_itself(importer: str, imported: str, upward: bool) -> None:
    """The checker flags what the docstring forbids (and only that)."""
    assert bool(upward_imports({importer: [(imported, 1)]})) == upward


def test_the_cycle_finder_itself() -> None:
    edges = {"a": [("b", 1)], "b": [("c", 2)], "c": [("a", 3)], "d": [("a", 4)]}
    assert cycles(edges) == [["a", "b", "c"]]
