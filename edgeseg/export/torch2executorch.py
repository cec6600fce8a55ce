"""PyTorch -> ExecuTorch ``.pte`` for phones: ``torch.export`` -> XNNPACK delegate -> ``.pte``, FP32 and INT8.

XNNPACK holds the CPU kernels ExecuTorch runs on Android and iOS, and the Python wheel runs the same
kernels here, so the file that ships is checked and timed on this machine:

* FP32 (``model.pte``): parity against PyTorch on real validation images (an error when it fails).
* INT8 (``model.int8.pte``): PT2E static quantization with the XNNPACK quantizer (per-channel
  weights, int8 activations observed on the TRAINING split, the project's calibration images), then
  parity, FP32-vs-INT8 latency and accuracy of both on the whole validation split; shipped under the
  same ``int8_policy`` as ONNX INT8 (kept as ``model.int8.rejected.pte`` when not faster).

Programs are exported at the recipe input size (static shapes: memory planning, and XNNPACK delegates
static reshapes only). SegNet is re-exported from the same weights with ``unpool="arith"``, the one
unpooling form XNNPACK runs whole. ``export.json`` records the fraction of the graph delegated and
every operator left to ExecuTorch's portable kernels with its layer. The metadata is stored in the
program itself (constant methods, :mod:`edgeseg.runtime.executorch_rt`), so the .pte alone is enough.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeseg.artifacts import ModelMeta, atomic_write_bytes
from edgeseg.export.context import ExportContext
from edgeseg.runtime.base import BackendError
from edgeseg.export.formats import ArtifactRecord, ExportError
from edgeseg.export.onnx2int8 import decide_int8, measure_paired
from edgeseg.export.pte_lower import delegation, export_untied, lower
from edgeseg.export.pte_mixed import choose_int8
from edgeseg.artifacts.metadata import pte_constant_methods
from edgeseg.quiet import PHONE_STACK_LOGGERS, first_line, quiet_import, quiet_tools

PTE_NAMES = {"fp32": "model.pte", "int8": "model.int8.pte"}
REJECTED_INT8 = "model.int8.rejected.pte"
DELEGABLE_UNPOOL = "arith"


# The arithmetic unpooling mask (segnet.max_pool_mask_arith) tells a window's max from the rest by a
# difference rounded up to 0/1: quantized, differences under one step become ties and the mask moves.
_ARITH_MASK_OPS = ("aten.sub", "aten.rsub", "aten.clamp", "aten.ceil", "aten.mul", "aten.cat")


def model_float_fx_nodes(model: torch.nn.Module, graph_module: Any) -> dict[str, str]:
    """FX nodes the model's own structure keeps in float under PT2E INT8 (SegNet's arith unpool mask)."""
    if dict(getattr(model, "config", {})).get("unpool") != DELEGABLE_UNPOOL:
        return {}
    why = "SegNet unpooling mask arithmetic (quantized, near-equal values tie and move the max)"
    return {n.name: why for n in graph_module.graph.nodes
            if n.op == "call_function" and str(n.target).startswith(_ARITH_MASK_OPS)}


def delegable_model(model: torch.nn.Module, meta: ModelMeta) -> tuple[torch.nn.Module, ModelMeta, str]:
    """The model as exported to XNNPACK: SegNet with index or compare unpooling becomes an ``arith`` twin.

    Returns (model, metadata describing it, a note saying what changed or '').
    """
    config = dict(getattr(model, "config", {}))
    if config.get("unpool") in (None, DELEGABLE_UNPOOL):
        return model, meta, ""
    twin = model.with_unpool(DELEGABLE_UNPOOL).eval()  # a copy: pruned channel counts kept
    meta = dataclasses.replace(meta, model_args={**meta.model_args, "unpool": DELEGABLE_UNPOOL})
    return twin, meta, (f"re-exported with unpool={DELEGABLE_UNPOOL!r} (same weights, same outputs): XNNPACK has no "
                        f"kernel for unpool={config['unpool']!r}'s ops, which would run on portable kernels")


def int8_float_nodes(task: Any, model: torch.nn.Module) -> Callable[[Any], dict[str, str]]:
    """``float_nodes`` for :func:`quantize_int8`: the task's float tail (named by the model's outputs) and the
    model's own float nodes (SegNet's arith unpool mask)."""
    names = tuple(getattr(model, "output_names", task.output_names))
    return lambda gm: {**task.int8_float_fx_nodes(gm, names), **model_float_fx_nodes(model, gm)}


def _shared_with(annotation: Any) -> set[str]:
    """Names of the nodes whose quantization parameters a PT2E annotation shares (SharedQuantizationSpec)."""
    specs = [annotation.output_qspec, *annotation.input_qspec_map.values()]
    names: set[str] = set()
    for spec in specs:
        ref = getattr(spec, "edge_or_node", None)
        for item in (ref if isinstance(ref, tuple) else (ref,)):
            if isinstance(item, torch.fx.Node):
                names.add(item.name)
    return names


def quantize_int8(model: torch.nn.Module, example: torch.Tensor, images: Iterable[np.ndarray],
                  per_channel: bool = True,
                  float_nodes: Callable[[Any], dict[str, str]] | None = None) -> tuple[torch.nn.Module, dict[str, str]]:
    """PT2E static INT8 for XNNPACK: symmetric int8 weights (per channel) and activations observed on ``images``.

    ``float_nodes(graph_module)`` names the exported graph's nodes that stay in float (their
    quantization annotations are dropped after the XNNPACK quantizer annotated the graph); returns the
    quantized model and those nodes with the reason.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    kept: dict[str, str] = {}

    class _FloatTailQuantizer(XNNPACKQuantizer):
        def annotate(self, gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
            gm = super().annotate(gm)
            kept.update(float_nodes(gm) if float_nodes else {})
            changed = bool(kept)
            while changed:  # a node sharing its quantization parameters with a float one goes float too
                changed = False
                for node in gm.graph.nodes:
                    ann = node.meta.get("quantization_annotation")
                    if ann is None:
                        continue
                    if node.name not in kept and _shared_with(ann) & set(kept):
                        kept[node.name] = "shares quantization parameters with a node kept in float"
                    if node.name in kept:
                        node.meta.pop("quantization_annotation")
                        changed = True
            return gm

    quantizer = _FloatTailQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    with quiet_tools(*PHONE_STACK_LOGGERS, native=True):
        prepared = prepare_pt2e(export_untied(model, example).module(), quantizer)
        with torch.no_grad():
            for image in images:
                prepared(torch.from_numpy(image))
        return convert_pt2e(prepared), kept


def write_pte(path: Path, data: bytes) -> Path:
    atomic_write_bytes(path, data)
    return path


def open_pte(path: Path, threads: int) -> Any:
    from edgeseg.runtime.executorch_rt import ExecuTorchBackend

    return ExecuTorchBackend(path, threads=threads)


def example_input(ctx: ExportContext) -> torch.Tensor:
    """The first parity image as a fresh tensor (numpy's ``x[None]`` has a 0 stride, which .pte emission rejects)."""
    return torch.from_numpy(ctx.parity_inputs()[0]).clone(memory_format=torch.contiguous_format)


def _static(ctx: ExportContext) -> ExportContext:
    """A view of ``ctx`` whose parity images are resized to the fixed input size (a .pte has one shape)."""
    return dataclasses.replace(ctx, cfg=ctx.cfg.model_copy(update={"dynamic": False}), shared={},
                               _parity_inputs=None)


def _executorch_available() -> None:
    """Import the ExecuTorch compiler quietly (torchao reports native libraries it cannot load on import)."""
    try:
        quiet_import("executorch.exir")
    except ImportError:
        raise ExportError("ExecuTorch export needs the executorch package: pip install 'edgeseg[executorch]'") from None


def convert(ctx: ExportContext) -> list[ArtifactRecord]:
    """The ``executorch`` format: model.pte (parity-checked), model.int8.pte (policy), phone kit."""
    _executorch_available()
    model, meta, note = delegable_model(ctx.model, ctx.meta)
    if note:
        ctx.say(f"ExecuTorch: {note}", note=True)
    static = _static(ctx)
    if model is not ctx.model:
        static = dataclasses.replace(static, model=model)
    outputs = list(getattr(model, "output_names", ctx.task.output_names))
    record = convert_fp32(ctx, static, model, meta, outputs)
    records = [record]
    if "int8" in ctx.precisions:
        records.append(convert_int8(ctx, static, model, meta, outputs, record.path))
    from edgeseg.export.phone_kit import write_phone_kit

    records.append(ctx.add(write_phone_kit(ctx.out, [r for r in records if r.shipped], meta)))
    return records


def convert_fp32(ctx: ExportContext, static: ExportContext, model: torch.nn.Module, meta: ModelMeta,
                 outputs: list[str]) -> ArtifactRecord:
    """model.pte, written only once its parity passed (the task's FP32 bar); ExportError naming both figures
    otherwise, and no .pte is left behind."""
    path = ctx.out / PTE_NAMES["fp32"]
    tmp = ctx.out / f".model.tmp{os.getpid()}.pte"
    h, w = ctx.input_hw
    ctx.say(f"exporting {meta.model_name} to ExecuTorch (XNNPACK, {h}x{w}, batch 1)")
    data, info = lower(model, example_input(static), pte_constant_methods(meta, outputs, "fp32"))
    info.update(input=[1, meta.in_channels, h, w], unpool=dict(getattr(model, "config", {})).get("unpool"))
    try:
        parity = static.parity(open_pte(write_pte(tmp, data), ctx.threads))
        parity["passed"] = static.parity_ok(parity)
        if parity["passed"]:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    ctx.say(f"ExecuTorch fp32: {info['fraction_delegated']:.1%} of {info['ops_delegated'] + info['ops_portable']} "
            f"operators delegated to XNNPACK; parity max abs err {parity['max_abs_err']:.2e}, "
            f"{ctx.task.name} agreement {parity['agreement']:.4%}")
    passed = parity["passed"]
    record = ctx.add(ArtifactRecord(path, "executorch", "fp32", shipped=passed,
                                    reason="" if passed else "FP32 parity check failed; not written",
                                    figures={"export": info, "parity": parity}))
    if not passed:
        bars = ctx.task.parity_bars
        of = (f" of {parity['detections']} detections" if "detections" in parity else "")
        raise ExportError(f"{path}: ExecuTorch output differs from PyTorch on {parity['images']} validation images "
                          f"(max rel err {parity['max_rel_err']:.2e}, expected <= {bars.fp32_max_rel_err:.0e}; "
                          f"{ctx.task.name} agreement {parity['agreement']:.4%}{of}, expected >= "
                          f"{bars.fp32_min_agreement:.1%}); not written, figures in export.json")
    return record


# INT8: the same checks and policy as ONNX INT8 (onnx2int8.measure_paired / decide_int8).
OBSERVER = "HistogramObserver activations, per-channel MinMax weights (XNNPACK quantizer, symmetric int8)"


def _calibrated(ctx: ExportContext, model: torch.nn.Module, example: torch.Tensor, meta: ModelMeta,
                source: Path, extra_float: Callable[[Any], dict[str, str]] | None = None,
                seen: Callable[[Any], None] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """PT2E INT8 of ``model``; ``extra_float(gm)`` names more float nodes, ``seen(gm)`` sees the annotated graph."""
    from edgeseg.compress.calibration import calibration_images
    from edgeseg.progress import track

    cal = ctx.cfg.calibration
    ctx.say(f"ExecuTorch INT8: PT2E calibration on {cal.images} training images (XNNPACK quantizer, "
            f"per-channel={cal.per_channel})")

    own_float = int8_float_nodes(ctx.task, model)

    def float_nodes(gm: Any) -> dict[str, str]:
        if seen is not None:
            seen(gm)
        return {**(extra_float(gm) if extra_float else {}), **own_float(gm)}

    try:
        images, info = calibration_images(ctx.recipe.data, meta.in_channels, num_classes=meta.num_classes,
                                          count=cal.images, size=ctx.input_hw, seed=ctx.recipe.train.seed,
                                          task=meta.task)
        quantized, kept = quantize_int8(model, example, track(images, total=cal.images, description="calibrate pte"),
                                        per_channel=cal.per_channel, float_nodes=float_nodes)
    except Exception as exc:  # noqa: BLE001  (empty split, observer or torchao errors: one line)
        raise ExportError(f"{source}: ExecuTorch INT8 calibration ({cal.images} training images) failed: "
                          f"{first_line(exc)}") from exc
    if kept:
        ctx.say(f"ExecuTorch INT8: {len(kept)} nodes stay in float ({next(iter(kept.values()))}, ...)")
    return quantized, {**info.to_dict(), "method": "pt2e", "observers": OBSERVER, "per_channel": cal.per_channel,
                       "float_nodes": kept}


def _int8_candidates(ctx: ExportContext, model: torch.nn.Module, example: torch.Tensor, meta: ModelMeta,
                     outputs: list[str], fp32: Path, built: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """The INT8 program(s) ``export.executorch.float_depthwise`` asks for (:func:`pte_mixed.choose_int8`).

    Fills ``built`` (candidate -> temporary file, export figures, calibration figures); returns the
    ``mixed_precision`` record for export.json and the chosen file.
    """
    def build(key: str, extra: Callable[[Any], dict[str, str]] | None, seen: Callable[[Any], None]) -> Path:
        quantized, cal_info = _calibrated(ctx, model, example, meta, fp32, extra_float=extra, seen=seen)
        data, info = lower(quantized, example, pte_constant_methods(meta, outputs, "int8"))
        tag = re.sub(r"[^a-z0-9]+", "_", key)
        built[key] = (write_pte(ctx.out / f".model.{tag}.tmp{os.getpid()}.pte", data), info, cal_info)
        return built[key][0]

    record = choose_int8(ctx, build, opener=lambda p: open_pte(p, ctx.threads))
    return record, built[record["chosen"]][0]

def convert_int8(ctx: ExportContext, static: ExportContext, model: torch.nn.Module, meta: ModelMeta,
                 outputs: list[str], fp32: Path) -> ArtifactRecord:
    """Write model.int8.pte (or model.int8.rejected.pte) with calibration, parity, latency and accuracy figures."""
    example = example_input(static)
    if ctx.cfg.qat is not None or ctx.cfg.max_drop is not None:
        ctx.say("ExecuTorch INT8 is post-training quantization (PT2E, XNNPACK quantizer): QAT and --max-drop "
                "apply to the ONNX INT8 model only", note=True)
    path, rejected = ctx.out / PTE_NAMES["int8"], ctx.out / REJECTED_INT8
    built: dict[str, tuple[Path, dict[str, Any], dict[str, Any]]] = {}  # candidate -> (file, export, calibration)
    try:
        try:
            mixed, tmp = _int8_candidates(ctx, model, example, meta, outputs, fp32, built)
            int8 = open_pte(tmp, ctx.threads)
            parity = static.parity(int8)
        except BackendError as exc:  # lowered, but the runtime cannot run it: nothing is written
            raise ExportError(f"ExecuTorch INT8 program: {exc}") from None
        info, cal_info = built[mixed["chosen"]][1:]
        bar = ctx.task.parity_bars.int8_min_agreement
        parity["passed"] = parity["agreement"] >= bar
        ctx.say(f"measuring ExecuTorch FP32 vs INT8 latency ({ctx.threads} threads, batch 1, "
                f"{ctx.input_hw[0]}x{ctx.input_hw[1]})")
        latency, samples = measure_paired(ctx, {"fp32": fp32, "int8": tmp},
                                          opener=lambda p: open_pte(p, ctx.threads), backend="executorch-xnnpack")
        ship, reason, decision = decide_int8(ctx, latency, samples, rejected_name=REJECTED_INT8)
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
        for file, _, _ in built.values():
            file.unlink(missing_ok=True)
    (rejected if ship else path).unlink(missing_ok=True)  # no stale file from an earlier export
    if not ship:
        ctx.say(f"ExecuTorch INT8 not shipped: {reason}", note=True)
    figures = {"export": info, "calibration": cal_info, "parity": parity,
               "latency_ms": {k: v["p50_ms"] for k, v in latency.items()}, "latency": latency,
               "speedup": latency["fp32"]["p50_ms"] / latency["int8"]["p50_ms"], "accuracy": accuracy,
               "policy": ctx.cfg.int8_policy, "decision": decision, "mixed_precision": mixed}
    ctx.say(f"ExecuTorch INT8 {ctx.task.headline.label} {accuracy['int8'][key]:.4f} vs FP32 {accuracy['fp32'][key]:.4f} "
            f"({accuracy['int8']['num_images']} val images); speed-up {figures['speedup']:.2f}x; "
            f"{info['fraction_delegated']:.1%} delegated")
    return ctx.add(ArtifactRecord(final, "executorch", "int8", shipped=ship, reason=reason, figures=figures))


__all__ = ["convert", "convert_int8", "delegable_model", "delegation", "lower", "quantize_int8"]
