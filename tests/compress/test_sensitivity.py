"""Which layers stay float (compress/sensitivity.py): speed by kind first, then the most sensitive layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeseg.compress.sensitivity import choose_float_layers


def _graph(path: Path) -> Path:
    """Three full convs and one depthwise conv in a chain."""
    nodes, inits = [], []
    x = "x"
    for i, (cin, cout, group) in enumerate([(3, 4, 1), (4, 4, 1), (4, 4, 4), (4, 2, 1)]):
        w = np.ones((cout, cin // group, 3, 3), np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"y{i}"], name=f"conv{i}", group=group, pads=[1] * 4))
        x = f"y{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 2, 8, 8])], inits)
    onnx.save(helper.make_model(graph), path)
    return path


def test_float_for_speed_then_for_accuracy_most_sensitive_first(tmp_path: Path) -> None:
    cost = {"conv0": 0.004, "conv1": 0.001, "conv3": 0.02}  # mIoU lost by each layer in INT8
    built: dict[Path, list[str]] = {}

    def quantize(path: Path, excluded: list[str]) -> None:
        path.write_bytes(b"")
        built[path] = list(excluded)

    def miou(path: Path) -> float:
        if path not in built:
            return 0.80  # FP32
        return 0.80 - sum(c for n, c in cost.items() if n not in built[path])

    def latency(files: dict[str, Path]) -> dict[str, float]:
        return {name: 9.0 if name == "float_depthwise" else 10.0 if name == "full" else 10.5 for name in files}

    doc = choose_float_layers(_graph(tmp_path / "m.onnx"), quantize=quantize, miou=miou, latency=latency,
                              max_drop=0.3, log=lambda _: None)
    rows = {r["node"]: r for r in doc["layers"]}
    assert rows["conv2"]["precision"] == "fp32" and rows["conv2"]["reason"].startswith("float for speed")
    # full INT8 loses 2.5 points; conv3 (2 points) goes float first, then conv0 (0.4): 0.1 points left
    assert doc["float_layers"] == ["conv2", "conv3", "conv0"]
    assert rows["conv1"]["precision"] == "int8" and rows["conv1"]["reason"].startswith("INT8: costs 0.10")
    assert abs(doc["mixed_drop_points"] - 0.1) < 1e-6 and abs(doc["full_int8_drop_points"] - 2.5) < 1e-6
    assert doc["evaluations"] == 3 + 3 + 2  # fp32, full, mixed; three leave-one-out; two re-evaluations
