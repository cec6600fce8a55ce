"""The exact Q/DQ rewrites that let ONNX Runtime fuse a QAT graph's convs (edgeseg/compress/qdq_graph.py)."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.compress.qdq_graph import prepare_for_onnxruntime, quantize_linear, requantize_concats

RNG = np.random.default_rng(0)


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _qat_like_graph(concat_zp: int = 30, other_zp: int = 30) -> onnx.ModelProto:
    """What NNCF's QAT export looks like: float weights behind Q/DQ, zero points behind Identity, a ReLU
    quantized with a unified (non-zero) zero point, a concat of two DQ outputs, and a conv after it."""
    nodes, inits = [], []

    def qdq(x: str, scale: str, zp: str, out: str) -> None:
        nodes.append(helper.make_node("QuantizeLinear", [x, scale, zp], [out + "_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [out + "_q", scale, zp], [out]))

    def conv(x: str, cin: int, cout: int, out: str) -> None:
        w = RNG.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.3
        # 7-bit weights, as ORT's quantization guide advises for x86 without VNNI: its u8s8 kernels add
        # pairs of uint8 x int8 products in int16 and saturate with 8-bit weights, so the fused result
        # would depend on the CPU the test runs on (AVX2/AVX-512 vs VNNI).
        ws = (np.abs(w).reshape(cout, -1).max(1) / 63).astype(np.float32)
        inits.extend([_init(out + "_w", w), _init(out + "_ws", ws), _init(out + "_wz0", np.zeros(cout, np.int8)),
                      _init(out + "_b", RNG.standard_normal(cout).astype(np.float32) * 0.1)])
        nodes.append(helper.make_node("Identity", [out + "_wz0"], [out + "_wz"]))
        nodes.append(helper.make_node("QuantizeLinear", [out + "_w", out + "_ws", out + "_wz"], [out + "_wq"], axis=0))
        nodes.append(helper.make_node("DequantizeLinear", [out + "_wq", out + "_ws", out + "_wz"], [out + "_wdq"],
                                      axis=0))
        nodes.append(helper.make_node("Conv", [x, out + "_wdq", out + "_b"], [out], pads=[1, 1, 1, 1]))

    inits.extend([_init("s_in", np.float32(0.02)), _init("z_in", np.uint8(128)), _init("s_a", np.float32(0.03)),
              _init("z_a", np.uint8(concat_zp)), _init("z_b", np.uint8(other_zp)), _init("s_o", np.float32(0.05)),
              _init("z_o", np.uint8(128))])
    qdq("x", "s_in", "z_in", "x_dq")
    conv("x_dq", 3, 8, "c1")
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"]))
    qdq("r1", "s_a", "z_a", "r1_dq")
    conv("x_dq", 3, 8, "c2")
    qdq("c2", "s_a", "z_b", "c2_dq")
    nodes.append(helper.make_node("Concat", ["r1_dq", "c2_dq"], ["cat"], axis=1))
    conv("cat", 16, 4, "c3")
    qdq("c3", "s_o", "z_o", "y")
    graph = helper.make_graph(nodes, "qat_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray, tmp: Path, optimize: bool) -> tuple[np.ndarray, Counter]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.optimized_model_filepath = str(tmp / "opt.onnx")
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0], Counter(n.op_type for n in onnx.load(tmp / "opt.onnx").graph.node)


def test_rewrites_are_exact_and_make_every_conv_fuse(tmp_path: Path) -> None:
    model = _qat_like_graph()
    rewritten = copy.deepcopy(model)
    done = prepare_for_onnxruntime(rewritten)
    assert done == {"folded_constants": 6, "folded_weight_quantizers": 3, "concat_requantizers": 1,
                    "relu_requantizers": 1}
    onnx.checker.check_model(rewritten)
    x = RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)
    before, ops_before = _run(model, x, tmp_path, optimize=True)
    reference, _ = _run(model, x, tmp_path, optimize=False)
    after, _ = _run(rewritten, x, tmp_path, optimize=False)
    np.testing.assert_array_equal(after, reference)  # same arithmetic, bit for bit, before ORT fuses anything
    fused, ops_after = _run(rewritten, x, tmp_path, optimize=True)
    assert ops_before["QLinearConv"] < 3 and ops_after["QLinearConv"] == 3 and ops_after["QLinearConcat"] == 1
    assert ops_after["Conv"] + ops_after["FusedConv"] == 0
    assert np.abs(fused - reference).max() <= 0.05 + 1e-6  # one output step: the fused kernels' own rounding


def test_concat_of_different_grids_is_left_alone() -> None:
    model = _qat_like_graph(concat_zp=30, other_zp=40)
    prepare = copy.deepcopy(model)
    assert requantize_concats(prepare) == 0
    assert [n.op_type for n in prepare.graph.node] == [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_quantize_linear_matches_the_onnx_reference(dtype: type) -> None:
    from onnx.reference import ReferenceEvaluator

    x = np.concatenate([RNG.standard_normal((4, 3, 2, 2)).astype(np.float32) * 3,
                        np.full((1, 3, 2, 2), 0.25, np.float32)])  # 0.25 / 0.1 = 2.5: round half to even
    scale = np.array([0.1, 0.02, 0.5], np.float32)
    zp = np.array([0, 3, 9], dtype)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1)
    graph = helper.make_graph([node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                                                             list(x.shape))],
                              [_init("s", scale), _init("z", zp)])
    want = ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])).run(None, {"x": x})[0]
    np.testing.assert_array_equal(quantize_linear(x, scale, zp, axis=1), want)
