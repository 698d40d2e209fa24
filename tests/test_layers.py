"""Imports point down the layers only (STYLE.md): kernels/crypto < protocols < orchestration < cli.

Every ``import`` statement of every module under ``src/dtxfast`` is read with :mod:`ast` (also those
inside functions and ``TYPE_CHECKING`` blocks; docstring examples are not imports), relative imports
are resolved, and each is checked against the layer of the importing module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dtxfast

ROOT = Path(dtxfast.__file__).parent

#: top-level package -> layer number (modules not listed, e.g. ``errors``, ``_backend``, are L0/L1 support)
LAYERS = {
    "_kernels": 0,
    "crypto": 1,
    "compute": 1,  # runs L1 batch operations locally or as Ray tasks; L2 parties take one as compute=
    "interop": 1,
    "protocols": 2,
    "ledger": 3,
    "storage": 3,
    "nodes": 3,
    "transport": 3,
    "vfl": 3,
    "cli": 4,
    "_benchsuite": 4,  # bench/, installed beside the CLI that runs it (`dtx bench`); absent in editable installs
}


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return 5  # ``dtxfast`` re-exports the stable surface; ``python -m dtxfast`` runs the CLI
    return LAYERS.get(parts[1], 1)


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)


def _imports(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``source``, the text of module ``module``."""
    parts = module.split(".")
    package = parts[:-1]  # for ``pkg.__init__`` this is ``pkg`` itself, as relative imports need
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "dtxfast" or (node.level and not node.module):
                out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, target))
    return out


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "_kernels" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    me = _module_name(path)
    mine = _layer(me)
    up = [f"line {ln}: {target}" for ln, target in _imports(path.read_text(), me)
          if target.startswith("dtxfast.") and _layer(target) > mine]
    assert not up, f"{me} (L{mine}) imports from a higher layer: {up}"


def test_the_checker_sees_upward_imports() -> None:
    probe = "from ..transport.channel import InMemoryNetwork\nimport dtxfast.cli\nfrom .. import vfl\n"
    found = _imports(probe, "dtxfast.protocols.probe")
    assert found == [(1, "dtxfast.transport.channel"), (2, "dtxfast.cli"), (3, "dtxfast.vfl")]
    assert all(_layer(t) > _layer("dtxfast.protocols.probe") for _, t in found)
    assert _imports("from .channel import Channel\n", "dtxfast.protocols.__init__") == [
        (1, "dtxfast.protocols.channel")]


def _graph() -> dict[str, set[str]]:
    mods = {_module_name(p).removesuffix(".__init__"): p for p in _modules()}
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        me = _module_name(path)
        deps = set()
        for _, target in _imports(path.read_text(), me):
            while target and target not in mods:  # ``from pkg import name`` -> the module ``pkg``
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                deps.add(target)  # a package's own __init__ is imported by its modules anyway
        graph[name] = deps
    return graph


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
