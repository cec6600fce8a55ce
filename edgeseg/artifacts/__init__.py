"""Run-folder layout, atomic writes and provenance (file kinds and suffixes: :mod:`edgeseg.catalog`).

Every file edgeseg writes goes through :func:`atomic_write` (temp file in the same folder, fsync,
rename), so an interrupted run never leaves a half-written checkpoint, ONNX file or report behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from edgeseg.catalog import STAGES, artifact_kind  # noqa: F401  (artifact_kind: until pipeline imports it from catalog)
from edgeseg.errors import UserError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class ArtifactError(UserError, ValueError):
    """An artifact on disk is missing, unreadable or of the wrong kind."""


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on clean exit fsync it and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (numpy scalars and paths are converted)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


@contextlib.contextmanager
def atomic_output_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path for tools that write files themselves; rename it to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def text_sha256(text: str) -> str:
    """Hex SHA-256 of a string (recipe hashes)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


DEFAULT_LIBRARIES = ("edgeseg", "torch", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxslim", "nncf",
                     "torch-pruning", "tensorrt", "openvino")


def library_versions(names: tuple[str, ...] | list[str] = DEFAULT_LIBRARIES) -> dict[str, str]:
    """Versions of ``names`` (default: the libraries an artifact depends on; absent ones left out)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def provenance(stage: str, inputs: dict[str, Any], figures: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON every stage writes beside its artifact: what went in, versions, figures."""
    return {
        "stage": stage,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "inputs": inputs,
        "versions": library_versions(),
        "figures": figures or {},
    }


def stage_dir(run_dir: str | Path, stage: str) -> Path:
    """``runs/<name>/<n_stage>``: the folder a pipeline stage owns."""
    matches = [folder for name, folder in STAGES.items() if stage in (name, folder)]
    if not matches:
        raise ValueError(f"unknown stage {stage!r}; expected one of {list(STAGES)}")
    return Path(run_dir) / matches[0]


# --- model metadata carried by every artifact (checkpoint dict, ONNX metadata_props, JSON) ---------

META_PREFIX = "edgeseg."


@dataclass
class ModelMeta:
    """Everything a runtime needs to evaluate or predict with an artifact, and nothing else.

    A checkpoint stores it as a dict; an ONNX file as ``metadata_props`` (``edgeseg.<field>`` keys
    with JSON values), so the file alone is enough to bench, evaluate and predict.
    """

    model_name: str
    family: str
    task: str
    num_classes: int
    in_channels: int
    classes: list[str]
    mean: list[float]
    std: list[float]
    input_size: tuple[int, int]
    stride: int
    ignore_index: int = 255
    model_args: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    recipe_hash: str = ""
    precision: str = "fp32"
    edgeseg_version: str = ""
    output_names: list[str] = field(default_factory=list)  # the graph's outputs in order ([]: not recorded)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        """Build from a stored dict; ArtifactError naming the first missing or wrongly typed field."""
        if not isinstance(d, dict):
            raise ArtifactError(f"model metadata is {type(d).__name__}, expected a dict")
        known = {f.name for f in fields(cls)}
        missing = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING} - set(d)
        if missing:
            raise ArtifactError(f"model metadata lacks {sorted(missing)}")
        kw = {k: v for k, v in d.items() if k in known}
        for name, value in kw.items():
            problem = _meta_type_problem(name, value)
            if problem:
                raise ArtifactError(f"model metadata field '{name}' is {problem}")
        kw["input_size"] = tuple(int(v) for v in kw["input_size"])
        return cls(**kw)

    def to_onnx_props(self) -> dict[str, str]:
        """``metadata_props`` entries: one JSON value per field."""
        return {META_PREFIX + k: json.dumps(v, default=_json_default) for k, v in self.to_dict().items()}

    @classmethod
    def from_onnx_props(cls, props: dict[str, str], source: str = "<onnx>") -> ModelMeta:
        d = {}
        for key, value in props.items():
            if key.startswith(META_PREFIX):
                try:  # JSON only: a metadata value is data, never evaluated
                    d[key[len(META_PREFIX):]] = json.loads(value)
                except (json.JSONDecodeError, RecursionError):
                    raise ArtifactError(f"{source}: metadata entry '{key}' is not valid JSON "
                                        f"({value[:60]!r}{'...' if len(value) > 60 else ''})") from None
        if not d:
            raise ArtifactError(f"{source}: no edgeseg metadata in the file; export it with `edgeseg export` "
                                "or pass --data RECIPE to describe its classes and normalisation")
        try:
            return cls.from_dict(d)
        except ArtifactError as exc:
            raise ArtifactError(f"{source}: {exc}") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ModelMeta field -> (check, what was expected): stored metadata comes from files others made.
_META_CHECKS: dict[str, tuple[Any, str]] = {
    "model_name": (lambda v: isinstance(v, str), "a string"), "family": (lambda v: isinstance(v, str), "a string"),
    "task": (lambda v: isinstance(v, str), "a string"), "num_classes": (lambda v: _is_int(v) and v > 0, "a positive int"),
    "in_channels": (lambda v: _is_int(v) and v > 0, "a positive int"),
    "classes": (lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v), "a list of strings"),
    "mean": (lambda v: isinstance(v, list) and all(_is_number(x) for x in v), "a list of numbers"),
    "std": (lambda v: isinstance(v, list) and all(_is_number(x) for x in v), "a list of numbers"),
    "input_size": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(x) and x > 0 for x in v),
                   "[height, width] as positive ints"),
    "stride": (lambda v: _is_int(v) and v > 0, "a positive int"), "ignore_index": (_is_int, "an int"),
    "model_args": (lambda v: isinstance(v, dict), "a dict"), "recipe": (lambda v: isinstance(v, dict), "a dict"),
    "recipe_hash": (lambda v: isinstance(v, str), "a string"), "precision": (lambda v: isinstance(v, str), "a string"),
    "edgeseg_version": (lambda v: isinstance(v, str), "a string"),
    "output_names": (lambda v: isinstance(v, list) and all(isinstance(n, str) and n for n in v),
                     "a list of non-empty strings"),
}


def _meta_type_problem(name: str, value: Any) -> str:
    """'' when ``value`` fits ModelMeta field ``name``, else 'X, expected Y'."""
    check, expected = _META_CHECKS.get(name, (lambda v: True, ""))
    return "" if check(value) else f"{type(value).__name__} {str(value)[:40]!r}, expected {expected}"


def edgeseg_version() -> str:
    """Installed edgeseg version ('' when running from a source tree without metadata)."""
    from importlib import metadata

    try:
        return metadata.version("edgeseg")
    except metadata.PackageNotFoundError:
        return ""
