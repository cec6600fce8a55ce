"""ModelMeta inside every exported artifact: ONNX ``metadata_props``, OpenVINO ``rt_info``, sidecar JSON.

The one place that reads and writes it (checkpoints: :mod:`edgeseg.artifacts.checkpoint`), in the
bottom layer so runtimes, export and bench share it. ONNX and ``.ort`` files carry the metadata
themselves (ORT keeps ``metadata_props`` in its format); a TensorRT engine has no field for it, so it
gets ``<engine>.meta.json`` beside it. Optional libraries (onnx, openvino) are imported inside the
functions that need them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from edgeseg.artifacts import META_PREFIX, ArtifactError, ModelMeta, atomic_write_json

OV_RT_INFO_KEY = "edgeseg"


def with_precision(meta: ModelMeta, precision: str) -> ModelMeta:
    """A copy of ``meta`` describing an artifact of ``precision``."""
    return dataclasses.replace(meta, precision=precision)


def embed_onnx(model: Any, meta: ModelMeta, precision: str | None = None) -> Any:
    """Replace the ``edgeseg.*`` entries of an ``onnx.ModelProto``'s ``metadata_props`` in place."""
    meta = with_precision(meta, precision) if precision else meta
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    for key, value in [*keep, *meta.to_onnx_props().items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"edgeseg {meta.model_name} ({meta.family}, {meta.precision})"
    return model


def read_onnx(path: str | Path) -> ModelMeta:
    """ModelMeta stored in an ONNX file (weights are not loaded); ArtifactError when it cannot be read."""
    try:
        import onnx
    except ImportError as exc:
        raise ArtifactError(f"{path}: reading its edgeseg metadata needs the onnx package") from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001  (onnx raises DecodeError and others on a broken file)
        raise ArtifactError(f"{path}: not a readable ONNX file: {exc}") from None
    return ModelMeta.from_onnx_props({p.key: p.value for p in model.metadata_props}, source=str(path))


def read_ort_session(session: Any, source: str) -> ModelMeta:
    """ModelMeta from an ``onnxruntime.InferenceSession`` (works for .onnx and .ort files)."""
    return ModelMeta.from_onnx_props(session.get_modelmeta().custom_metadata_map, source=source)


def sidecar_path(artifact: str | Path) -> Path:
    """``model.int8.engine`` -> ``model.int8.engine.meta.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".meta.json")


def write_sidecar(artifact: str | Path, meta: ModelMeta, precision: str | None = None) -> Path:
    """Write the metadata JSON beside an artifact that cannot carry it."""
    meta = with_precision(meta, precision) if precision else meta
    return atomic_write_json(sidecar_path(artifact), meta.to_dict())


def read_sidecar(artifact: str | Path) -> ModelMeta:
    """Metadata from ``<artifact>.meta.json``; a clear error when it is missing."""
    path = sidecar_path(artifact)
    if not path.is_file():
        raise ArtifactError(f"{artifact}: no metadata file {path.name} beside it; re-export with `edgeseg export` "
                            "or pass --data RECIPE")
    try:
        return ModelMeta.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, ArtifactError) as exc:
        raise ArtifactError(f"{path}: unreadable edgeseg metadata ({exc})") from None


def embed_openvino(model: Any, meta: ModelMeta, precision: str | None = None) -> Any:
    """Store the metadata in an ``openvino.Model``'s ``rt_info`` (saved into the .xml)."""
    meta = with_precision(meta, precision) if precision else meta
    for key, value in meta.to_onnx_props().items():
        model.set_rt_info(value, [OV_RT_INFO_KEY, key[len(META_PREFIX):]])
    return model


def read_openvino(model: Any, source: str) -> ModelMeta:
    """ModelMeta from an ``openvino.Model`` read from an IR written by :func:`embed_openvino`."""
    if not model.has_rt_info([OV_RT_INFO_KEY]):
        raise ArtifactError(f"{source}: no edgeseg metadata in the IR's rt_info; export it with `edgeseg export`")
    props = {}
    for field in dataclasses.fields(ModelMeta):
        if model.has_rt_info([OV_RT_INFO_KEY, field.name]):
            props[META_PREFIX + field.name] = model.get_rt_info([OV_RT_INFO_KEY, field.name]).astype(str)
    return ModelMeta.from_onnx_props(props, source=source)


# ExecuTorch programs have no metadata field; constant methods (values baked into the .pte, readable by
# any ExecuTorch runtime, so a phone app can read classes and normalisation from the file it runs).
PTE_META_METHOD = "edgeseg_meta"
PTE_OUTPUTS_METHOD = "edgeseg_outputs"


def pte_constant_methods(meta: ModelMeta, output_names: list[str], precision: str | None = None) -> dict[str, str]:
    """``constant_methods`` for ExecuTorch lowering: the metadata and the output names as JSON strings."""
    meta = with_precision(meta, precision) if precision else meta
    return {PTE_META_METHOD: json.dumps(meta.to_dict(), sort_keys=True, default=str),
            PTE_OUTPUTS_METHOD: json.dumps(list(output_names))}


def _pte_constant(program: Any, name: str, source: str) -> Any:
    if name not in program.method_names:
        raise ArtifactError(f"{source}: no edgeseg metadata in the program (method {name!r} missing); export it "
                            "with `edgeseg export --format executorch`")
    try:
        return json.loads(program.load_method(name).execute([])[0])
    except (TypeError, IndexError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{source}: unreadable edgeseg metadata in method {name!r} ({exc})") from None


def read_pte(program: Any, source: str) -> tuple[ModelMeta, list[str]]:
    """(ModelMeta, output names) of a loaded ``executorch.runtime.Program`` written by :func:`pte_constant_methods`."""
    try:
        meta = ModelMeta.from_dict(_pte_constant(program, PTE_META_METHOD, source))
    except ArtifactError as exc:
        raise ArtifactError(str(exc) if str(exc).startswith(source) else f"{source}: {exc}") from None
    return meta, [str(n) for n in _pte_constant(program, PTE_OUTPUTS_METHOD, source)]
