"""`edgeseg optimize --max-drop`: an INT8 winner ships in mixed precision (``export.max_drop``), judged on
its final file; a drop no layer choice meets ships the FP32 file and the summary says why; targets whose
INT8 is not ONNX Runtime's QDQ file refuse it in one line before anything is built."""

from __future__ import annotations

import json

import pytest

from edgeseg import catalog
from edgeseg.optimize import OptimizeError, optimize
from edgeseg.optimize.output import int8_outcome
from tests.optimize.test_optimize import tiny_optimize_recipe

F = catalog.OPTIMIZE_FILES


def int8_recipe():
    rcp = tiny_optimize_recipe()
    rcp.optimize.widths, rcp.optimize.precisions = [1.0], ["int8"]
    return rcp


def test_max_drop_ships_the_int8_winner_in_mixed_precision(tmp_path):
    doc = optimize(int8_recipe(), tmp_path, budget_ms=1e4, max_drop=100.0)
    assert doc["precision"] == "int8" and doc["max_drop"] == 100.0
    assert doc["final_artifact"].endswith("model.int8.onnx") and doc["final_timing"]["winner_final_ms"] > 0
    export = json.loads((tmp_path / F.winner / "4_export" / catalog.FILES.export_json).read_text())
    int8 = next(a for a in export["artifacts"] if a["format"] == "onnx" and a["precision"] == "int8")
    assert int8["quantization"]["mixed_precision"]["float_layers"] == doc["int8"]["float_layers"]
    assert f"mixed precision under --max-drop 100: {len(doc['int8']['float_layers'])} layers in float" in doc["summary"]


def test_a_drop_nothing_meets_ships_fp32_and_says_why():
    from edgeseg.optimize.run import _form_text

    export = {"artifacts": [
        {"format": "onnx", "precision": "fp32", "shipped": True},
        {"format": "onnx", "precision": "int8", "shipped": False, "accuracy": {"miou_drop_points": 2.5},
         "reason": "no INT8 model within --max-drop 0.5: the best choice loses 2.50 mIoU points; faster",
         "quantization": {"mixed_precision": {"float_layers": ["Conv_1", "Conv_2"]}}}]}
    outcome = int8_outcome(export, "int8")
    assert outcome == {"drop_points": 2.5, "float_layers": ["Conv_1", "Conv_2"],
                       "not_shipped": export["artifacts"][1]["reason"]}
    assert int8_outcome(export, "fp32") == {}
    text = _form_text("int8", {"int8": outcome, "max_drop": 0.5})
    assert text == ("int8 not shipped under --max-drop 0.5: no INT8 model within --max-drop 0.5: the best choice "
                    "loses 2.50 mIoU points; FP32 ships")


@pytest.mark.parametrize("backend, max_drop, says", [
    ("executorch", 1.0, "--max-drop: mixed precision is an ONNX Runtime INT8 form"),
    ("tensorrt", 1.0, "a TensorRT Q/DQ engine"),
    ("onnxruntime", -1.0, "--max-drop -1: expected the most validation points INT8 may lose, >= 0"),
])
def test_max_drop_is_refused_where_it_cannot_apply(tmp_path, backend, max_drop, says):
    with pytest.raises(OptimizeError) as err:
        optimize(int8_recipe(), tmp_path, budget_ms=1, backend=backend, max_drop=max_drop)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / F.candidates).exists()  # refused before anything was built
