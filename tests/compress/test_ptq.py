"""Post-training INT8 over ONNX Runtime (edgeseg/compress/ptq.py) on graphs that need care."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from edgeseg.compress.ptq import QuantSettings, calibrate, excluded_nodes, quantize, self_comparison_nodes
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


def test_segnet_mask_path_stays_float_so_unpooling_survives_float_convs(tmp_path: Path) -> None:
    src = _segnet_onnx(tmp_path / "model.onnx")
    model = onnx.load(src)
    mask = self_comparison_nodes(model)
    ops = {n.name: n.op_type for n in model.graph.node}
    equals = sum(op == "Equal" for op in ops.values())
    kinds = sorted(ops[n] for n in mask)
    assert equals == 2 and kinds.count("MaxPool") == 2 and kinds.count("Resize") == 2
    assert not {"Conv", "ConvTranspose"} & set(kinds)  # the convs after the pools stay INT8
    assert set(mask) <= set(excluded_nodes(model, QuantSettings("onnxruntime-cpu")))
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((1, 1, 32, 32)).astype(np.float32) for _ in range(4)]
    # every conv in float (what mixed precision may choose): the unpooling must still match FP32
    settings = QuantSettings("onnxruntime-cpu", exclude_op_types=["Conv"])
    quantize(src, tmp_path / "int8.onnx", calibrate(src, batches), settings)
    import onnxruntime as ort

    x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    got = ort.InferenceSession(str(tmp_path / "int8.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert (got.argmax(1) == want.argmax(1)).mean() > 0.97
    # full INT8: the mask path reads the pools' float outputs, not a requantized copy made for the next conv
    info = quantize(src, tmp_path / "full.onnx", calibrate(src, batches), QuantSettings("onnxruntime-cpu"))
    full = onnx.load(tmp_path / "full.onnx")
    producers = {o: n.op_type for n in full.graph.node for o in n.output}
    resizes = [n for n in full.graph.node if n.op_type == "Resize" and n.name in mask]
    assert resizes and all(producers[n.input[0]] == "MaxPool" for n in resizes)
    assert info["quantized_nodes"] == sum(ops[n] == "Conv" for n in ops)
