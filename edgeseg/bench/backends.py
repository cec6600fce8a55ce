"""Which backend loads which artifact file, and opening it for a benchmark (no torch import).

The runtime picks a backend by suffix; a benchmark may also run an artifact on another backend that
reads its format: an ONNX file on OpenVINO (with the metadata read from the ONNX file itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg import runtime
from edgeseg.runtime.base import BackendError

# backend -> suffixes of the files it loads
LOADS: dict[str, tuple[str, ...]] = {
    "torch": (".pt", ".pth"),
    "onnxruntime": (".onnx", ".ort"),
    "tensorrt": (".engine", ".plan"),
    "openvino": (".xml", ".onnx"),
}
_HINTS = {
    "tensorrt": "build an engine on this machine with `edgeseg export --format tensorrt` and bench the .engine",
    "openvino": "export with `edgeseg export --format openvino`, or bench the .onnx file",
    "torch": "only checkpoints (.pt) run on torch",
    "onnxruntime": "export to ONNX with `edgeseg export` first",
}


def check_backends(names: list[str]) -> None:
    """Raise a clear error for a backend name the runtime does not know."""
    for name in names:
        runtime.backend_for("x.onnx", name)  # raises BackendError naming the valid choices


def skip_reason(path: Path, backend: str) -> str | None:
    """Why ``backend`` cannot load ``path`` (None when it can)."""
    name = runtime.ALIASES.get(backend, backend)
    if path.suffix.lower() in LOADS.get(name, ()):
        return None
    return f"{path.name} is not a {backend} artifact ({_HINTS.get(name, 'wrong file kind')}); skipped on {backend}"


def open_backend(path: Path, backend: str | None = None, *, device: str = "cpu", threads: int | None = None,
                 **options: Any) -> Any:
    """:func:`edgeseg.runtime.open`, plus the ONNX metadata for an ONNX file on OpenVINO."""
    if not Path(path).exists():
        raise BackendError(f"{path}: file not found")
    name = runtime.backend_for(path, backend)
    if name == "openvino" and Path(path).suffix.lower() == ".onnx" and "meta" not in options:
        options["meta"] = onnx_meta(Path(path))
    return runtime.open(path, backend=backend, device=device, threads=threads, **options)


def onnx_meta(path: Path) -> Any:
    """The :class:`~edgeseg.artifacts.ModelMeta` in an ONNX file's ``metadata_props`` (needs the onnx package)."""
    from edgeseg.artifacts import ArtifactError, ModelMeta

    try:
        import onnx
    except ImportError as exc:
        raise BackendError(f"{path}: reading its edgeseg metadata for OpenVINO needs the onnx package") from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
        return ModelMeta.from_onnx_props({p.key: p.value for p in model.metadata_props}, source=str(path))
    except ArtifactError as exc:
        raise BackendError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001  (onnx raises DecodeError and others on a broken file)
        raise BackendError(f"{path}: not a readable ONNX file: {exc}") from None
