"""Runtime backends behind one protocol; :func:`open` is the only dispatch.

Optional dependencies (onnxruntime, torch, tensorrt, openvino) are imported inside their own module
only, so the standalone bench runner works on a device that has numpy and one runtime.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from edgeseg.runtime.base import Backend, BackendError, TensorSpec

# backend name -> (module, class); first backend listed for a suffix is its default.
BACKENDS: dict[str, tuple[str, str]] = {
    "torch": ("edgeseg.runtime.torch_rt", "TorchBackend"),
    "onnxruntime": ("edgeseg.runtime.ort_rt", "OrtBackend"),
    "tensorrt": ("edgeseg.runtime.trt_rt", "TensorRTBackend"),
    "openvino": ("edgeseg.runtime.openvino_rt", "OpenVINOBackend"),
}
DEFAULT_BACKEND = {".pt": "torch", ".pth": "torch", ".onnx": "onnxruntime", ".ort": "onnxruntime",
                   ".engine": "tensorrt", ".plan": "tensorrt", ".xml": "openvino"}
ALIASES = {"ort": "onnxruntime", "trt": "tensorrt", "torch-cuda": "torch", "ov": "openvino"}


def backend_for(path: str | Path, backend: str | None = None) -> str:
    """Resolve the backend name for ``path`` (explicit name, alias, or by file suffix)."""
    if backend:
        name = ALIASES.get(backend, backend)
        if name not in BACKENDS:
            raise BackendError(f"unknown backend {backend!r}; expected one of "
                               f"{sorted(BACKENDS) + sorted(ALIASES)}")
        return name
    suffix = Path(path).suffix.lower()
    if suffix not in DEFAULT_BACKEND:
        raise BackendError(f"{path}: cannot tell the backend from the suffix {suffix!r}; expected one of "
                           f"{sorted(DEFAULT_BACKEND)} or pass backend=")
    return DEFAULT_BACKEND[suffix]


def open(path: str | Path, backend: str | None = None, device: str = "cpu", threads: int | None = None,
         **options: object) -> Backend:  # noqa: A001  (the design's one dispatch: runtime.open)
    """Load ``path`` on ``backend`` (default: by suffix) and return a ready :class:`Backend`."""
    path = Path(path)
    if not path.exists():
        raise BackendError(f"{path}: file not found")
    if backend == "torch-cuda":
        device = "cuda"
    module, cls = BACKENDS[backend_for(path, backend)]
    return getattr(import_module(module), cls)(path, device=device, threads=threads, **options)


__all__ = ["BACKENDS", "Backend", "BackendError", "TensorSpec", "backend_for", "open"]
