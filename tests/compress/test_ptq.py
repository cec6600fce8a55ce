"""Post-training INT8 over ONNX Runtime (edgeseg/compress/ptq.py) on graphs that need care."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from edgeseg.compress.ptq import (QuantSettings, calibrate, comparison_only_resizes, excluded_nodes, inexact_comparisons,
                                  quantize, self_comparison_nodes)
from edgeseg.export.torch2onnx import export_onnx
from edgeseg.models import create_model
from edgeseg.recipe import recipe_from_dict
from edgeseg.train.meta import meta_for
from tests.conftest import tiny_recipe_dict


def _segnet_onnx(path: Path) -> Path:
    torch.manual_seed(0)
    net = create_model("segnet_test", num_classes=3, in_channels=1, unpool="compare").eval()
    export_onnx(net, meta_for(net, recipe_from_dict(tiny_recipe_dict("segnet_test", 3, 1))), path, hw=(32, 32))
    return path


def _agreement(src: Path, int8: Path, x: np.ndarray) -> float:
    import onnxruntime as ort

    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    got = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    return float((got.argmax(1) == want.argmax(1)).mean())


def test_segnet_mask_comparisons_stay_exact_in_int8(tmp_path: Path) -> None:
    """Full INT8: pools and resizes keep their input's grid, so each comparison of the unpooling mask
    sees one grid on both sides and nothing falls back to float; mixed precision with float convs puts
    float on one side and int8 on the other, which is caught and repaired by keeping the paths float."""
    src = _segnet_onnx(tmp_path / "model.onnx")
    model = onnx.load(src)
    ops = {n.name: n.op_type for n in model.graph.node}
    assert sum(op == "Equal" for op in ops.values()) == 4  # max location + first max, per level
    assert inexact_comparisons(model) == []  # float: trivially exact
    comparison_resizes = comparison_only_resizes(model)
    # 4 resizes feed comparisons; the deepest level's also feeds the first unpooling (the decoder starts
    # from that pooled tensor), so it is quantized like any other
    assert len(comparison_resizes) == 3 and set(comparison_resizes) <= set(excluded_nodes(
        model, QuantSettings("onnxruntime-cpu")))
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((1, 1, 32, 32)).astype(np.float32) for _ in range(4)]
    ranges = calibrate(src, batches)
    x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)

    info = quantize(src, tmp_path / "full.onnx", ranges, QuantSettings("onnxruntime-cpu"))
    assert info["comparisons"] == {"equal_nodes": 4}  # no fallback needed
    assert info["quantized_nodes"] == sum(op == "Conv" for op in ops.values())
    assert inexact_comparisons(onnx.load(tmp_path / "full.onnx")) == []
    assert _agreement(src, tmp_path / "full.onnx", x) > 0.9

    # every conv in float (what mixed precision may choose): the unpooling must still match FP32
    settings = QuantSettings("onnxruntime-cpu", exclude_op_types=["Conv"])
    info = quantize(src, tmp_path / "int8.onnx", ranges, settings)
    assert info["comparisons"]["inexact_on_shared_grid"]  # detected ...
    assert inexact_comparisons(onnx.load(tmp_path / "int8.onnx")) == []  # ... and repaired
    assert set(self_comparison_nodes(model)) <= set(info["excluded"])
    assert _agreement(src, tmp_path / "int8.onnx", x) > 0.97


def test_inexact_comparison_is_found_when_the_two_sides_use_different_grids() -> None:
    from onnx import TensorProto, helper

    def qdq(name: str, src: str, scale: str) -> list:
        return [helper.make_node("QuantizeLinear", [src, scale, "zp"], [f"{name}_q"]),
                helper.make_node("DequantizeLinear", [f"{name}_q", scale, "zp"], [name])]

    def graph(scale_b: str) -> onnx.ModelProto:
        nodes = [*qdq("xa", "x", "s1"),
                 helper.make_node("MaxPool", ["xa"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                 *qdq("pb", "p", scale_b),
                 helper.make_node("Resize", ["pb", "", "scales"], ["up"], mode="nearest"),
                 helper.make_node("Equal", ["xa", "up"], ["eq"])]
        inits = [helper.make_tensor("s1", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("s2", TensorProto.FLOAT, [], [0.2]),
                 helper.make_tensor("zp", TensorProto.UINT8, [], [0]),
                 helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])]
        return helper.make_model(helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
            [helper.make_tensor_value_info("eq", TensorProto.BOOL, [1, 1, 4, 4])], inits))

    assert inexact_comparisons(graph("s1")) == []
    assert inexact_comparisons(graph("s2")) == [graph("s2").graph.node[-1].name]


def test_public_quantize_verb_calibrates_and_writes_int8(tmp_path: Path) -> None:
    """``edgeseg.quantize`` (compress's verb export builds on): FP32 ONNX + calibration arrays -> QDQ INT8
    that agrees with the FP32 argmax."""
    import edgeseg

    src = _segnet_onnx(tmp_path / "model.onnx")
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((1, 1, 32, 32)).astype(np.float32) for _ in range(4)]
    figures = edgeseg.quantize(src, tmp_path / "model.int8.onnx", batches)
    assert figures["calibration_method"] == "minmax" and figures["quantized_nodes"] > 0, figures
    assert _agreement(src, tmp_path / "model.int8.onnx", batches[0]) > 0.9
