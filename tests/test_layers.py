"""Layers only point down: the import graph of edgeseg (read with ast, imports inside functions included)
has no cycle between modules or between packages, follows the documented layer order, and the device side
stays torch-free."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgeseg"
# The layer order of docs/design.md ("Layers"), bottom first: a unit (a top-level module or package of
# edgeseg) may import only itself and the units before it. "edgeseg" is the root package's lazy public API.
LAYERS = ("errors", "catalog", "progress", "quiet", "data", "metrics", "tasks", "models", "artifacts", "runtime",
          "recipe", "foreign", "evaluate", "predict", "bench", "train", "compress", "export", "report", "optimize", "pipeline",
          "edgeseg", "cli", "__main__")
# Modules that must import without torch (docs/design.md, "Lazy top-level package").
TORCH_FREE = ("edgeseg", "edgeseg.errors", "edgeseg.catalog", "edgeseg.artifacts", "edgeseg.artifacts.metadata",
              "edgeseg.runtime", "edgeseg.runtime.base", "edgeseg.runtime.ort_rt", "edgeseg.runtime.trt_rt",
              "edgeseg.runtime.openvino_rt", "edgeseg.data", "edgeseg.data.base", "edgeseg.data.preprocess",
              "edgeseg.data.folder", "edgeseg.metrics", "edgeseg.metrics.semantic", "edgeseg.evaluate",
              "edgeseg.bench.core", "edgeseg.bench.sweep", "edgeseg.bench.runner", "edgeseg.bench.accuracy", "edgeseg.cli",
              "edgeseg.tasks", "edgeseg.tasks.base", "edgeseg.tasks.semantic", "edgeseg.tasks.instance",
              "edgeseg.tasks.instance_postprocess", "edgeseg.data.instance_folder", "edgeseg.metrics.instance")


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``edgeseg/bench/core.py`` -> ``edgeseg.bench.core``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never executed: annotations only)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def imported_modules(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute name) of every import in ``source``, function-level ones included.

    ``from a import b`` yields ``a.b`` (a module or a name in ``a``: :func:`import_graph` resolves it to
    the longest known module) and ``a`` itself only when some imported name is not a submodule.
    """
    package = module if is_package else module.rsplit(".", 1)[0]
    tree = ast.parse(source)
    skip = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {imported edgeseg module: first line}, every name resolved to the longest known module."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}

    def resolve(name: str) -> str:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, dict[str, int]] = {}
    for mod, path in paths.items():
        edges: dict[str, int] = {}
        for line, name in imported_modules(path.read_text(), mod, is_package=path.name == "__init__.py"):
            target = resolve(name) if name.split(".")[0] == root.name else ""
            if target and target != mod:
                edges.setdefault(target, line)
        graph[mod] = edges
    return graph


def unit(module: str) -> str:
    """The layer unit of a module: its top-level module or package (``edgeseg`` for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
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
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def unit_graph(graph: dict[str, dict[str, int]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for mod, edges in graph.items():
        out[unit(mod)] |= {unit(t) for t in edges if unit(t) != unit(mod)}
    return out


def against_the_order(graph: dict[str, dict[str, int]]) -> list[str]:
    """'module:line -> module' for every import of a unit above the importer's (or of an unlisted unit)."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for mod, edges in graph.items():
        for target, line in edges.items():
            a, b = unit(mod), unit(target)
            if a != b and rank.get(b, len(rank)) > rank.get(a, -1):
                bad.append(f"{mod}:{line} -> {target}")
    return sorted(bad)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "edgeseg"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checker_sees_function_level_cycles_and_upward_imports(tmp_path):
    root = _tree(tmp_path, {
        "__init__.py": "",
        "recipe.py": "def f():\n    from edgeseg.export.formats import X\n",
        "export/__init__.py": "",
        "export/formats.py": "from edgeseg import recipe\nfrom ..recipe import Recipe\n",
        "data/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edgeseg.train import T\n",
        "train/__init__.py": "from edgeseg.data import x\n",
    })
    graph = import_graph(root)
    assert graph["edgeseg.recipe"] == {"edgeseg.export.formats": 2}
    assert graph["edgeseg.export.formats"] == {"edgeseg.recipe": 1}
    assert cycles({m: set(e) for m, e in graph.items()}) == [["edgeseg.export.formats", "edgeseg.recipe"]]
    assert cycles(unit_graph(graph)) == [["export", "recipe"]]
    assert against_the_order(graph) == ["edgeseg.recipe:2 -> edgeseg.export.formats"]
    assert graph["edgeseg.data"] == {}  # type-only imports never run


def test_no_cycle_between_modules():
    graph = import_graph()
    found = cycles({m: set(e) for m, e in graph.items()})
    assert not found, "import cycles between modules:\n" + "\n".join(
        " <-> ".join(c) + "\n    " + "\n    ".join(f"{m}:{graph[m][t]} -> {t}" for m in c for t in graph[m] if t in c)
        for c in found)


def test_no_cycle_between_packages():
    found = cycles(unit_graph(import_graph()))
    assert not found, f"import cycles between packages: {found}"


def test_every_import_follows_the_layer_order():
    graph = import_graph()
    assert {unit(m) for m in graph} <= set(LAYERS), "a new top-level unit needs a place in LAYERS and docs/design.md"
    bad = against_the_order(graph)
    assert not bad, "imports against the layer order (docs/design.md, Layers):\n" + "\n".join(bad)


def test_the_documented_order_is_this_one():
    text = (PACKAGE.parent / "docs" / "design.md").read_text()
    assert " < ".join(f"`{u}`" for u in LAYERS) in text


def test_device_side_imports_no_torch(tmp_path):
    """Import the torch-free modules and run the evaluation inner loop with torch hidden."""
    code = f"""
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is hidden for this test")
sys.meta_path.insert(0, _NoTorch())
import importlib
import numpy as np
for name in {TORCH_FREE!r}:
    importlib.import_module(name)
from edgeseg.artifacts import ModelMeta
from edgeseg.evaluate import evaluate_arrays
from edgeseg.runtime.base import TensorSpec

class Constant:
    inputs = [TensorSpec("input", ("batch", 3, "height", "width"), "float32")]
    meta = ModelMeta(model_name="c", family="c", task="semantic", num_classes=2, in_channels=3, classes=["a", "b"],
                     mean=[0.5] * 3, std=[0.25] * 3, input_size=(20, 30), stride=8)
    def __call__(self, x):
        logits = np.zeros((x.shape[0], 2, *x.shape[2:]), np.float32)
        logits[:, 1] = 1.0
        return {{"logits": logits}}
    def synchronize(self):
        pass

mask = np.ones((20, 30), np.int64)
mask[0, 0] = 0
m = evaluate_arrays(Constant(), [(np.zeros((3, 20, 30), np.float32), mask)], num_classes=2, ignore_index=255, stride=8)
assert m["num_images"] == 1 and abs(m["iou"]["class1"] - 599 / 600) < 1e-9, m
assert "torch" not in sys.modules
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent), "EDGESEG_QUIET": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
