"""Bench fixtures: a tiny checkpoint and its ONNX export, made once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_checkpoint


@pytest.fixture(scope="module")
def tiny_artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model.pt, model.onnx) of an untrained unet_test (4 classes, RGB, 64 px synthetic recipe)."""
    from edgeseg.export.torch2onnx import export_onnx
    from edgeseg.artifacts.checkpoint import load_checkpoint

    root = tmp_path_factory.mktemp("bench")
    pt = make_checkpoint(root / "model.pt")
    ckpt = load_checkpoint(pt)
    onnx_path = root / "model.onnx"
    export_onnx(ckpt.model.eval(), ckpt.meta, onnx_path, hw=(64, 64), simplify=False)
    return pt, onnx_path
