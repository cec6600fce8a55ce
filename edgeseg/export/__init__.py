"""Export a checkpoint to ONNX (FP32/FP16/INT8), ONNX Runtime mobile, TensorRT (+ Jetson kit), OpenVINO,
ExecuTorch (+ phone kit).

One converter per conversion (``torch2onnx``, ``onnx2fp16``, ``onnx2int8``, ``onnx2ort``, ``onnx2trt``,
``onnx2openvino``, ``torch2executorch``); :data:`FORMATS` (the catalog's table) is the only dispatch. Every artifact is checked against the
PyTorch model on real validation images, and everything lands in ``export.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeseg.catalog import FILES
from edgeseg.export.formats import FORMATS, PRECISIONS, ArtifactRecord, ExportError, Format

if TYPE_CHECKING:
    from edgeseg.export.options import Options

__all__ = ["FORMATS", "PRECISIONS", "ArtifactRecord", "ExportError", "Format", "export"]


def remove_previous_export(out: Path) -> list[str]:
    """Delete what the ``export.json`` already in ``out`` lists (files, sidecars, its own folders)."""
    import json
    import shutil

    listing = out / FILES.export_json
    if not listing.is_file():
        return []
    try:
        doc = json.loads(listing.read_text())
    except (OSError, ValueError):
        return []
    root = out.resolve()
    removed = []
    for art in doc.get("artifacts") or []:
        p = Path(str(art.get("path", ""))) if isinstance(art, dict) else Path()
        p = (p if p.is_absolute() else Path.cwd() / p).resolve()
        if root not in p.parents:  # only what lies inside the folder being exported into
            continue
        for victim in (p, p.with_name(p.name + ".data"), p.with_suffix(".bin") if p.suffix == ".xml" else None):
            if victim is not None and victim.is_file():
                victim.unlink()
                removed.append(str(victim))
        for sub in ("tensorrt", "openvino"):
            if p.parent == root / sub and p.parent.is_dir():
                shutil.rmtree(p.parent)
                removed.append(str(p.parent))
    listing.unlink()
    return removed


def export(checkpoint: str | Path, out: str | Path, *, formats: list[str] | None = None,
           precisions: list[str] | None = None, cfg: Any = None, recipe: str | Path | None = None,
           overrides: list[str] | None = None, options: Options | None = None,
           trust_checkpoint: bool = False) -> dict[str, Any]:
    """Export ``checkpoint`` into ``out`` and return the export.json document.

    Everything that can be refused is refused before ``out`` is touched: names, option values and
    combinations, the checkpoint, its recipe, the formats its task supports. Then ``out`` is locked
    and the files an earlier export there listed are removed (``removed_previous``), so the folder
    never holds an artifact the new ``export.json`` does not describe (a stale ``model.int8.onnx``).

    Args:
        checkpoint: ``model.pt`` written by `edgeseg train`.
        out: Output folder (model.onnx, model.int8.onnx, model.fp16.onnx, model.ort, tensorrt/, openvino/,
            model.pte, phone/, export.json).
        formats: Any of :data:`edgeseg.catalog.FORMATS` (default ``cfg.formats``); ONNX is always written:
            it is the FP32 reference.
        precisions: Any of ``fp32``, ``fp16``, ``int8`` (default ``cfg.precisions``); FP32 is always
            exported: it is the parity and accuracy reference.
        cfg: :class:`~edgeseg.recipe.ExportCfg` (opset, dynamic axes, calibration, int8_policy); default
            the ``export`` section of ``recipe`` (``overrides`` applied), else the defaults.
        recipe: Recipe whose data is used for calibration (train split) and checks (val split);
            default: the recipe stored in the checkpoint.
        overrides: ``--set`` overrides applied to that recipe.
        options: settings given as options (the CLI's ``--max-drop`` ...): label -> (ExportCfg field,
            value), laid over ``cfg``; errors name the label (:mod:`edgeseg.export.options`).
        trust_checkpoint: unpickle the checkpoint fully (only for a file the user made himself).

    Returns:
        The export.json dict; ``artifacts`` lists every file with format, precision, shipped, reason
        and figures (parity, latency, accuracy, calibration, quantization).

    Raises:
        ArtifactError: missing or foreign checkpoint.
        OutputError: ``out`` cannot be an output folder or is in use.
        ExportError: unknown format/precision, a bad option or combination, or an FP32 artifact failing
            its parity check (export.json is written first, with the figures).
    """
    from edgeseg.artifacts import ArtifactError
    from edgeseg.artifacts.outputs import check_output_folder, folder_lock
    from edgeseg.export.options import check_values

    options = dict(options or {})
    _check_names(formats, precisions)  # an unknown name fails before anything is loaded or removed
    check_values(options)
    check_output_folder(out)
    if not Path(checkpoint).is_file():
        raise ArtifactError(f"{checkpoint}: checkpoint not found")
    plan = _plan(Path(checkpoint), formats, precisions, cfg, recipe, overrides, options, trust_checkpoint)
    with folder_lock(out):
        removed = remove_previous_export(Path(out))
        doc = _export_into(Path(out), plan)
    if removed:
        doc["removed_previous"] = removed
    return doc


@dataclass
class Plan:
    """What one export will do, decided (and checked) before the output folder is touched."""

    checkpoint: Path
    ckpt: Any
    recipe: Any
    recipe_source: str
    cfg: Any
    formats: list[Format]
    precisions: list[str]
    overrides: list[str]
    options: Options


def _plan(checkpoint: Path, formats: list[str] | None, precisions: list[str] | None, cfg: Any,
          recipe: str | Path | None, overrides: list[str] | None, options: Options, trust_checkpoint: bool) -> Plan:
    """Load the checkpoint and its recipe, settle the settings (arguments, else the recipe's export
    section), and refuse what cannot work (:func:`edgeseg.export.options.check_plan`)."""
    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.export.formats import resolve_formats, resolve_precisions
    from edgeseg.export.options import apply_options, check_plan
    from edgeseg.recipe import ExportCfg, checkpoint_recipe
    from edgeseg.tasks import get_task

    ckpt = load_checkpoint(checkpoint, trust=trust_checkpoint)
    rcp, recipe_source = checkpoint_recipe(ckpt, recipe, overrides)
    # No cfg: the recipe's own export section (after --set export.*=...), else the defaults.
    cfg = apply_options((cfg if cfg is not None else rcp.export or ExportCfg()).model_copy(deep=True), options)
    fmts = resolve_formats(formats if formats is not None else list(cfg.formats))
    precs = resolve_precisions(precisions if precisions is not None else list(cfg.precisions))
    check_plan(cfg, [f.name for f in fmts], precs, get_task(ckpt.meta.task), options)
    if cfg.dynamic and getattr(ckpt.model, "dynamic_export_refusal", ""):
        raise ExportError(f"{checkpoint}: {ckpt.meta.model_name} exports at one input size only "
                          f"({ckpt.model.dynamic_export_refusal}): export with --static (export.dynamic: false, as "
                          "the Mask R-CNN recipes do), at data.image_size or --set data.image_size=N")
    return Plan(checkpoint, ckpt, rcp, recipe_source, cfg, fmts, precs, list(overrides or []), options)


def _export_into(out: Path, plan: Plan) -> dict[str, Any]:
    """Convert and write export.json (``out`` is locked and holds no earlier export)."""
    from edgeseg.export.context import ExportContext
    from edgeseg.tasks import get_task

    ckpt, rcp, cfg = plan.ckpt, plan.recipe, plan.cfg
    source, meta = _export_form(ckpt.model, ckpt.meta)
    model = get_task(ckpt.meta.task).export_model(source, rcp, cfg)  # + in-graph postprocess if asked
    ctx = ExportContext(out=out, model=model, meta=artifact_meta(source, meta, rcp, model), recipe=rcp,
                        cfg=cfg, precisions=plan.precisions, checkpoint=plan.checkpoint)
    if source is not ckpt.model:
        changed = ", ".join(f"{k}={v!r}" for k, v in meta.model_args.items() if ckpt.meta.model_args.get(k) != v)
        ctx.say(f"exported with {changed} (same weights, same outputs; what TensorRT runs, "
                "and faster in INT8 on ONNX Runtime)", note=True)
    if model is not source:
        ctx.say(f"postprocess inside the graph ({type(model).__name__}: outputs {', '.join(model.output_names)})",
                note=True)
    error = _convert(ctx, plan.formats)
    inputs = {"checkpoint": str(plan.checkpoint), "recipe": plan.recipe_source, "overrides": plan.overrides,
              "options": {label: value for label, (_, value) in plan.options.items()},
              "formats": [f.name for f in plan.formats], "precisions": plan.precisions}
    doc = _write_export_json(ctx, inputs, error)
    if error:
        raise ExportError(error)
    return doc


def _check_names(formats: list[str] | None, precisions: list[str] | None) -> None:
    from edgeseg.export.formats import resolve_formats, resolve_precisions

    if formats is not None:
        resolve_formats(formats)
    if precisions is not None:
        resolve_precisions(precisions)


def _export_form(model: Any, meta: Any) -> tuple[Any, Any]:
    """The model ONNX export writes (``SegModel.export_form``) and the metadata naming its arguments."""
    import dataclasses

    form = model.export_form() if hasattr(model, "export_form") else model
    if form is model:
        return model, meta
    before = dict(getattr(model, "config", {}))
    changed = {k: v for k, v in dict(getattr(form, "config", {})).items() if before.get(k) != v}
    return form, dataclasses.replace(meta, model_args={**meta.model_args, **changed})


def artifact_meta(model: Any, meta: Any, rcp: Any, exported: Any = None) -> Any:
    """The checkpoint's metadata as the exported files record it: the BUILT model's stride, the
    exported graph's output names (``exported``: the model as exported, e.g. with its in-graph
    postprocess), and the export recipe's input size (``--set data.image_size=N`` applies) rounded up
    to that stride."""
    import dataclasses

    from edgeseg.data.preprocess import round_up_to_stride
    from edgeseg.models.base import model_stride

    stride = model_stride(model, meta.stride)
    outputs = list(getattr(exported if exported is not None else model, "output_names", meta.output_names))
    return dataclasses.replace(meta, stride=stride, input_size=round_up_to_stride(rcp.data.size_hw, stride),
                               output_names=outputs)


def _convert(ctx: Any, fmts: list[Format]) -> str:
    """Run each format's converter in dispatch order; returns the error that stopped them ('' if none)."""
    from edgeseg.export.formats import load_converter

    try:
        for fmt in fmts:
            load_converter(fmt.converter)(ctx)
    except ExportError as exc:
        return str(exc)
    return ""


def _write_export_json(ctx: Any, inputs: dict[str, Any], error: str) -> dict[str, Any]:
    """export.json: provenance, every artifact record, notes and the error (written even on failure)."""
    from edgeseg.artifacts import atomic_write_json, file_sha256, provenance

    inputs = {"checkpoint": inputs["checkpoint"], "checkpoint_sha256": file_sha256(ctx.checkpoint),
              "recipe": inputs["recipe"], "recipe_hash": ctx.recipe.hash(), "overrides": inputs["overrides"],
              "options": inputs["options"],
              "formats": inputs["formats"], "precisions": inputs["precisions"],
              "cfg": ctx.cfg.model_dump(mode="json"), "model": ctx.meta.model_name, "family": ctx.meta.family,
              "input_size": list(ctx.input_hw), "threads": ctx.threads}
    doc = provenance("export", inputs, _summary(ctx))
    doc.update(artifacts=[a.to_dict() for a in ctx.artifacts], notes=ctx.notes, error=error)
    atomic_write_json(ctx.out / FILES.export_json, doc)
    return doc


def _summary(ctx: Any) -> dict[str, Any]:
    """Headline figures: shipped files, FP32 parity, INT8 speed-up and the drop of the task's headline metric."""
    fig: dict[str, Any] = {"shipped": [str(a.path) for a in ctx.artifacts if a.shipped], "task": ctx.meta.task}
    drop = f"{ctx.task.headline.key}_drop_points"
    for a in ctx.artifacts:
        if a.format == "onnx" and a.precision == "fp32":
            fig["fp32_parity"] = a.figures.get("parity")
        if a.format == "onnx" and a.precision == "int8":
            fig.update({"int8_shipped": a.shipped, "int8_speedup": a.figures.get("speedup"),
                        f"int8_{drop}": a.figures.get("accuracy", {}).get(drop)})
    return fig
