"""NNCF fake-quantizer placement on the families' graphs (edgeseg/compress/qat.py)."""

from __future__ import annotations

import onnx
import torch

from edgeseg.compress.qat import export_qdq_onnx, ignored_ops, insert_fake_quantizers
from edgeseg.models import create_model


def test_segnet_mask_unpooling_compares_unquantized_tensors() -> None:
    """Both sides of the unpooling mask's Equal must be the same float tensor family: NNCF left to itself
    quantizes them with different quantizers and the mask (hence the unpooling) breaks."""
    torch.manual_seed(0)
    model = create_model("segnet_test", num_classes=2, in_channels=1, unpool="compare").eval()
    assert ignored_ops(model) and not ignored_ops(create_model("unet_test", num_classes=2, in_channels=1))
    calibration = [torch.randn(1, 1, 32, 32) for _ in range(4)]
    graph = export_qdq_onnx(insert_fake_quantizers(model, calibration), calibration[0]).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    equals = [n for n in graph.node if n.op_type == "Equal"]
    assert equals and all(producers.get(i) != "DequantizeLinear" for n in equals for i in n.input)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert sum(producers.get(n.input[1]) == "DequantizeLinear" for n in convs) == len(convs)  # weights all INT8
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"} and isinstance(graph, onnx.GraphProto)
