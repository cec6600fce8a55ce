"""The timed INT8 form of a candidate is the INT8 the export writes for the target (its settings and the
nodes the task keeps in float: the instance decode tail), so latency before training predicts the file
that ships (without the tail a yolact-lite candidate timed 0.80x the trained INT8 file the export shipped)."""

from __future__ import annotations

from collections import Counter

import pytest

from edgeseg import catalog
from edgeseg.export import export
from edgeseg.optimize import optimize
from tests.export.conftest import QUICK_LATENCY
from tests.tasks.test_instance_stages import tiny_instance_recipe

F = catalog.OPTIMIZE_FILES


def _quantized_activations(path) -> int:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)["QuantizeLinear"]


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt"])
def test_instance_int8_candidate_is_the_exports_int8(tmp_path, monkeypatch, backend):
    monkeypatch.setattr("edgeseg.export.onnx2int8.LATENCY_KW", QUICK_LATENCY)
    monkeypatch.setattr("edgeseg.export.onnx2int8.LATENCY_ROUNDS", 1)
    rcp = tiny_instance_recipe(optimize={"models": ["yolact_test"], "widths": [1.0], "prune_ratios": [0.0],
                                         "precisions": ["fp32", "int8"]},
                               export={"calibration": {"images": 4}})
    optimize(rcp, tmp_path, plan=True, backend=backend)
    cid = "yolact_test-w1-p0-s64"
    fmt = "tensorrt" if backend == "tensorrt" else "onnx"
    doc = export(tmp_path / F.arch / cid / "init.pt", tmp_path / "exported", formats=[fmt], precisions=["fp32", "int8"])
    if backend == "tensorrt":
        shipped = tmp_path / "exported" / "tensorrt" / "model.int8.qdq.onnx"
    else:
        shipped = next(a["path"] for a in doc["artifacts"] if a["format"] == "onnx" and a["precision"] == "int8")
    candidate = tmp_path / F.candidates / f"{cid}.int8.onnx"
    timed, shipped_count = _quantized_activations(candidate), _quantized_activations(shipped)
    assert timed == shipped_count > 0  # the decode tail is float in both (quantized whole, the candidate had more)
