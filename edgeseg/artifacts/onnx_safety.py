"""What an ONNX file may make a runtime read or load, checked before any runtime opens it.

An ONNX file is data, but two of its features reach outside it: external-data ``location`` entries
(the runtime opens whatever path they name) and operators of custom domains (which only run after a
native library is registered). edgeseg reads external data only from inside the model's own folder
and registers no library unless the user names one. Both checks parse the graph without reading any
external data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from edgeseg.artifacts import ArtifactError

# Operator domains ONNX Runtime implements itself: anything else needs a custom-op library.
BUILTIN_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "ai.onnx.training",
                             "com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental",
                             "com.ms.internal.nhwc"})
CUSTOM_OP_OPTION = "--custom-op-library"


class UnreadableOnnx(ArtifactError):
    """The file does not parse as an ONNX model (so no runtime could load it either)."""


def _load_graph(path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001  (onnx raises DecodeError and others on a broken file)
        raise UnreadableOnnx(f"{path}: not a readable ONNX file: {str(exc).splitlines()[0][:200]}") from None


def _graphs(model: Any) -> Iterator[Any]:
    """The main graph, every subgraph (If/Loop/Scan bodies), and the model-local functions' nodes."""
    import onnx

    stack = [model.graph]
    while stack:
        graph = stack.pop()
        yield graph
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    stack.append(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(attr.graphs)
    for fn in model.functions:
        yield fn


def _tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto of the model that may hold external data."""
    import onnx

    for graph in _graphs(model):
        for t in getattr(graph, "initializer", []):
            yield t
        for sparse in getattr(graph, "sparse_initializer", []):
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == onnx.AttributeProto.TENSORS:
                    yield from attr.tensors
                elif attr.type == onnx.AttributeProto.SPARSE_TENSOR:
                    yield attr.sparse_tensor.values
                    yield attr.sparse_tensor.indices


def _location_problem(location: str, folder: Path) -> str:
    """Why ``location`` may not be read ('' when it names a file inside ``folder``)."""
    if not location or "\0" in location:
        return "an empty or invalid location"
    if (os.path.isabs(location) or PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute()
            or PureWindowsPath(location).drive or location.startswith(("/", "\\"))):
        return f"the absolute path {location!r}"
    if ".." in PureWindowsPath(location).parts or ".." in PurePosixPath(location).parts:
        return f"{location!r}, which climbs out with '..'"
    base = folder.resolve()
    target = (base / location).resolve()  # a symlink inside the folder may still point outside it
    if target != base and base not in target.parents:
        return f"{location!r}, which resolves outside the model's folder (to {target})"
    return ""


def check_external_data(path: str | Path, model: Any | None = None) -> None:
    """Refuse an ONNX file whose external data would be read from outside its own folder.

    Raises:
        ArtifactError: naming the tensor and the location (absolute, ``..`` or a link leading out).
    """
    path = Path(path)
    model = model if model is not None else _load_graph(path)
    from onnx import TensorProto

    for tensor in _tensors(model):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        problem = _location_problem(location, path.parent)
        if problem:
            raise ArtifactError(f"{path}: refused: tensor '{tensor.name}' keeps its data at {problem}; external "
                                "data must be a file inside the model's own folder")


def custom_ops(model: Any) -> dict[str, list[str]]:
    """Operators of non-builtin domains (domain -> sorted op types), model-local functions excluded."""
    local = {(fn.domain, fn.name) for fn in model.functions}
    found: dict[str, set[str]] = {}
    for graph in _graphs(model):
        for node in graph.node:
            if node.domain not in BUILTIN_DOMAINS and (node.domain, node.op_type) not in local:
                found.setdefault(node.domain, set()).add(node.op_type)
    return {d: sorted(ops) for d, ops in sorted(found.items())}


def check_onnx(path: str | Path, *, custom_op_library: str | Path | None = None) -> None:
    """Both checks for a runtime about to open ``path``: external data stays in the folder, and custom
    operators are refused unless the user named the library that implements them.

    Raises:
        ArtifactError: a refused location, custom operators without a library, or a missing library.
    """
    path = Path(path)
    model = _load_graph(path)
    check_external_data(path, model)
    needed = custom_ops(model)
    if needed and custom_op_library is None:
        what = "; ".join(f"{d}: {', '.join(ops)}" for d, ops in needed.items())
        raise ArtifactError(f"{path}: refused: uses custom operators ({what}) that need a native custom-op "
                            f"library, which edgeseg never loads on its own; if you trust the library, pass "
                            f"{CUSTOM_OP_OPTION} PATH")
    if custom_op_library is not None and not Path(custom_op_library).is_file():
        raise ArtifactError(f"{custom_op_library}: custom-op library not found ({CUSTOM_OP_OPTION})")
