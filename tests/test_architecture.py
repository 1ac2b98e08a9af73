"""The package's import graph: data flows one way, no circles, every module placed in the layer map."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mrsynth"

#: Lower layers never import higher ones (a module may import its own layer, without circles).
LAYERS = [
    {"__init__", "errors", "logs", "atomic", "nifti", "labels", "runtime", "config", "normalization", "report", "distributed",
     "augment"},
    {"subjects", "figures", "networks", "modelfile", "masks", "segmenter"},
    {"cache", "fixtures", "simulate", "derivatives"},
    {"patches", "segmenter_training"},
    {"metrics", "runs", "predict"},
    {"evaluate", "baselines", "train", "viewer"},
    {"reproduce", "demo", "crossval"},
    {"cli", "__main__"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    if not module.startswith("mrsynth"):
        return []
    found = []
    for alias in node.names:  # `from . import labels` imports the module mrsynth.labels
        candidate = f"{module}.{alias.name}"
        path = PACKAGE.parent.joinpath(*candidate.split("."))
        found.append(candidate if path.with_suffix(".py").exists() or path.is_dir() else module)
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):  # function-level imports count too
            if isinstance(node, ast.ImportFrom):
                edges.update(_resolve(name, path.name == "__init__.py", node))
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("mrsynth"))
        graph[name] = {e for e in edges if e != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
            if nxt not in state:
                found = visit(nxt, stack + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for rank, members in enumerate(LAYERS):
        if top in members:
            return rank
    raise AssertionError(f"module {module} is not in the layer map of tests/test_architecture.py: place it")


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    assert len(graph) > 20
    assert _cycle(graph) is None, f"import circle: {' -> '.join(_cycle(graph))}"


def test_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_lower_layers_never_import_higher_ones():
    wrong = [f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
             for a, edges in import_graph().items() for b in edges if _layer(b) > _layer(a)]
    assert not wrong, wrong


def test_loading_a_model_file_imports_no_training_code():
    graph = import_graph()
    reachable, todo = set(), ["mrsynth.modelfile"]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in reachable:
                reachable.add(nxt)
                todo.append(nxt)
    assert not reachable & {"mrsynth.train", "mrsynth.runs", "mrsynth.baselines", "mrsynth.patches"}, reachable
