"""FP32 ONNX -> FP16 ONNX for GPUs (ONNX Runtime's own converter, float32 inputs/outputs kept)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.artifacts.metadata import embed_onnx
from edgeseg.artifacts.onnx_io import save_onnx
from edgeseg.export.context import ExportContext
from edgeseg.export.formats import ArtifactRecord


def to_fp16(src: Path, dst: Path, meta: Any) -> dict[str, Any]:
    """Convert ``src`` to FP16 weights and compute with float32 I/O (``keep_io_types=True``).

    Returns:
        Figures: nodes kept in FP32 by the converter's default block list.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    fp16 = convert_float_to_float16(model, keep_io_types=True)
    embed_onnx(fp16, meta, "fp16")
    save_onnx(fp16, dst)
    blocked = sorted({n.op_type for n in model.graph.node if n.op_type in DEFAULT_OP_BLOCK_LIST})
    return {"converter": "onnxruntime.transformers.float16", "keep_io_types": True, "ops_kept_fp32": blocked}


def convert(ctx: ExportContext) -> list[ArtifactRecord]:
    """Write ``model.fp16.onnx`` and check it against PyTorch (on CPU: ORT inserts casts where it lacks FP16)."""
    path = ctx.out / "model.fp16.onnx"
    ctx.say("converting to FP16")
    info = to_fp16(ctx.onnx["fp32"], path, ctx.meta)
    parity = ctx.parity(ctx.open(path))
    bar = ctx.task.parity_bars.fp16_min_agreement  # FP16 rounds at ~1e-3: near-ties may flip a few pixels
    parity["passed"] = parity["agreement"] >= bar
    ctx.onnx["fp16"] = path
    reason = "" if parity["passed"] else (f"{ctx.task.name} agreement {parity['agreement']:.4%} below "
                                          f"{bar:.0%}: check for FP16 overflow")
    if reason:
        ctx.say(f"FP16: {reason}", note=True)
    return [ctx.add(ArtifactRecord(path, "onnx", "fp16", shipped=parity["passed"], reason=reason,
                                   figures={"conversion": info, "parity": parity,
                                            "intended_for": "GPU (CUDA / TensorRT EP); ORT CPU runs it via casts"}))]
