"""ONNX Runtime backend: metadata from the file (.onnx and .ort), inputs, threads, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg import runtime
from edgeseg.artifacts import ModelMeta
from edgeseg.runtime.base import BackendError
from edgeseg.runtime.ort_rt import OrtBackend

META = ModelMeta(model_name="toy", family="toy", task="semantic", num_classes=2, in_channels=3,
                 classes=["bg", "fg"], mean=[0.5] * 3, std=[0.25] * 3, input_size=(8, 8), stride=1)


def _toy_onnx(path, meta: ModelMeta | None = META):
    """A 1x1 convolution 3 -> 2 channels with dynamic batch/height/width (optionally with edgeseg metadata)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["logits"])], "toy",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, "height", "width"])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if meta is not None:
        from edgeseg.artifacts.metadata import embed_onnx

        embed_onnx(model, meta)
    onnx.save(model, str(path))
    return path


def test_onnx_file_alone_gives_meta_inputs_and_outputs(tmp_path):
    be = runtime.open(_toy_onnx(tmp_path / "toy.onnx"), threads=1)
    assert isinstance(be, OrtBackend) and be.meta == META and be.precision == "fp32"
    assert be.inputs[0].name == "input" and be.inputs[0].shape == ("batch", 3, "height", "width")
    assert be.inputs[0].dtype == "float32" and be.inputs[0].fixed_hw is None
    assert be.session.get_session_options().intra_op_num_threads == 1
    x = np.ones((2, 3, 5, 7), np.float64)  # any float input is cast to the model's dtype
    outputs = be(x)
    assert list(outputs) == be.output_names == ["logits"]  # outputs by the graph's names
    out = outputs["logits"]
    assert out.shape == (2, 2, 5, 7) and np.allclose(out[:, 0], 3.0) and np.allclose(out[:, 1], 12.0)


def test_spinning_off_for_sessions_timed_in_turn(tmp_path):
    path = _toy_onnx(tmp_path / "toy.onnx")
    key = "session.intra_op.allow_spinning"
    quiet = OrtBackend(path, threads=1, spinning=False).session.get_session_options()
    assert quiet.get_session_config_entry(key) == "0"
    default = OrtBackend(path, threads=1).session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):  # unset: ORT's default (spin)
        default.get_session_config_entry(key)


def test_ort_format_file_keeps_the_metadata(tmp_path):
    from edgeseg.export.onnx2ort import required_operators, to_ort

    src = _toy_onnx(tmp_path / "toy.onnx")
    (ort_file,), config, _ = to_ort([src], tmp_path)
    assert ort_file == tmp_path / "toy.ort" and ort_file.read_bytes()[4:8] == b"ORTM"
    ops = required_operators(config)  # {"ai.onnx:<opset the kernel is registered at>": [...]}
    assert [k.split(":")[0] for k in ops] == ["ai.onnx"] and list(ops.values()) == [["Conv"]]
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    be = runtime.open(ort_file)
    assert be.meta == META
    np.testing.assert_allclose(be(x)["logits"], runtime.open(src)(x)["logits"], rtol=1e-6)


def test_foreign_onnx_needs_meta(tmp_path):
    path = _toy_onnx(tmp_path / "foreign.onnx", meta=None)
    with pytest.raises(BackendError, match="foreign.onnx"):
        runtime.open(path)
    assert OrtBackend(path, meta=META).meta.model_name == "toy"  # metadata may come from elsewhere


def test_unloadable_file_and_missing_provider_are_clear(tmp_path):
    import onnxruntime as ort

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="broken.onnx: onnxruntime cannot load it"):
        runtime.open(bad)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendError, match="CUDAExecutionProvider is not available"):
            runtime.open(_toy_onnx(tmp_path / "toy.onnx"), device="cuda")
    with pytest.raises(BackendError, match="file not found"):
        runtime.open(tmp_path / "missing.onnx")
