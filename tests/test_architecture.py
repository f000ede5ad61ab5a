"""Package-wide architecture checks: no import cycles, and no config option that the code never reads."""

from __future__ import annotations

import ast
import dataclasses
import typing
import sys
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "dinomed"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Every dinomed module ``path`` imports: at module level, inside functions (they run at some point) and for
    type checking (a dependency all the same). Only the package's facade, ``dinomed/__init__.py``, may name the
    whole API for type checkers without depending on it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    facade = name == PACKAGE.name
    skipped = {id(n) for block in ast.walk(tree) if facade and isinstance(block, ast.If) and _is_type_checking(block)
               for stmt in block.body for n in ast.walk(stmt)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def layer_of(module: str) -> str:
    """The layer a module belongs to: its folder (``dinomed.eval``), or itself for a top-level module and for a
    recipe section (``dinomed.ssl.config``: sections sit below the recipe that composes them)."""
    parts = module.split(".")
    if (PACKAGE.parent.joinpath(*parts)).is_dir() or len(parts) == 2 or parts[-1] == "config":
        return module
    return ".".join(parts[:-1])


def layer_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    layers: dict[str, set[str]] = {}
    for module, deps in graph.items():
        layers.setdefault(layer_of(module), set()).update(layer_of(d) for d in deps)
    return {layer: deps - {layer} for layer, deps in layers.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle() -> None:
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles (modules that import each other, directly or through others): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_the_layers_have_no_import_cycle() -> None:
    """A folder that imports another folder must not be imported back by it (eval <-> report was one)."""
    cycles = _cycles(layer_graph(import_graph()))
    assert not cycles, "layers (folders) importing each other: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Options read only through generic code, each with the reason (a test fails for any other unread option).
READ_GENERICALLY: dict[str, str] = {}


def _sections() -> dict[str, type]:
    """Every config dataclass reachable from the recipe, by dotted path (``model``, ``data.phantom`` ...)."""
    from dinomed.recipe import Recipe

    found: dict[str, type] = {}

    def walk(cls: type, path: str) -> None:
        found[path] = cls
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            tp = hints[field.name]
            inner = next((a for a in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(a)), None)
            if inner is not None:
                walk(inner, f"{path}.{field.name}" if path else field.name)

    walk(Recipe, "")
    return found


def _attribute_reads() -> dict[str, set[Path]]:
    """``obj.name`` reads (and ``getattr(obj, "name")``) in the package, outside the config modules that define
    the options; attributes of imported modules (``nn.init``) do not count."""
    reads: dict[str, set[Path]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "config.py" or path.name == "recipe.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree)
                   if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and not (isinstance(node.value, ast.Name) and node.value.id in modules):
                reads.setdefault(node.attr, set()).add(path)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)):
                reads.setdefault(str(node.args[1].value), set()).add(path)
    return reads


def test_every_config_option_is_read_by_the_code() -> None:
    """An option the code never reads is accepted and silently ignored (``model.init`` once was)."""
    reads = _attribute_reads()
    unread = []
    for path, cls in _sections().items():
        for field in dataclasses.fields(cls):
            if dataclasses.is_dataclass(typing.get_type_hints(cls)[field.name]):
                continue
            key = f"{path}.{field.name}" if path else f"Recipe.{field.name}"
            if field.name not in reads and key not in READ_GENERICALLY:
                unread.append(key)
    assert not unread, f"options that no code reads (accepted and ignored): {unread}"
