"""The task table: lookup from metadata, semantic decoding as before, instance helpers that need no model."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.artifacts import ModelMeta
from edgeseg.catalog import TASKS
from edgeseg.tasks import UnknownTaskError, by_name, get_task
from edgeseg.tasks.base import OutputsError
from edgeseg.tasks.instance import box_iou, matched_detections, tail_nodes

META = ModelMeta(model_name="toy", family="toy", task="semantic", num_classes=3, in_channels=3,
                 classes=["a", "b", "c"], mean=[0.5] * 3, std=[0.25] * 3, input_size=(8, 8), stride=1)


def test_lookup_by_name_meta_and_registry_info():
    from edgeseg.models import get_model_info, list_models

    assert get_task("semantic").headline.key == "miou" and get_task("instance").headline.key == "mask_ap"
    assert get_task(META) is get_task("semantic")  # one stateless instance per task
    for name in list_models(include_test=True):
        info = get_model_info(name)
        assert get_task(info).name == info.task
    with pytest.raises(UnknownTaskError, match="unknown task 'panoptic'; expected one of"):
        get_task("panoptic")
    assert set(TASKS) == {"semantic", "instance"}


def test_by_name_and_missing_output_errors():
    assert by_name(("logits",), "x") == {"logits": "x"}
    assert by_name(("a", "b"), (1, 2)) == {"a": 1, "b": 2}
    with pytest.raises(OutputsError, match="returned 1 outputs but declares 2"):
        by_name(("a", "b"), (1,))
    with pytest.raises(OutputsError, match=r"no output 'scores' \(it has \['logits'\]\)"):
        get_task("instance").decode({"logits": np.zeros((1, 2, 4, 4))}, input_hw=(4, 4), image_hw=(4, 4),
                                    placement="pad")


def test_semantic_decode_crops_padding_and_resizes_back():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 3, 8, 12)).astype(np.float32)
    task = get_task("semantic")
    padded = task.decode({"logits": logits}, input_hw=(8, 12), image_hw=(7, 10), placement="pad")
    assert [p.shape for p in padded] == [(7, 10)] * 2
    assert np.array_equal(padded[1], logits[1, :, :7, :10].argmax(0))
    resized = task.decode({"other_name": logits}, input_hw=(8, 12), image_hw=(4, 6), placement="resize")
    assert np.array_equal(resized[0], logits[0].argmax(0)[1::2, 1::2])  # PIL nearest: pixel centres
    figures = task.parity([{"logits": logits}], [{"logits": logits + 0.5}], [np.zeros((1, 3, 8, 12))])
    assert figures["agreement"] == figures["argmax_agreement"] == 1.0
    assert figures["max_abs_err"] == pytest.approx(0.5) and not task.fp32_parity_ok(figures)


def test_box_iou_and_detection_matching():
    from types import SimpleNamespace as D

    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b = np.array([[0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    iou = box_iou(a, b)
    assert iou[0, 0] == pytest.approx(0.5) and iou[1, 1] == pytest.approx(1.0) and iou[0, 1] == 0
    ref = D(boxes=a, scores=np.array([0.9, 0.8]), labels=np.array([0, 1]))
    out = D(boxes=b, scores=np.array([0.5, 0.5, 0.5]), labels=np.array([0, 1, 1]))
    # box 0 matches only b[0] (b[2] has another label); box 1 matches b[1]
    assert matched_detections(ref, out) == 2
    assert matched_detections(ref, D(boxes=b, scores=np.ones(3), labels=np.array([2, 2, 2]))) == 0


def test_instance_heads_and_their_decoding_stay_out_of_int8():
    from onnx import TensorProto, helper

    def conv(name, x, y):
        return helper.make_node("Conv", [x, f"{name}_w"], [y], name=name)

    nodes = [conv("backbone", "input", "feat"), helper.make_node("Relu", ["feat"], ["f1"], name="relu"),
             conv("cls", "f1", "c"), helper.make_node("Reshape", ["c", "shape"], ["scores"], name="r_cls"),
             conv("box", "f1", "b"), helper.make_node("Exp", ["b"], ["e"], name="exp"),
             helper.make_node("Mul", ["e", "anchors"], ["boxes"], name="decode"),
             conv("coef", "f1", "k"), helper.make_node("Tanh", ["k"], ["coefs"], name="tanh"),
             conv("proto", "f1", "protos")]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                               for n in ("scores", "boxes", "coefs", "protos")],
                              [helper.make_tensor("anchors", TensorProto.FLOAT, [1], [1.0])])
    keep = tail_nodes(helper.make_model(graph), ("scores", "boxes", "coefs", "protos"))
    assert set(keep) == {"cls", "r_cls", "box", "exp", "decode", "coef", "tanh", "proto"}
    assert "backbone" not in keep and "relu" not in keep and "last layer of the 'boxes' head" in keep["box"]
    assert get_task("semantic").int8_float_nodes(helper.make_model(graph)) == {}
