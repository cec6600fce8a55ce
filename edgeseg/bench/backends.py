"""Which backend loads which artifact file, for a benchmark over several backends (no torch import).

The runtime picks a backend by suffix; a benchmark may also run an artifact on another backend that
reads its format: an ONNX file on OpenVINO.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg import runtime
from edgeseg.errors import UserError

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


def not_applicable_note(pairs: list[tuple[Path, str]]) -> str:
    """One line for every (file, backend) pair that cannot match: expected when several backends are
    asked for, so it is a note, not an error per pair."""
    by_backend: dict[str, list[str]] = {}
    for path, backend in pairs:
        by_backend.setdefault(backend, []).append(f"{path.name} on {backend}")
    parts = [f"{', '.join(names)} ({_HINTS.get(runtime.ALIASES.get(b, b), 'wrong file kind')})"
             for b, names in by_backend.items()]
    return "not applicable (each backend loads only its own file kinds): " + "; ".join(parts)


class BenchOptionError(UserError, ValueError):
    """A benchmark setting is out of range (a batch of 0, 0 threads, ...)."""


def check_counts(option: str, values: list[int] | None, minimum: int = 1) -> None:
    """Every value of ``option`` is an integer >= ``minimum`` (a batch of 0 would time an empty call)."""
    for v in values or []:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise BenchOptionError(f"{option}: {v!r} is not allowed; expected integers >= {minimum}")
