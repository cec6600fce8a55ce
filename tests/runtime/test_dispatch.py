"""One suffix table: every artifact kind has a default backend, every export format a suffix of its own kind."""

from __future__ import annotations

import pytest

from edgeseg import runtime
from edgeseg import catalog
from edgeseg.catalog import artifact_kind


def test_every_artifact_suffix_opens_on_a_backend_that_loads_it():
    for suffix, kind in catalog.artifact_kinds().items():
        name = runtime.backend_for(f"model{suffix}")
        assert runtime.loads(name, f"m{suffix.upper()}"), (suffix, kind, name)
    assert runtime.backend_for("m.onnx") == "onnxruntime" and runtime.loads("openvino", "m.onnx")
    assert not runtime.loads("torch", "m.onnx") and not runtime.loads("trt", "m.xml")
    with pytest.raises(runtime.BackendError, match="cannot tell the backend from the suffix '.tflite'"):
        runtime.backend_for("m.tflite")


def test_export_formats_use_the_suffix_table():
    from edgeseg.export.formats import FORMATS

    for name, fmt in FORMATS.items():
        assert artifact_kind(f"model{fmt.suffix}") == name
        assert runtime.backend_for(f"model{fmt.suffix}") in catalog.BACKENDS
