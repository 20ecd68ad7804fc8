"""xmpp_tool's imports run one way, read from the source (ast: nothing is imported).

Bottom to top: errors and the request model; config, passwords, output and
slixmpp's one module; the session and the archive walk; the actions; the command
line.  A module imports only from its own layer or below, and without a cycle; no
action reaches the command line; slixmpp is imported in ``xmpp_tool/slix.py``
only; an import inside a function is there for start-up speed, and its module
says so at its top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # the directory holding the package

#: every module of the package, by layer (bottom first); a new module needs a place here
LAYERS: list[set[str]] = [
    {"xmpp_tool", "xmpp_tool.errors", "xmpp_tool.request"},
    {"xmpp_tool.config", "xmpp_tool.password", "xmpp_tool.render", "xmpp_tool.outgoing",
     "xmpp_tool.slix"},
    {"xmpp_tool.session", "xmpp_tool.unread_walk", "xmpp_tool.statefile",
     "xmpp_tool.omemo_state"},
    {"xmpp_tool.send", "xmpp_tool.muc", "xmpp_tool.upload", "xmpp_tool.unread",
     "xmpp_tool.unread_rooms", "xmpp_tool.omemo", "xmpp_tool.trust"},
    {"xmpp_tool.cli", "xmpp_tool.cli.arguments", "xmpp_tool.cli.fastargs",
     "xmpp_tool.cli.typer_app", "xmpp_tool.cli.completion", "xmpp_tool.cli.logs",
     "xmpp_tool.cli.manpage", "xmpp_tool.__main__"},
]  # fmt: skip
LAYER = {module: n for n, layer in enumerate(LAYERS) for module in layer}
COMMAND_LINE = "xmpp_tool.cli"
SLIXMPP_MODULE = "xmpp_tool.slix"
#: what a module with imports inside functions says at its top
SPEED_NOTE = "for start-up speed"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(root: Path, package: str = "xmpp_tool") -> dict[str, ast.Module]:
    return {module_name(root, p): ast.parse(p.read_text(encoding="utf-8"), str(p))
            for p in sorted((root / package).rglob("*.py"))}  # fmt: skip


def imports(root: Path, module: str, tree: ast.AST,
            known: set[str]) -> Iterator[tuple[str, ast.Import | ast.ImportFrom]]:
    """Every module named by an import statement anywhere in ``tree`` (in functions
    and under ``if TYPE_CHECKING:`` too), relative imports resolved; ``from X
    import Y`` names module ``X.Y`` when there is one, else ``X``."""
    is_package = (root / module.replace(".", "/") / "__init__.py").exists()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in known else base), node


def graph(root: Path, trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    """module -> the package's modules it imports."""
    known = set(trees)
    return {module: {target for target, _ in imports(root, module, tree, known)
                     if target in known and target != module}
            for module, tree in trees.items()}  # fmt: skip


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The modules of each import cycle (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def local_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements inside functions."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
    return found


def in_command_line(module: str) -> bool:
    return module in (COMMAND_LINE, "xmpp_tool.__main__") or module.startswith(COMMAND_LINE + ".")


TREES = sources(ROOT)
EDGES = graph(ROOT, TREES)


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    # the checks below are only as good as the graph: a made-up package whose cycle
    # runs through a function-local relative import and one under TYPE_CHECKING
    pkg = tmp_path / "xmpp_tool"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("import xmpp_tool.a\n")
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import x\n")
    edges = graph(tmp_path, sources(tmp_path))
    assert edges == {"xmpp_tool": set(), "xmpp_tool.a": {"xmpp_tool.b"},
                     "xmpp_tool.b": {"xmpp_tool.sub.c"}, "xmpp_tool.sub": {"xmpp_tool.a"},
                     "xmpp_tool.sub.c": {"xmpp_tool.a"}}  # fmt: skip
    assert cycles(edges) == [["xmpp_tool.a", "xmpp_tool.b", "xmpp_tool.sub.c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_every_module_has_its_layer() -> None:
    assert set(TREES) == set(LAYER), "place each module of xmpp_tool/ in LAYERS"


def test_no_import_cycle() -> None:
    assert cycles(EDGES) == []


@pytest.mark.parametrize("module", sorted(TREES))
def test_imports_go_down_or_across(module: str) -> None:
    upward = sorted(t for t in EDGES[module] if LAYER[t] > LAYER[module])
    assert not upward, f"{module} (layer {LAYER[module]}) imports a higher layer: {upward}"


def test_the_bottom_imports_nothing_of_the_package() -> None:
    assert {module: EDGES[module] for module in LAYERS[0]} == {m: set() for m in LAYERS[0]}


@pytest.mark.parametrize("module", sorted(m for m in TREES if not in_command_line(m)))
def test_no_action_imports_the_command_line(module: str) -> None:
    reached = sorted(t for t in EDGES[module] if in_command_line(t))
    assert not reached, f"{module} imports the command-line layer: {reached}"


@pytest.mark.parametrize("module", sorted(TREES))
def test_slixmpp_is_imported_in_its_one_module_only(module: str) -> None:
    tree, known = TREES[module], set(TREES)
    named = sorted({target for target, _ in imports(ROOT, module, tree, known)})
    slixmpp = [t for t in named if t == "slixmpp" or t.startswith("slixmpp.")]
    if module == SLIXMPP_MODULE:
        assert slixmpp, "the slixmpp module no longer imports slixmpp"
        return
    assert not slixmpp, f"{module} imports {slixmpp}: use xmpp_tool.slix (slix.JID, ...)"
    # ``from .slix import JID`` would bind the name, and import slixmpp, at import time
    early = [alias.name for target, node in imports(ROOT, module, tree, known)
             if target == SLIXMPP_MODULE and isinstance(node, ast.ImportFrom)
             and node.module is not None and node.module.endswith("slix")
             for alias in node.names]  # fmt: skip
    assert not early, f"{module}: from .slix import {early}; use slix.<name> when needed"


@pytest.mark.parametrize("module", sorted(TREES))
def test_imports_inside_functions_are_for_start_up_speed(module: str) -> None:
    tree = TREES[module]
    local = local_imports(tree)
    doc = ast.get_docstring(tree) or ""
    if local:
        lines = sorted({n.lineno for n in local})
        assert SPEED_NOTE in " ".join(doc.split()), (
            f"{module} imports inside functions (lines {lines}) without saying, at its "
            f"top, that they are {SPEED_NOTE}")


def test_the_modules_with_imports_inside_functions() -> None:
    # each of these defers something a common run does not need (see its docstring)
    assert sorted(m for m, tree in TREES.items() if local_imports(tree)) == [
        "xmpp_tool.cli", "xmpp_tool.cli.completion", "xmpp_tool.config", "xmpp_tool.omemo",
        "xmpp_tool.outgoing", "xmpp_tool.password", "xmpp_tool.send", "xmpp_tool.slix",
        "xmpp_tool.upload"]
