"""mlcore's rooms import one way: a room never imports a higher one, and no modules import each other in a circle.

Read from the source (every import statement, lazy and TYPE_CHECKING ones included: a lazy import is still a
dependency, only hidden), so a new upward import fails here with the line that makes it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import mlcore

ROOT = Path(mlcore.__file__).parent
# Lowest first. Rooms in one layer do not import each other either.
LAYERS: list[set[str]] = [
    {"errors"},
    {"logs", "io"},
    {"config"},
    {"data"},
    {"preprocess"},
    {"augmentation"},
    {"teachers", "students"},
    {"inference"},
    {"evaluation"},
    {"optimization"},
    {"training"},
    {"finetune", "distill"},
    {"pretrain"},
    {"reporting"},
    {"storage"},
    {"cli"},
]
LAYER_OF = {room: index for index, rooms in enumerate(LAYERS) for room in rooms}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = ("mlcore", *path.relative_to(ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported mlcore module, line) for every import in the file; `from package import module` names the module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mlcore":
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.append((child if child in modules else node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "mlcore"]
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mlcore"


def test_every_room_has_a_layer() -> None:
    rooms = {_room(module) for module in _modules()} - {"mlcore", "__main__"}
    assert rooms <= set(LAYER_OF), f"rooms without a layer: {sorted(rooms - set(LAYER_OF))}"


def test_no_room_imports_a_higher_or_a_sibling_room() -> None:
    modules = _modules()
    upward = []
    for module, path in modules.items():
        source = _room(module)
        for imported, line in _imports(path, modules):
            target = _room(imported)
            if source in LAYER_OF and target in LAYER_OF and source != target \
                    and LAYER_OF[target] >= LAYER_OF[source]:
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} {source} imports {imported}")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        graph[module] |= {imported for imported, _ in _imports(path, modules) if imported in modules}
    cycles = [component for component in _strongly_connected(graph) if len(component) > 1]
    assert not cycles, f"modules importing each other in a circle: {cycles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in list(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components
