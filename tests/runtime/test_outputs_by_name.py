"""Every backend that runs here returns the graph's outputs by name, with the same values."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgeseg import runtime


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """unet_test checkpoint and its ONNX export (metadata embedded)."""
    from edgeseg.export.torch2onnx import export_onnx
    from edgeseg.artifacts.checkpoint import load_checkpoint
    from tests.conftest import make_checkpoint

    root = tmp_path_factory.mktemp("byname")
    ckpt = make_checkpoint(root / "model.pt")
    loaded = load_checkpoint(ckpt)
    export_onnx(loaded.model, loaded.meta, root / "model.onnx", hw=(32, 32))
    return ckpt, root / "model.onnx"


BACKENDS = ["torch", "onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_outputs_are_keyed_by_graph_names(exported, backend):
    ckpt, onnx_path = exported
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 48)).astype(np.float32)
    reference = runtime.open(ckpt, backend="torch")(x)
    be = runtime.open(ckpt if backend == "torch" else onnx_path, backend=backend, threads=1)
    out = be(x)
    assert isinstance(out, dict) and list(out) == be.output_names == ["logits"]
    assert out["logits"].shape == (1, 4, 32, 48)
    np.testing.assert_allclose(out["logits"], reference["logits"], atol=1e-4)
