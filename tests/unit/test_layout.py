"""The house's layout: no import circle between modules, and no import that runs up a layer.

Every ``import`` in ``chaos/`` counts, also those inside functions and under
``TYPE_CHECKING`` (a lazy import is still a dependency). Layers, lowest first; a module may
import its own room and any lower one:

====  ==========================================================================
rank  rooms
====  ==========================================================================
0     ``chaos`` (the root ``__init__``), ``errors``, ``plugins``, ``proc``, ``outpaths``
1     ``experiment``: the experiment file's model
2     ``rundir``: the run directory's contract
3     ``analysis``: pure pandas over a run directory
4     ``report``: HTML, JUnit, history, Prometheus outputs
5     ``traffic``: Locust in its own processes
6     ``platforms`` (the registry) and ``platforms.base`` (the port)
7     ``faults``: plans, apply, verify, revert, through the port
8     ``engine``: the run
9     ``platforms.shared``: what both platforms share
10    ``platforms.local``, ``platforms.kubernetes``: peers that never import each other
11    ``cli``: the command line
12    ``testing``: fakes and synthetic runs for tests, benchmarks and plugin authors
13    ``bench``: benchmarks and the soak; nothing imports them
====  ==========================================================================

Rooms of one rank may import each other, except :data:`PEERS`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "chaos"

RANKS: dict[str, int] = {
    "chaos": 0,
    "chaos.errors": 0,
    "chaos.plugins": 0,
    "chaos.proc": 0,
    "chaos.outpaths": 0,
    "chaos.experiment": 1,
    "chaos.rundir": 2,
    "chaos.analysis": 3,
    "chaos.report": 4,
    "chaos.traffic": 5,
    "chaos.platforms": 6,
    "chaos.platforms.base": 6,
    "chaos.faults": 7,
    "chaos.engine": 8,
    "chaos.platforms.shared": 9,
    "chaos.platforms.local": 10,
    "chaos.platforms.kubernetes": 10,
    "chaos.cli": 11,
    "chaos.testing": 12,
    "chaos.bench": 13,
}
#: Rooms of one rank that must never import each other.
PEERS = frozenset({frozenset({"chaos.platforms.local", "chaos.platforms.kubernetes"})})


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``chaos`` that ``name`` imports (anywhere in the file)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # ``from pkg import sub`` depends on the submodule, not on ``pkg/__init__``.
            subs = [f"{module}.{alias.name}" for alias in node.names]
            named = [sub for sub in subs if sub in known]
            targets = named if len(named) == len(subs) else [module, *named]
        else:
            continue
        for target in targets:
            # ``import a.b.c`` depends on the deepest module of ours it names.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def room(name: str) -> str:
    """The longest room of :data:`RANKS` that holds module ``name``."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in RANKS:
            return candidate
    raise AssertionError(f"{name} is in no room of the layout: add it to RANKS")


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for name, targets in sorted(edges.items()):
        for target in sorted(targets):
            a, b = room(name), room(target)
            if RANKS[b] > RANKS[a] or frozenset({a, b}) in PEERS:
                found.append(f"{name} -> {target} ({a} rank {RANKS[a]}, {b} rank {RANKS[b]})")
    return found


def test_every_module_is_in_a_room() -> None:
    for name in modules():
        room(name)


def test_no_module_imports_a_higher_layer_or_a_peer_room() -> None:
    assert upward_imports(graph()) == []


def test_no_import_circle_between_modules() -> None:
    assert circles(graph()) == []


def test_no_loose_modules_on_the_ground_floor() -> None:
    loose = sorted(p.name for p in ROOT.glob("*.py"))
    assert loose == ["__init__.py", "errors.py", "outpaths.py", "plugins.py", "proc.py"]


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_the_circle_finder_finds_circles(
    edges: dict[str, set[str]], expected: list[list[str]]
) -> None:
    assert circles(edges) == expected


def test_the_layer_check_sees_an_upward_and_a_peer_import() -> None:
    edges = {
        "chaos.engine.run": {"chaos.platforms.local.topology"},
        "chaos.platforms.kubernetes.api": {"chaos.platforms.local.pki"},
        "chaos.cli.app": {"chaos.engine.run"},
    }
    assert len(upward_imports(edges)) == 2
