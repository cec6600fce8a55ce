"""Writing ONNX files: atomically, with the weights in an external-data file only above the protobuf limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.artifacts import atomic_output_path

PROTOBUF_LIMIT = 2 ** 31 - 1  # above this the weights go to an external-data file


def save_onnx(proto: Any, path: Path) -> Path:
    """Atomically save an ONNX model; weights go to ``<name>.data`` only when over the 2 GB protobuf limit."""
    import onnx

    external = proto.ByteSize() >= PROTOBUF_LIMIT
    with atomic_output_path(path) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=external, location=f"{path.name}.data")
    return path
