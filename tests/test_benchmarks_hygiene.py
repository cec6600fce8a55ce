"""benchmarks/ call the library and share one results writer: checked on the source (ast), then imported.

No script edits sys.path, unpickles a checkpoint past the safe loader, imports a private edgeseg name,
writes ONNX or opens an ONNX Runtime session itself (the library's export, quantize and runtime do),
or formats its own results tail (benchmarks.record does); every function stays within 60 lines; the
docs start benchmarks as ``python -m benchmarks.NAME``.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
MODULES = sorted(p for p in BENCH.glob("*.py"))
SHARED = {"__init__", "record", "timing", "optimize_study"}  # the package and its helpers; the rest are scripts
# How a script reaches the one writer: directly, or through a shared study runner that writes with it.
WRITERS = {("benchmarks.record", "write_results"), ("benchmarks.optimize_study", "main")}
MAX_FUNCTION_LINES = 60
# Files a script writes that are not results: OUT/summary.json is the next step's input (compress_bench --runs).
OWN_WRITES = {"compress_train_gpu.py": {"atomic_write_json"}}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` of an attribute chain ('' when it does not start at a name)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def _problems(path: Path) -> list[str]:
    siblings = {p.stem for p in MODULES}
    found = []
    for node in ast.walk(_tree(path)):
        line = f"{path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and _dotted(node) == "sys.path":
            found.append(f"{line}: edits sys.path")
        if isinstance(node, ast.keyword) and node.arg == "weights_only" and not (
                isinstance(node.value, ast.Constant) and node.value.value is True):
            found.append(f"{line}: weights_only other than True (use edgeseg.artifacts.checkpoint.load_checkpoint)")
        if isinstance(node, ast.Attribute) and (node.attr == "InferenceSession" or _dotted(node).endswith("onnx.export")):
            found.append(f"{line}: {_dotted(node) or node.attr} outside the library")
        if isinstance(node, ast.ImportFrom):
            module, names = node.module or "", [a.name for a in node.names]
            if module.split(".")[0] == "edgeseg" and any(part.startswith("_") for part in module.split(".") + names):
                found.append(f"{line}: private edgeseg import from {module}: {names}")
            if module in siblings or node.level:
                found.append(f"{line}: imports {module or '.'} outside the benchmarks package (use benchmarks.NAME)")
            if "InferenceSession" in names:
                found.append(f"{line}: imports InferenceSession")
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "edgeseg" and any(p.startswith("_") for p in alias.name.split(".")):
                    found.append(f"{line}: private edgeseg import {alias.name}")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            if length > MAX_FUNCTION_LINES:
                found.append(f"{line}: {node.name} is {length} lines (at most {MAX_FUNCTION_LINES})")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_benchmark_source_calls_the_library(path: Path) -> None:
    assert _problems(path) == []


@pytest.mark.parametrize("path", [p for p in MODULES if p.stem not in SHARED], ids=lambda p: p.name)
def test_every_script_writes_through_the_shared_writer(path: Path) -> None:
    tree = _tree(path)
    imported = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert imported & WRITERS, f"{path.name} does not use benchmarks.record"
    calls = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call)]
    bare = {f.id for f in calls if isinstance(f, ast.Name)}
    methods = {f.attr for f in calls if isinstance(f, ast.Attribute)}
    writes = (bare & {"open", "atomic_write_text", "atomic_write_json"}) | (
        methods & {"atomic_write_text", "atomic_write_json", "write_text", "write_bytes", "dump"})
    assert writes <= OWN_WRITES.get(path.name, set()), f"{path.name} writes files itself: {sorted(writes)}"


def test_the_checker_sees_each_forbidden_pattern(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport torch\nimport onnxruntime as ort\nsys.path.insert(0, '.')\n"
                   "torch.load('m.pt', weights_only=False)\nfrom edgeseg.export import _plan\n"
                   "from export_int8 import side_by_side\nort.InferenceSession('m.onnx')\n"
                   "torch.onnx.export(None, (), 'm.onnx')\n"
                   "def long():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    kinds = " ".join(_problems(bad))
    for what in ("sys.path", "weights_only", "private edgeseg", "export_int8", "InferenceSession", "onnx.export",
                 "long is"):
        assert what in kinds, what


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_every_benchmark_module_imports(path: Path) -> None:
    module = importlib.import_module("benchmarks" if path.stem == "__init__" else f"benchmarks.{path.stem}")
    if path.stem not in SHARED:
        assert callable(module.main) and module.__doc__ and "python -m benchmarks." in module.__doc__


def test_docs_start_benchmarks_as_modules() -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    stale = [f"{d.name}: {m.group(0)}" for d in docs for m in re.finditer(r"benchmarks/\w+\.py", d.read_text())]
    assert stale == []
