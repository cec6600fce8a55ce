"""Which backend loads which artifact file, for a benchmark over several backends (no torch import).

The runtime picks a backend by suffix; a benchmark may also run an artifact on another backend that
reads its format: an ONNX file on OpenVINO.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg import runtime

_HINTS = {
    "tensorrt": "build an engine on this machine with `edgeseg export --format tensorrt` and bench the .engine",
    "openvino": "export with `edgeseg export --format openvino`, or bench the .onnx file",
    "torch": "only checkpoints (.pt) run on torch",
    "onnxruntime": "export to ONNX with `edgeseg export` first",
    "executorch": "export with `edgeseg export --format executorch` and bench the .pte",
}


def check_backends(names: list[str]) -> None:
    """Raise a clear error for a backend name the runtime does not know."""
    for name in names:
        runtime.backend_for("x.onnx", name)  # raises BackendError naming the valid choices


def skip_reason(path: Path, backend: str) -> str | None:
    """Why ``backend`` cannot load ``path`` (None when it can)."""
    if runtime.loads(backend, path):
        return None
    name = runtime.ALIASES.get(backend, backend)
    return f"{path.name} is not a {backend} artifact ({_HINTS.get(name, 'wrong file kind')}); skipped on {backend}"

