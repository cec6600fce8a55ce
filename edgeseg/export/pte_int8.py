"""INT8 ExecuTorch program: PT2E calibration on the training split, then the same checks and policy as ONNX INT8.

Calibration images come from :func:`edgeseg.compress.calibration.calibration_images` (training split
only, the export recipe's input size); the decision to ship is
:func:`edgeseg.export.onnx2int8.int8_decision` on latencies measured by
:func:`edgeseg.export.onnx2int8.measure` (alternating FP32/INT8 rounds), so both INT8 paths answer
"ship only if faster here" the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from edgeseg.artifacts import ModelMeta
from edgeseg.export.context import ExportContext
from edgeseg.export.formats import ArtifactRecord, ExportError
from edgeseg.artifacts.metadata import pte_constant_methods
from edgeseg.export.onnx2int8 import int8_decision, measure
from edgeseg.export.torch2executorch import (
    PTE_NAMES,
    REJECTED_INT8,
    example_input,
    first_line,
    lower,
    open_pte,
    quantize_int8,
    write_pte,
)

OBSERVER = "HistogramObserver activations, per-channel MinMax weights (XNNPACK quantizer, symmetric int8)"


def _calibrated(ctx: ExportContext, model: torch.nn.Module, example: torch.Tensor, meta: ModelMeta,
                source: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    from edgeseg.compress.calibration import calibration_images
    from edgeseg.progress import track

    cal = ctx.cfg.calibration
    ctx.say(f"ExecuTorch INT8: PT2E calibration on {cal.images} training images (XNNPACK quantizer, "
            f"per-channel={cal.per_channel})")
    try:
        images, info = calibration_images(ctx.recipe.data, meta.in_channels, num_classes=meta.num_classes,
                                          count=cal.images, size=ctx.input_hw, seed=ctx.recipe.train.seed)
        quantized = quantize_int8(model, example, track(images, total=cal.images, description="calibrate pte"),
                                  per_channel=cal.per_channel)
    except Exception as exc:  # noqa: BLE001  (empty split, observer or torchao errors: one line)
        raise ExportError(f"{source}: ExecuTorch INT8 calibration ({cal.images} training images) failed: "
                          f"{first_line(exc)}") from exc
    return quantized, {**info.to_dict(), "method": "pt2e", "observers": OBSERVER, "per_channel": cal.per_channel}


def convert_int8(ctx: ExportContext, static: ExportContext, model: torch.nn.Module, meta: ModelMeta,
                 outputs: list[str], fp32: Path) -> ArtifactRecord:
    """Write model.int8.pte (or model.int8.rejected.pte) with calibration, parity, latency and accuracy figures."""
    example = example_input(static)
    quantized, cal_info = _calibrated(ctx, model, example, meta, fp32)
    data, info = lower(quantized, example, pte_constant_methods(meta, outputs, "int8"))
    path, rejected = ctx.out / PTE_NAMES["int8"], ctx.out / REJECTED_INT8
    tmp = write_pte(ctx.out / f".model.int8.tmp{os.getpid()}.pte", data)
    try:
        int8 = open_pte(tmp, ctx.threads)
        parity = static.parity(int8)
        bar = ctx.task.parity_bars.int8_min_agreement
        parity["passed"] = parity["agreement"] >= bar
        ctx.say(f"measuring ExecuTorch FP32 vs INT8 latency ({ctx.threads} threads, batch 1, "
                f"{ctx.input_hw[0]}x{ctx.input_hw[1]})")
        latency = measure(ctx, {"fp32": fp32, "int8": tmp}, opener=lambda p: open_pte(p, ctx.threads),
                          backend="executorch-xnnpack")
        ship, reason = int8_decision(latency["fp32"]["p50_ms"], latency["int8"]["p50_ms"], ctx.cfg.int8_policy,
                                     rejected_name=REJECTED_INT8)
        busy = next((v["contention"] for v in latency.values() if v.get("contention")), "")
        if busy:
            reason += f"; timed on a busy machine ({busy})"
        if not parity["passed"]:
            ship = False
            reason = f"{ctx.task.name} agreement with PyTorch {parity['agreement']:.2%} is below {bar:.0%}; " + reason
        accuracy = {"fp32": static.accuracy(open_pte(fp32, ctx.threads), "pte fp32"),
                    "int8": static.accuracy(int8, "pte int8")}
        key = ctx.task.headline.key
        accuracy[f"{key}_drop_points"] = 100 * (accuracy["fp32"][key] - accuracy["int8"][key])
        del int8
        final = path if ship else rejected
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    (rejected if ship else path).unlink(missing_ok=True)  # no stale file from an earlier export
    if not ship:
        ctx.say(f"ExecuTorch INT8 not shipped: {reason}", note=True)
    figures = {"export": info, "calibration": cal_info, "parity": parity,
               "latency_ms": {k: v["p50_ms"] for k, v in latency.items()}, "latency": latency,
               "speedup": latency["fp32"]["p50_ms"] / latency["int8"]["p50_ms"], "accuracy": accuracy,
               "policy": ctx.cfg.int8_policy}
    ctx.say(f"ExecuTorch INT8 {ctx.task.headline.label} {accuracy['int8'][key]:.4f} vs FP32 {accuracy['fp32'][key]:.4f} "
            f"({accuracy['int8']['num_images']} val images); speed-up {figures['speedup']:.2f}x; "
            f"{info['fraction_delegated']:.1%} delegated")
    return ctx.add(ArtifactRecord(final, "executorch", "int8", shipped=ship, reason=reason, figures=figures))
