"""Layers only point down: the bottom packages never import the stages, and the device side stays torch-free."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgeseg"
# Bottom layer: what a runtime on a device, the data and the models need. It may import itself,
# errors.py, progress.py and recipe.py, never a stage above it.
BOTTOM = ("artifacts", "runtime", "data", "metrics", "models", "tasks")
UPPER = ("train", "export", "bench", "report", "compress", "pipeline", "cli")
# Modules that must import without torch (docs/design.md, "Lazy top-level package").
TORCH_FREE = ("edgeseg", "edgeseg.errors", "edgeseg.artifacts", "edgeseg.artifacts.metadata", "edgeseg.runtime",
              "edgeseg.runtime.base", "edgeseg.runtime.ort_rt", "edgeseg.runtime.trt_rt",
              "edgeseg.runtime.openvino_rt", "edgeseg.data", "edgeseg.data.base", "edgeseg.data.preprocess",
              "edgeseg.data.folder", "edgeseg.metrics", "edgeseg.metrics.semantic", "edgeseg.evaluate",
              "edgeseg.bench.core", "edgeseg.bench.sweep", "edgeseg.bench.runner", "edgeseg.bench.accuracy", "edgeseg.cli",
              "edgeseg.tasks", "edgeseg.tasks.base", "edgeseg.tasks.semantic", "edgeseg.tasks.instance",
              "edgeseg.tasks.instance_postprocess", "edgeseg.data.instance_folder", "edgeseg.metrics.instance")


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, function-level ones included."""
    package = module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def upward_imports(source: str, module: str) -> list[str]:
    """Imports of an upper-layer edgeseg module in ``source`` (as 'line: name')."""
    bad = []
    for line, name in imported_modules(source, module):
        parts = name.split(".")
        if parts[0] == "edgeseg" and len(parts) > 1 and parts[1] in UPPER:
            bad.append(f"{line}: {name}")
    return sorted(set(bad))


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts if parts[-1] != "__init__" else parts[:-1] + ["__init__"])


def test_checker_finds_an_upward_import():
    src = "import numpy\ndef f():\n    from edgeseg.train.loop import train\n    from ..export import formats\n"
    assert upward_imports(src, "edgeseg.runtime.x") == ["3: edgeseg.train.loop", "3: edgeseg.train.loop.train",
                                                       "4: edgeseg.export", "4: edgeseg.export.formats"]
    assert upward_imports("from edgeseg import bench\n", "edgeseg.data.x") == ["1: edgeseg.bench"]
    assert upward_imports("from edgeseg.runtime.base import Backend\n", "edgeseg.data.x") == []


def test_bottom_layer_never_imports_a_stage():
    offenders = []
    for layer in BOTTOM:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            for hit in upward_imports(path.read_text(), _module_name(path)):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{hit}")
    assert not offenders, "bottom-layer modules import upper layers:\n" + "\n".join(offenders)


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


def test_export_converters_import_no_cycle():
    """Each step has one home: no converter imports one that imports it back (save_onnx, the precision fan-out)."""
    modules = {_module_name(p): p.read_text() for p in (PACKAGE / "export").glob("*.py") if p.name != "__init__.py"}
    deps = {m: {n for _, n in imported_modules(src, m) if n in modules and n != m} for m, src in modules.items()}
    cycles = sorted(f"{a} <-> {b}" for a in deps for b in deps[a] if a < b and a in deps[b])
    type_only = {"edgeseg.export.context <-> edgeseg.export.formats"}  # ExportContext in a TYPE_CHECKING block
    assert set(cycles) <= type_only, cycles
