"""ONNX files: external data only from the model's folder, custom operators only with a named library,
metadata parsed as JSON only (issue #12)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeseg import runtime
from edgeseg.artifacts import ArtifactError, ModelMeta
from edgeseg.artifacts.metadata import embed_onnx, read_onnx
from edgeseg.runtime import BackendError

META = ModelMeta(model_name="tiny", family="test", task="semantic", num_classes=3, in_channels=3,
                 classes=["a", "b", "c"], mean=[0.5] * 3, std=[0.25] * 3, input_size=(1, 1), stride=1)


def _model(domain: str = "", op: str = "Add") -> onnx.ModelProto:
    """input (1, 3, 1, 1) + a 3-value initializer W -> output."""
    node = helper.make_node(op, ["input", "W"], ["output"], domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 1, 1])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 1, 1])],
                              [helper.make_tensor("W", TensorProto.FLOAT, [1, 3, 1, 1], [1.0, 2.0, 3.0])])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return embed_onnx(helper.make_model(graph, opset_imports=opsets), META)


def _with_external(folder, location: str, write: bool = True):
    """model.onnx in ``folder`` whose W lives at ``location`` (written there when ``write``)."""
    model = _model()
    w = model.graph.initializer[0]
    raw = np.array([1, 2, 3], np.float32).tobytes()
    if write:
        (folder / location).write_bytes(raw)
    del w.float_data[:]
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_external_data_inside_the_folder_loads(tmp_path):
    be = runtime.open(_with_external(tmp_path, "model.onnx.data"))
    out = be(np.zeros((1, 3, 1, 1), np.float32))["output"]
    assert out.ravel().tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_external_data_outside_the_folder_is_refused(tmp_path, kind):
    folder = tmp_path / "models"
    folder.mkdir()
    secret = tmp_path / "secret.bin"  # never created: a runtime that tried to read it would fail its own way
    location = {"dotdot": "../secret.bin", "absolute": str(secret), "symlink": "link.bin"}[kind]
    if kind == "symlink":
        (folder / "link.bin").symlink_to(secret)
    path = _with_external(folder, location, write=False)
    with pytest.raises(ArtifactError, match=r"model.onnx: refused: tensor 'W' keeps its data at .*inside the model"):
        runtime.open(path)


def test_custom_operator_needs_an_explicit_library(tmp_path):
    path = tmp_path / "custom.onnx"
    onnx.save(_model(domain="evil.ops", op="RunAnything"), str(path))
    with pytest.raises(ArtifactError, match=r"refused: uses custom operators \(evil.ops: RunAnything\).*"
                                            r"--custom-op-library PATH"):
        runtime.open(path)
    with pytest.raises(ArtifactError, match="custom-op library not found"):
        runtime.open(path, custom_op_library=tmp_path / "missing.so")
    not_a_library = tmp_path / "lib.so"
    not_a_library.write_bytes(b"\x7fELF not really")
    with pytest.raises(BackendError, match="onnxruntime cannot load this custom-op library"):
        runtime.open(path, custom_op_library=not_a_library)  # the path the user named reaches ORT, nothing else


def test_metadata_is_json_only(tmp_path):
    model = _model()
    entry = next(p for p in model.metadata_props if p.key == "edgeseg.classes")
    marker = tmp_path / "pwned"
    entry.value = f"__import__('os').system('touch {marker}')"
    path = tmp_path / "meta.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ArtifactError, match=r"metadata entry 'edgeseg.classes' is not valid JSON"):
        read_onnx(path)
    entry.value = '"not a list"'
    onnx.save(model, str(path))
    with pytest.raises(ArtifactError, match=r"metadata field 'classes' is str .*expected a list of strings"):
        read_onnx(path)
    assert not marker.exists()


def test_standalone_runner_passes_the_library_on(tmp_path):
    from edgeseg.bench.runner import run

    path = tmp_path / "custom.onnx"
    onnx.save(_model(domain="evil.ops", op="RunAnything"), str(path))
    fast = ["--no-memory", "--warmup", "0", "--min-runs", "1", "--min-time", "0", "--out", str(tmp_path / "r.jsonl")]
    assert "refused: uses custom operators" in run([str(path), *fast])[0]["error"]
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"\x7fELF not really")
    assert "cannot load this custom-op library" in run([str(path), *fast, "--custom-op-library", str(lib)])[0]["error"]
