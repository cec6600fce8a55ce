"""Runtime backends behind one protocol; :func:`open` is the only dispatch.

Optional dependencies (onnxruntime, torch, tensorrt, openvino) are imported inside their own module
only, so the standalone bench runner works on a device that has numpy and one runtime. The backends,
their file kinds and aliases are :data:`edgeseg.catalog.BACKENDS` records.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from edgeseg import catalog
from edgeseg.runtime.base import Backend, BackendError, TensorSpec


def backend_for(path: str | Path, backend: str | None = None) -> str:
    """Resolve the backend name for ``path`` (explicit name, alias, or by file suffix)."""
    if backend:
        name = catalog.canonical_backend(backend)
        if name is None:
            raise BackendError(f"unknown backend {backend!r}; expected one of "
                               f"{sorted(catalog.backends()) + sorted(catalog.aliases())}")
        return name
    kind = catalog.artifact_kind(path)
    name = catalog.default_backend(kind) if kind else None
    if name is None:
        raise BackendError(f"{path}: cannot tell the backend from the suffix {Path(path).suffix.lower()!r}; "
                           f"expected one of {sorted(catalog.artifact_kinds())} or pass backend=")
    return name


def loads(backend: str, path: str | Path) -> bool:
    """Whether ``backend`` (a name or alias) reads the kind of file ``path`` is."""
    name = catalog.canonical_backend(backend)
    return name is not None and catalog.artifact_kind(path) in catalog.BACKENDS[name].loads


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
    module, cls = catalog.BACKENDS[name].backend_class.split(":")
    return getattr(import_module(module), cls)(path, device=device, threads=threads, **options)


__all__ = ["Backend", "BackendError", "TensorSpec", "backend_for", "loads",
           "open", "trust_options"]
