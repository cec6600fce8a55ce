"""TensorRT backend: engines read their metadata from the sidecar; without TensorRT a clear error."""

from __future__ import annotations

import importlib.util

import pytest

from edgeseg import runtime
from edgeseg.artifacts import ArtifactError, ModelMeta
from edgeseg.artifacts.metadata import read_sidecar, sidecar_path, write_sidecar
from edgeseg.runtime.base import BackendError

META = ModelMeta(model_name="toy", family="toy", task="semantic", num_classes=2, in_channels=3,
                 classes=["bg", "fg"], mean=[0.5] * 3, std=[0.25] * 3, input_size=(8, 8), stride=1)
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_sidecar_round_trip_and_missing_sidecar(tmp_path):
    engine = tmp_path / "model.int8.engine"
    assert sidecar_path(engine).name == "model.int8.engine.meta.json"
    write_sidecar(engine, META, "int8")
    got = read_sidecar(engine)
    assert got.precision == "int8" and got.model_name == "toy" and got.input_size == (8, 8)
    with pytest.raises(ArtifactError, match=r"other\.engine: no metadata file other\.engine\.meta\.json"):
        read_sidecar(tmp_path / "other.engine")
    sidecar_path(tmp_path / "bad.engine").write_text("{not json")
    with pytest.raises(ArtifactError, match="bad.engine.meta.json: unreadable edgeseg metadata"):
        read_sidecar(tmp_path / "bad.engine")


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here; the engine tests in tests/export cover it")
def test_engine_without_tensorrt_is_a_clear_error(tmp_path):
    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"\0" * 16)
    assert runtime.backend_for(engine) == "tensorrt"
    with pytest.raises(BackendError, match="tensorrt package is not installed"):
        runtime.open(engine)
