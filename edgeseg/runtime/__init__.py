"""Runtime backends behind one protocol; :func:`open` is the only dispatch.

Optional dependencies (onnxruntime, torch, tensorrt, openvino) are imported inside their own module
only, so the standalone bench runner works on a device that has numpy and one runtime.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from edgeseg.artifacts import ARTIFACT_KINDS, artifact_kind
from edgeseg.runtime.base import Backend, BackendError, TensorSpec

# backend name -> (module, class)
BACKENDS: dict[str, tuple[str, str]] = {
    "torch": ("edgeseg.runtime.torch_rt", "TorchBackend"),
    "onnxruntime": ("edgeseg.runtime.ort_rt", "OrtBackend"),
    "tensorrt": ("edgeseg.runtime.trt_rt", "TensorRTBackend"),
    "openvino": ("edgeseg.runtime.openvino_rt", "OpenVINOBackend"),
    "executorch": ("edgeseg.runtime.executorch_rt", "ExecuTorchBackend"),
}
# backend -> artifact kinds (see ``edgeseg.artifacts.ARTIFACT_KINDS``) it loads; the first backend
# listed for a kind is that kind's default.
LOADS: dict[str, tuple[str, ...]] = {
    "torch": ("checkpoint",),
    "onnxruntime": ("onnx", "ort"),
    "tensorrt": ("tensorrt",),
    "openvino": ("openvino", "onnx"),
    "executorch": ("executorch",),
}
DEFAULT_BACKEND: dict[str, str] = {}
for _backend, _kinds in LOADS.items():
    for _kind in _kinds:
        DEFAULT_BACKEND.setdefault(_kind, _backend)
ALIASES = {"ort": "onnxruntime", "trt": "tensorrt", "torch-cuda": "torch", "ov": "openvino", "et": "executorch"}
BACKEND_CHOICES = (*BACKENDS, *ALIASES)
"""Every name ``backend=`` accepts (the recipe's ``bench.backends`` choices)."""


def backend_for(path: str | Path, backend: str | None = None) -> str:
    """Resolve the backend name for ``path`` (explicit name, alias, or by file suffix)."""
    if backend:
        name = ALIASES.get(backend, backend)
        if name not in BACKENDS:
            raise BackendError(f"unknown backend {backend!r}; expected one of "
                               f"{sorted(BACKENDS) + sorted(ALIASES)}")
        return name
    kind = artifact_kind(path)
    if kind not in DEFAULT_BACKEND:
        raise BackendError(f"{path}: cannot tell the backend from the suffix {Path(path).suffix.lower()!r}; "
                           f"expected one of {sorted(ARTIFACT_KINDS)} or pass backend=")
    return DEFAULT_BACKEND[kind]


def loads(backend: str, path: str | Path) -> bool:
    """Whether ``backend`` (a name or alias) reads the kind of file ``path`` is."""
    return artifact_kind(path) in LOADS.get(ALIASES.get(backend, backend), ())


def trust_options(backend: str, *, trust_checkpoint: bool = False,
                  custom_op_library: str | Path | None = None) -> dict[str, object]:
    """The options that widen what ``backend`` may load, for the backend they concern (empty by default).

    ``trust_checkpoint`` (torch) unpickles a checkpoint fully; ``custom_op_library`` (onnxruntime)
    registers a native library for custom operators. Both only because the user asked.
    """
    out: dict[str, object] = {}
    if backend == "torch" and trust_checkpoint:
        out["trust_checkpoint"] = True
    if backend == "onnxruntime" and custom_op_library is not None:
        out["custom_op_library"] = str(custom_op_library)
    return out


def open(path: str | Path, backend: str | None = None, device: str = "cpu", threads: int | None = None, *,
         trust_checkpoint: bool = False, custom_op_library: str | Path | None = None,
         **options: object) -> Backend:  # noqa: A001  (the design's one dispatch: runtime.open)
    """Load ``path`` on ``backend`` (default: by suffix) and return a ready :class:`Backend`.

    ``trust_checkpoint`` and ``custom_op_library`` (see :func:`trust_options`) reach only the backend
    they concern, so callers may pass them for any file.
    """
    path = Path(path)
    if not path.exists():
        raise BackendError(f"{path}: file not found")
    if backend == "torch-cuda":
        device = "cuda"
    name = backend_for(path, backend)
    options.update(trust_options(name, trust_checkpoint=trust_checkpoint, custom_op_library=custom_op_library))
    module, cls = BACKENDS[name]
    return getattr(import_module(module), cls)(path, device=device, threads=threads, **options)


__all__ = ["BACKENDS", "BACKEND_CHOICES", "LOADS", "Backend", "BackendError", "TensorSpec", "backend_for", "loads",
           "open", "trust_options"]
