"""PyTorch -> ONNX: dynamo exporter first, TorchScript exporter as a reported fallback, onnxslim after.

Writes the FP32 reference (``model.onnx``) and checks it against PyTorch on real validation images;
the FP16 and INT8 variants are converted from it (:data:`edgeseg.export.formats.PRECISIONS`).
"""

from __future__ import annotations

from edgeseg.artifacts.onnx_export import INPUT_AXES, INPUT_NAME, export_onnx
from edgeseg.export.context import ExportContext
from edgeseg.export.formats import ArtifactRecord, ExportError

__all__ = ["INPUT_AXES", "INPUT_NAME", "convert", "export_onnx"]


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
