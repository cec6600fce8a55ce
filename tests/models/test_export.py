"""Every ``*_test`` variant exports with the dynamo ONNX exporter and matches in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeseg.models import create_model, get_model_info, list_models

TEST_MODELS = [n for n in list_models(task="semantic", include_test=True) if n.endswith("_test")]
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec:FutureWarning")  # torch.export internals

CASES = [(n, {}) for n in TEST_MODELS] + [("segnet_test", {"unpool": "compare"}),
                                          ("unet_test", {"upsample": "bilinear"})]


def _calibrated(name: str, **kwargs: object) -> torch.nn.Module:
    """An eval-mode model whose BatchNorm statistics come from data, so logits are O(1), not ~0."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_channels=5, **kwargs)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one pass sets the statistics
    with torch.no_grad():
        model.train()(torch.randn(4, 5, *get_model_info(name).input_size))
    return model.eval()


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k in CASES])
def test_dynamo_onnx_export_matches_torch(name: str, kwargs: dict, tmp_path: Path) -> None:
    model = _calibrated(name, **kwargs)
    x = torch.randn(2, 5, *get_model_info(name).input_size)
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (x,), path, dynamo=True, input_names=["input"], output_names=["logits"],
                      verbose=False)
    graph = onnx.load(path).graph
    ops = {n.op_type for n in graph.node}
    if kwargs.get("unpool") == "compare":  # the TensorRT-friendly form: no scatter, no pool indices
        assert not ops & {"MaxUnpool", "ScatterND", "ScatterElements"}
        assert all(len(n.output) == 1 for n in graph.node if n.op_type == "MaxPool")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert y.shape == expected.shape and np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(y, expected, atol=1e-4, rtol=1e-4)
