"""The package's shape: stage packages in pipeline order, imports one way, no circles, small modules and functions,
and a README code map that is the packages' own description."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mrsynth
from mrsynth import STAGES

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mrsynth"
README = PACKAGE.parents[1] / "README.md"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80
#: Import edges between the package's parts (``part_edges``: a top-level module, or a top-level package as one
#: part) in the flat layout before the stage packages, commit cfcfcc6: 36 parts, 181 edges (204 between modules).
PART_EDGES_BEFORE = 181


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


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in _modules():
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
                return stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt]
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


def _stage(module: str) -> int:
    """0 for the base utilities (top-level modules), else 1 + the stage's place in ``mrsynth.STAGES``."""
    parts = module.split(".")
    if len(parts) == 1 or (PACKAGE / f"{parts[1]}.py").exists():
        return 0
    return 1 + STAGES.index(parts[1])


def test_every_folder_of_code_is_a_stage_and_there_are_at_least_six():
    folders = {p.parent.name for p in _modules() if p.parent != PACKAGE}
    assert folders <= set(STAGES) and len(STAGES) >= 6, folders - set(STAGES)
    assert all((PACKAGE / stage / "__init__.py").exists() for stage in STAGES)


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    assert len(graph) > 20
    assert _cycle(graph) is None, f"import circle: {' -> '.join(_cycle(graph))}"


def test_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_a_stage_imports_only_the_base_and_earlier_stages():
    wrong = [
        f"{a} imports {b}"
        for a, edges in import_graph().items()
        for b in edges
        if _stage(b) > _stage(a) and a not in ("mrsynth", "mrsynth.__main__")
    ]
    assert not wrong, wrong
    base_on_stages = [
        f"{a} imports {b}"
        for a, edges in import_graph().items()
        for b in edges
        if _stage(a) == 0 and _stage(b) > 0 and a not in ("mrsynth", "mrsynth.__main__")
    ]
    assert not base_on_stages, base_on_stages


def part_of(module: str) -> str:
    """The part of the package a module belongs to: itself at the top level, else its top-level package."""
    return ".".join(module.split(".")[:2])


def part_edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Which parts import which: the map a reader sees (a stage package is one room, whatever its modules)."""
    return {(part_of(a), part_of(b)) for a, targets in graph.items() for b in targets if part_of(a) != part_of(b)}


def test_at_most_two_thirds_of_the_import_edges_of_the_flat_layout():
    edges = part_edges(import_graph())
    assert len(edges) <= PART_EDGES_BEFORE * 2 / 3, len(edges)


def test_no_module_over_400_lines_and_no_function_over_80():
    long_modules, long_functions = [], []
    for path in _modules():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"{path.relative_to(PACKAGE)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {length} lines")
    assert not long_modules and not long_functions, long_modules + long_functions


def test_the_size_check_sees_a_long_function():
    source = "def f():\n" + "    x = 1\n" * 90
    node = ast.parse(source).body[0]
    assert node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES


def test_loading_a_model_file_imports_no_training_code():
    graph = import_graph()
    reachable, todo = set(), ["mrsynth.networks.modelfile"]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in reachable:
                reachable.add(nxt)
                todo.append(nxt)
    assert not {m for m in reachable if m.startswith(("mrsynth.training", "mrsynth.experiments"))}, reachable


def code_map() -> str:
    """The README's code map, made from the stage packages' docstrings (first paragraph) in pipeline order."""
    import importlib

    lines = [
        "Data flows one way, NIfTI -> subject -> cache -> patches -> network -> volume -> scores -> report; each",
        "stage package imports only the base utilities and the stages above it in this list",
        "(`tests/test_architecture.py` checks it, and that this list is the packages' own docstrings):",
        "",
        "0. base utilities, top-level modules: "
        + ", ".join(f"`{p.stem}`" for p in sorted(PACKAGE.glob("*.py")) if not p.stem.startswith("__")),
    ]
    for number, stage in enumerate(STAGES, start=1):
        summary, modules = importlib.import_module(f"mrsynth.{stage}").__doc__.strip().split("\n\n")[:2]
        lines.append(f"{number}. `{stage}/`: " + " ".join(summary.split()))
        lines.append("   " + " ".join(modules.split()).replace(":mod:`.", "`").replace(":class:`", "`"))
    return "\n".join(lines) + "\n"


def test_the_readme_code_map_is_the_packages_own_description():
    text = README.read_text()
    found = re.search(r"### Code map\n\n(.*?)(?=\n#|\Z)", text, re.S)
    assert found, "README.md has no '### Code map' section"
    assert found.group(1).strip() == code_map().strip(), (
        "README's code map differs from the packages' docstrings; regenerate it with\n"
        "python -c 'import sys; sys.path.insert(0, \"tests\"); import test_architecture as t; print(t.code_map())'"
    )


def test_documented_imports_of_the_flat_layout_still_work():
    import importlib

    from mrsynth.cache import list_prepared, prepare_all  # noqa: F401
    from mrsynth.evaluate import Reference, score  # noqa: F401
    from mrsynth.normalization import Normalization  # noqa: F401
    from mrsynth.patches import PatchDataset, PatchGrid, within_subject_split  # noqa: F401
    from mrsynth.predict import predict_files, predict_prepared  # noqa: F401
    from mrsynth.subjects import discover  # noqa: F401
    from mrsynth.train import train  # noqa: F401

    for old, new in mrsynth.MOVED.items():
        assert importlib.import_module(f"mrsynth.{old}") is importlib.import_module(f"mrsynth.{new}")
