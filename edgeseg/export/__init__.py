"""Export a checkpoint to ONNX (FP32/FP16/INT8), ONNX Runtime mobile, TensorRT (+ Jetson kit), OpenVINO.

One converter per conversion (``torch2onnx``, ``onnx2fp16``, ``onnx2int8``, ``onnx2ort``, ``onnx2trt``,
``onnx2openvino``); :data:`FORMATS` is the only dispatch. Every artifact is checked against the
PyTorch model on real validation images, and everything lands in ``export.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.export.formats import FORMATS, PRECISIONS, ArtifactRecord, ExportError, Format

__all__ = ["FORMATS", "PRECISIONS", "ArtifactRecord", "ExportError", "Format", "export"]


def _recipe(ckpt: Any, recipe: str | Path | None, overrides: list[str] | None) -> tuple[Any, str]:
    from edgeseg.recipe import _apply_override, load_recipe, parse_override, recipe_from_dict

    if recipe is not None:
        return load_recipe(recipe, overrides), str(recipe)
    if not ckpt.meta.recipe:
        raise ExportError(f"{ckpt.path}: the checkpoint stores no recipe; pass recipe= (--data RECIPE) to say "
                          "where calibration and validation images come from")
    tree = dict(ckpt.meta.recipe)
    for text in overrides or []:
        keys, value = parse_override(text)
        _apply_override(tree, keys, value, text)
    return recipe_from_dict(tree, source=f"{ckpt.path} (stored recipe)"), "stored in checkpoint"


def export(checkpoint: str | Path, out: str | Path, *, formats: list[str] | None = None,
           precisions: list[str] | None = None, cfg: Any = None, recipe: str | Path | None = None,
           overrides: list[str] | None = None) -> dict[str, Any]:
    """Export ``checkpoint`` into ``out`` and return the export.json document.

    Args:
        checkpoint: ``model.pt`` written by `edgeseg train`.
        out: Output folder (model.onnx, model.int8.onnx, model.fp16.onnx, model.ort, tensorrt/, openvino/,
            export.json).
        formats: Any of ``onnx``, ``ort``, ``tensorrt``, ``openvino`` (default ``cfg.formats``); ONNX is
            always written since every other format is converted from it.
        precisions: Any of ``fp32``, ``fp16``, ``int8`` (default ``cfg.precisions``); FP32 is always
            exported: it is the parity and accuracy reference.
        cfg: :class:`~edgeseg.recipe.ExportCfg` (opset, dynamic axes, calibration, int8_policy); default
            the ``export`` section of ``recipe`` (``overrides`` applied), else the defaults.
        recipe: Recipe whose data is used for calibration (train split) and checks (val split);
            default: the recipe stored in the checkpoint.
        overrides: ``--set`` overrides applied to that recipe.

    Returns:
        The export.json dict; ``artifacts`` lists every file with format, precision, shipped, reason
        and figures (parity, latency, accuracy, calibration, quantization).

    Raises:
        ArtifactError: missing or foreign checkpoint.
        ExportError: unknown format/precision, or an FP32 artifact failing its parity check
            (export.json is written first, with the figures).
    """
    from edgeseg.artifacts import atomic_write_json, file_sha256, provenance
    from edgeseg.export.context import ExportContext
    from edgeseg.export.formats import resolve_formats, resolve_precisions
    from edgeseg.recipe import ExportCfg
    from edgeseg.artifacts.checkpoint import load_checkpoint

    if formats is not None:
        resolve_formats(formats)  # an unknown name fails before anything is loaded
    if precisions is not None:
        resolve_precisions(precisions)
    ckpt = load_checkpoint(checkpoint)
    rcp, recipe_source = _recipe(ckpt, recipe, overrides)
    # No cfg: the recipe's own export section (after --set export.*=...), else the defaults.
    cfg = (cfg if cfg is not None else rcp.export or ExportCfg()).model_copy(deep=True)
    fmts = resolve_formats(formats if formats is not None else list(cfg.formats))
    precs = resolve_precisions(precisions if precisions is not None else list(cfg.precisions))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = ExportContext(out=out, model=ckpt.model, meta=ckpt.meta, recipe=rcp, cfg=cfg, precisions=precs,
                        checkpoint=Path(checkpoint))
    error = ""
    try:
        for fmt in fmts:
            fmt.load()(ctx)
    except ExportError as exc:
        error = str(exc)
    inputs = {"checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint), "recipe": recipe_source,
              "recipe_hash": rcp.hash(), "overrides": list(overrides or []), "formats": [f.name for f in fmts],
              "precisions": precs, "cfg": cfg.model_dump(mode="json"), "model": ckpt.meta.model_name,
              "family": ckpt.meta.family, "input_size": list(ctx.input_hw), "threads": ctx.threads}
    doc = provenance("export", inputs, _summary(ctx))
    doc.update(artifacts=[a.to_dict() for a in ctx.artifacts], notes=ctx.notes, error=error)
    atomic_write_json(out / "export.json", doc)
    if error:
        raise ExportError(error)
    return doc


def _summary(ctx: Any) -> dict[str, Any]:
    """Headline figures: shipped files, FP32 parity, INT8 speed-up and accuracy drop."""
    fig: dict[str, Any] = {"shipped": [str(a.path) for a in ctx.artifacts if a.shipped]}
    for a in ctx.artifacts:
        if a.format == "onnx" and a.precision == "fp32":
            fig["fp32_parity"] = a.figures.get("parity")
        if a.format == "onnx" and a.precision == "int8":
            fig.update(int8_shipped=a.shipped, int8_speedup=a.figures.get("speedup"),
                       int8_miou_drop_points=a.figures.get("accuracy", {}).get("miou_drop_points"))
    return fig
