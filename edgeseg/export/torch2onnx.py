"""PyTorch -> ONNX: dynamo exporter first, TorchScript exporter as a reported fallback, onnxslim after.

Writes the FP32 reference (``model.onnx``) and checks it against PyTorch on real validation images;
the FP16 and INT8 variants are converted from it (:data:`edgeseg.export.formats.PRECISIONS`).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch

from edgeseg.artifacts import ModelMeta
from edgeseg.artifacts.metadata import embed_onnx
from edgeseg.artifacts.onnx_io import PROTOBUF_LIMIT, save_onnx
from edgeseg.export.context import ExportContext
from edgeseg.export.formats import ArtifactRecord, ExportError
from edgeseg.quiet import first_line, quiet_tools

INPUT_NAME = "input"
INPUT_AXES = {0: "batch", 2: "height", 3: "width"}


def _dynamo_export(model: torch.nn.Module, x: torch.Tensor, opset: int, dynamic: bool,
                   output_names: list[str]) -> Any:
    # dynamo derives the outputs' dynamic axes from the input's
    dynamic_shapes = (INPUT_AXES,) if dynamic else None
    # The exporter logs its opset up/down-conversion and prints progress; the result is checked instead.
    with quiet_tools("onnxscript", "onnx_ir", "torch.onnx", "torch.export"):
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                                    output_names=output_names, dynamic_shapes=dynamic_shapes, optimize=True,
                                    verbose=False)
    return program.model_proto


def _torchscript_export(model: torch.nn.Module, x: torch.Tensor, opset: int, dynamic: bool,
                        output_axes: dict[str, dict[int, str]]) -> Any:
    import onnx

    output_names = list(output_axes)
    dynamic_axes = {INPUT_NAME: INPUT_AXES, **output_axes} if dynamic else None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation warning; the fallback itself is reported
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def export_onnx(model: torch.nn.Module, meta: ModelMeta, path: Path, *, hw: tuple[int, int], opset: int = 17,
                dynamic: bool = True, simplify: bool = True, precision: str = "fp32") -> dict[str, Any]:
    """Export ``model`` to ``path`` (atomically) with ``meta`` in ``metadata_props``.

    Args:
        model: Model in eval mode (CPU).
        meta: Metadata to embed.
        path: Output ``.onnx`` file.
        hw: Example input size (also the fixed size when ``dynamic`` is False).
        opset: ONNX opset.
        dynamic: Dynamic input axes named batch/height/width; the outputs' dynamic axes follow from
            them (named by the task when the TorchScript fallback runs).
        simplify: Run onnxslim on the graph.
        precision: Precision recorded in the metadata.

    Returns:
        Figures: exporter used, fallback reason ('' if none), opset, node counts, simplification.
    """
    import onnx

    from edgeseg.tasks import get_task

    task = get_task(meta.task)
    output_names = list(getattr(model, "output_names", task.output_names))
    x = torch.randn(1, meta.in_channels, *hw)
    info: dict[str, Any] = {"exporter": "dynamo", "fallback_reason": "", "opset": opset, "dynamic": dynamic}
    try:
        proto = _dynamo_export(model, x, opset, dynamic, output_names)
    except Exception as exc:  # noqa: BLE001  (any dynamo failure -> TorchScript fallback, reported)
        info.update(exporter="torchscript", fallback_reason=first_line(exc))
        try:
            proto = _torchscript_export(model, x, opset, dynamic, {n: task.output_axes(n) for n in output_names})
        except Exception as exc2:  # noqa: BLE001
            raise ExportError(f"ONNX export failed with both exporters: dynamo ({info['fallback_reason']}); "
                              f"torchscript ({first_line(exc2)})") from exc2
    info["opset"] = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    info["nodes_exported"] = len(proto.graph.node)
    if simplify:
        try:
            import onnxslim

            proto = onnxslim.slim(proto)
            info["simplified"] = "onnxslim"
        except Exception as exc:  # noqa: BLE001  (an unsimplified graph still works; say so)
            info["simplified"] = f"no (onnxslim failed: {first_line(exc)})"
    info["nodes"] = len(proto.graph.node)
    info["op_types"] = sorted({n.op_type for n in proto.graph.node})
    embed_onnx(proto, meta, precision)
    onnx.checker.check_model(proto) if proto.ByteSize() < PROTOBUF_LIMIT else None
    save_onnx(proto, path)
    return info


def convert(ctx: ExportContext) -> list[ArtifactRecord]:
    """``model.onnx``: the FP32 reference every other artifact is built from (parity-checked, an error if it fails)."""
    path = ctx.out / "model.onnx"
    ctx.say(f"exporting {ctx.meta.model_name} to ONNX (opset {ctx.cfg.opset}, dynamic={ctx.cfg.dynamic})")
    info = export_onnx(ctx.model, ctx.meta, path, hw=ctx.input_hw, opset=ctx.cfg.opset, dynamic=ctx.cfg.dynamic,
                       simplify=ctx.cfg.simplify)
    if info["fallback_reason"]:
        ctx.say(f"dynamo exporter failed ({info['fallback_reason']}); used the TorchScript exporter instead",
                note=True)
    if info["opset"] != ctx.cfg.opset:
        ctx.say(f"exported opset is {info['opset']}, not the requested {ctx.cfg.opset}", note=True)
    parity = ctx.parity(ctx.open(path))
    parity["passed"] = ctx.parity_ok(parity)
    if not parity["passed"]:
        # Index unpooling (SegNet) amplifies float noise: a 2x2 window whose two largest values differ by less
        # than the PyTorch/ORT rounding difference can pick the other maximum, and unpooling then puts a
        # value one pixel off (a large local error). Pass only if that explains the whole mismatch.
        from edgeseg.export.pool_ties import pool_tie_check

        ties = pool_tie_check(ctx.model, path, ctx.parity_inputs(), ctx.task, threads=ctx.threads)
        if ties["applies"]:
            parity["pool_ties"] = ties
            parity["passed"] = ties["explained"]
            ctx.say(f"fp32 parity: {ties['flipped']} of {ties['windows']} max-pool windows picked another "
                    f"maximum in ONNX Runtime (largest top-2 gap at a flip {ties['max_gap_at_flip']:.1e}, "
                    f"PyTorch/ORT feature difference up to {ties['max_feature_diff']:.1e}); "
                    f"{ties['outputs_beyond_tol']:.2e} of the outputs beyond tolerance; with ORT's pooling "
                    f"choices PyTorch matches to rel err {ties['forced_max_rel_err']:.1e}: "
                    + ("explained by pool-index ties" if ties["explained"] else "NOT explained by pool ties"),
                    note=True)
    record = ctx.add(ArtifactRecord(path, "onnx", "fp32", figures={"export": info, "parity": parity}))
    ctx.say(f"fp32 parity on {parity['images']} val images: max abs err {parity['max_abs_err']:.2e} "
            f"(rel {parity['max_rel_err']:.2e}), {ctx.task.name} agreement {parity['agreement']:.4%}")
    if not parity["passed"]:
        record.shipped = False
        record.reason = "FP32 parity check failed"
        bars = ctx.task.parity_bars
        ties = parity.get("pool_ties")
        why = (f"; not explained by max-pool ties ({ties['flipped']} flipped windows, with ORT's pooling choices "
               f"rel err {ties['forced_max_rel_err']:.2e})" if ties else "")
        raise ExportError(f"{path}: ONNX output differs from PyTorch on {parity['images']} validation images: "
                          f"max rel err {parity['max_rel_err']:.2e} (expected <= {bars.fp32_max_rel_err:.0e}), "
                          f"{ctx.task.name} agreement {parity['agreement']:.4%} (expected >= "
                          f"{bars.fp32_min_agreement:.1%}){why}; see export.json")
    ctx.onnx["fp32"] = path
    return [record]
