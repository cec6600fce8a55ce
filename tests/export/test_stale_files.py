"""Exporting into a folder that holds an earlier export leaves only what the new export.json lists."""

from __future__ import annotations

import json

import pytest

from edgeseg.export import ExportError, export


def _previous_export(out, outside):
    out.mkdir()
    (out / "model.int8.onnx").write_bytes(b"old int8")
    (out / "notes.txt").write_text("the user's own file")
    outside.write_text("not in the export folder")
    (out / "export.json").write_text(json.dumps({"artifacts": [
        {"path": str(out / "model.int8.onnx"), "format": "onnx", "precision": "int8"},
        {"path": str(outside), "format": "onnx", "precision": "fp16"}]}))


def test_files_of_the_previous_export_are_removed(tiny_checkpoint, tmp_path):
    out, outside = tmp_path / "ex", tmp_path / "elsewhere.onnx"
    _previous_export(out, outside)
    doc = export(tiny_checkpoint, out, formats=["onnx"], precisions=["fp32"])
    assert not (out / "model.int8.onnx").exists()
    assert doc["removed_previous"] == [str(out / "model.int8.onnx")]
    listed = {a["path"] for a in json.loads((out / "export.json").read_text())["artifacts"]}
    assert listed == {str(out / "model.onnx")}
    assert (out / "notes.txt").exists() and outside.exists()  # only what the old export listed, inside out


def test_a_refused_export_keeps_the_previous_one(tiny_checkpoint, tmp_path):
    out = tmp_path / "ex"
    _previous_export(out, tmp_path / "elsewhere.onnx")
    with pytest.raises(ExportError):
        export(tiny_checkpoint, out, formats=["onnnx"])
    assert (out / "model.int8.onnx").exists() and (out / "export.json").exists()
