"""Which backend loads which artifact file, for a benchmark over several backends (no torch import).

The runtime picks a backend by suffix; a benchmark may also run an artifact on another backend that
reads its format: an ONNX file on OpenVINO.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg import catalog, runtime
from edgeseg.errors import UserError


def _hint(backend: str) -> str:
    name = catalog.canonical_backend(backend)
    return catalog.BACKENDS[name].hint if name else "wrong file kind"


def check_backends(names: list[str]) -> None:
    """Raise a clear error for a backend name the runtime does not know."""
    for name in names:
        runtime.backend_for("x.onnx", name)  # raises BackendError naming the valid choices


def skip_reason(path: Path, backend: str) -> str | None:
    """Why ``backend`` cannot load ``path`` (None when it can)."""
    if runtime.loads(backend, path):
        return None
    return f"{path.name} is not a {backend} artifact ({_hint(backend)}); skipped on {backend}"


def not_applicable_note(pairs: list[tuple[Path, str]]) -> str:
    """One line for every (file, backend) pair that cannot match: expected when several backends are
    asked for, so it is a note, not an error per pair."""
    by_backend: dict[str, list[str]] = {}
    for path, backend in pairs:
        by_backend.setdefault(backend, []).append(f"{path.name} on {backend}")
    parts = [f"{', '.join(names)} ({_hint(b)})"
             for b, names in by_backend.items()]
    return "not applicable (each backend loads only its own file kinds): " + "; ".join(parts)


class BenchOptionError(UserError, ValueError):
    """A benchmark setting is out of range (a batch of 0, 0 threads, ...)."""


def check_counts(option: str, values: list[int] | None, minimum: int = 1) -> None:
    """Every value of ``option`` is an integer >= ``minimum`` (a batch of 0 would time an empty call)."""
    for v in values or []:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise BenchOptionError(f"{option}: {v!r} is not allowed; expected integers >= {minimum}")
