"""FP32 ONNX -> INT8 QDQ ONNX for ONNX Runtime CPU, shipped only where it pays (``int8_policy``).

Steps: calibrate on the training split (once per graph, reused by the TensorRT kit), quantize with
the CPU settings, check parity against PyTorch, measure FP32 vs INT8 latency on this machine, and
evaluate both on the whole validation split. Under ``int8_policy: auto`` an INT8 model that is not
faster than FP32 is kept as ``model.int8.rejected.onnx`` and not shipped.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts.metadata import embed_onnx
from edgeseg.artifacts.onnx_io import save_onnx
from edgeseg.compress.ptq import CPU_SETTINGS, TENSORRT_SETTINGS, calibrate, quantize
from edgeseg.export.context import ExportContext
from edgeseg.export.formats import ArtifactRecord, ExportError
from edgeseg.export.int8_timing import MAX_ROUNDS, RatioSamples, busy_decision, sample_ratios
from edgeseg.quiet import first_line

LATENCY_KW = {"warmup": 3, "min_runs": 10, "min_time_s": 1.0, "max_time_s": 60.0}
LATENCY_ROUNDS = 2  # FP32 and INT8 measured alternately, best p50 kept: drift hits both alike


def int8_decision(fp32_ms: float, int8_ms: float, policy: str = "auto", min_speedup: float = 1.0,
                  rejected_name: str = "model.int8.rejected.onnx") -> tuple[bool, str]:
    """Ship the INT8 model? ``auto``: only when FP32 / INT8 latency exceeds ``min_speedup``.

    Returns:
        (ship, reason) where reason quotes both latencies.
    """
    speedup = fp32_ms / int8_ms if int8_ms > 0 else float("inf")
    figures = f"INT8 {int8_ms:.2f} ms vs FP32 {fp32_ms:.2f} ms ({speedup:.2f}x)"
    if policy == "always":
        return True, f"int8_policy=always: shipped regardless of speed; {figures}"
    if policy != "auto":
        raise ValueError(f"int8_policy must be 'auto' or 'always', got {policy!r}")
    if speedup > min_speedup:
        return True, f"faster than FP32 on this machine: {figures}"
    return False, (f"not faster than FP32 on this machine: {figures}; kept as {rejected_name} "
                   "(int8_policy=always would ship it)")


def calibration_ranges(ctx: ExportContext, model_path: Path, key: str = "fp32") -> tuple[Any, dict[str, Any]]:
    """Tensor ranges of ``model_path`` on training images, computed once per ``key`` and cached in ctx."""
    cache = ctx.shared.setdefault("calibration", {})
    if key not in cache:
        from edgeseg.compress.calibration import calibration_images

        cal = ctx.cfg.calibration
        ctx.say(f"calibrating {model_path.name} on {cal.images} training images ({cal.method})")
        try:
            images, info = calibration_images(ctx.recipe.data, ctx.meta.in_channels,
                                              num_classes=ctx.meta.num_classes, count=cal.images,
                                              size=ctx.input_hw, seed=ctx.recipe.train.seed, task=ctx.meta.task)
            ranges = calibrate(model_path, images, method=cal.method, total=cal.images)
        except (ValueError, RuntimeError) as exc:  # empty split, ORT session failure: one line, not a trace
            raise ExportError(f"{model_path}: INT8 calibration ({cal.method}, {cal.images} training images) "
                              f"failed: {first_line(exc)}") from exc
        cache[key] = (ranges, {**info.to_dict(), "method": cal.method, "tensors": len(list(ranges))})
    return cache[key]


def quantize_checked(src: Path, dst: Path, ranges: Any, settings: Any, method: str,
                     exclude: dict[str, str] | None = None) -> dict[str, Any]:
    """:func:`~edgeseg.compress.ptq.quantize`, with a failure reported as an ExportError naming the file.

    ``exclude``: node name -> why it stays in float (the task's choice, see :func:`task_float_nodes`).
    """
    try:
        return quantize(src, dst, ranges, settings, method=method, exclude=exclude or {})
    except Exception as exc:  # noqa: BLE001  (ORT's quantizer raises bare exceptions of many kinds)
        raise ExportError(f"{src}: INT8 quantization for {settings.target} failed: {first_line(exc)}") from exc


def task_float_nodes(task: Any, model_path: Path) -> dict[str, str]:
    """Nodes of ``model_path`` the model's task keeps out of INT8 (e.g. instance heads and box decoding)."""
    import onnx

    return task.int8_float_nodes(onnx.load(str(model_path), load_external_data=False))


def ptq_settings(calibration: Any, target: str = "onnxruntime") -> Any:
    """The quantizer settings of the export's PTQ for ``target``: ONNX Runtime CPU with the recipe's
    per-channel choice, or TensorRT's Q/DQ placement (the optimize candidates take the same)."""
    return TENSORRT_SETTINGS if target == "tensorrt" else dataclasses.replace(
        CPU_SETTINGS, per_channel=calibration.per_channel)


def decide_int8(ctx: ExportContext, latency: dict[str, dict[str, Any]], samples: RatioSamples,
                rejected_name: str = "model.int8.rejected.onnx") -> tuple[bool, str, dict[str, Any]]:
    """Ship INT8? From :func:`measure_paired`'s figures: best p50s on a quiet machine; on a busy one
    (``int8_policy: auto``) the ratio's confidence interval decides. Returns (ship, reason, record)."""
    f32, i8 = latency["fp32"]["p50_ms"], latency["int8"]["p50_ms"]
    ship, reason = int8_decision(f32, i8, ctx.cfg.int8_policy, rejected_name=rejected_name)
    ci = samples.ci95()
    decision: dict[str, Any] = {"rounds": len(samples.ratios), "ratios": [round(r, 4) for r in samples.ratios],
                                "ratio_ci95": [round(v, 4) for v in ci] if ci else None, "busy": samples.busy,
                                "certainty": f"quiet machine: best p50 of {len(samples.ratios)} paired rounds"}
    if samples.busy:
        ctx.say(f"INT8 latency was measured on a busy machine: {samples.busy}", note=True)
        if ctx.cfg.int8_policy == "auto":  # best-of-rounds is not to be trusted here: the interval decides
            return busy_decision(samples, f"INT8 {i8:.2f} ms vs FP32 {f32:.2f} ms", rejected_name)
        reason += f"; timed on a busy machine ({samples.busy})"
    return ship, reason, decision


def _speedup(latency: dict[str, dict[str, Any]], samples: RatioSamples, policy: str) -> float:
    """FP32/INT8: of the best p50s on a quiet machine; on a busy one (``auto``) the paired rounds'
    geometric mean, the figure the decision rested on (best-of-rounds can say the opposite under load)."""
    if samples.busy and policy == "auto" and samples.ratios:
        return float(samples.geomean())
    return latency["fp32"]["p50_ms"] / latency["int8"]["p50_ms"]


def measure(ctx: ExportContext, paths: dict[str, Path], opener: Callable[[Path], Any] | None = None,
            backend: str = "onnxruntime-cpu") -> dict[str, dict[str, Any]]:
    """Batch-1 latency at the recipe input size with all cores, alternating models between rounds.

    ``opener`` loads a file as a Backend (default ONNX Runtime, :meth:`ExportContext.open`); ``backend``
    names it in the figures.
    """
    return measure_paired(ctx, paths, opener, backend, max_rounds=LATENCY_ROUNDS)[0]


def measure_paired(ctx: ExportContext, paths: dict[str, Path], opener: Callable[[Path], Any] | None = None,
                   backend: str = "onnxruntime-cpu", max_rounds: int = MAX_ROUNDS,
                   ) -> tuple[dict[str, dict[str, Any]], RatioSamples]:
    """:func:`measure`, plus the per-round FP32/INT8 ratios when ``paths`` holds those two keys.

    Then, on a busy machine, the rounds go on (up to ``max_rounds``) until the ratio's confidence
    interval excludes 1 (:mod:`int8_timing`); other sets of models get ``LATENCY_ROUNDS`` rounds.
    """
    from edgeseg.bench.contention import CpuWatch, contention_reason
    from edgeseg.bench.latency import measure_latency

    x = np.random.default_rng(0).standard_normal((1, ctx.meta.in_channels, *ctx.input_hw)).astype(np.float32)
    backends = {k: (opener or ctx.open)(p) for k, p in paths.items()}
    best: dict[str, dict[str, Any]] = {}
    contention: dict[str, str] = {}

    def one_round(i: int) -> tuple[float, float, str]:
        p50, busy = {}, ""
        for key in (list(backends) if i % 2 == 0 else list(backends)[::-1]):  # alternate who goes first
            be = backends[key]
            with CpuWatch() as watch:
                stats = measure_latency(lambda be=be: be(x), sync=be.synchronize, **LATENCY_KW).to_dict()
            why = contention_reason(watch.other_cores, threads=ctx.threads, cores=os.cpu_count() or 1,
                                    wall_s=watch.wall_s)
            contention[key] = contention.get(key) or why
            busy = busy or why
            p50[key] = stats["p50_ms"]
            if key not in best or stats["p50_ms"] < best[key]["p50_ms"]:
                best[key] = stats
        return p50.get("fp32", 1.0), p50.get("int8", 1.0), busy

    paired = {"fp32", "int8"} <= set(paths)
    samples = sample_ratios(one_round, min_rounds=LATENCY_ROUNDS, max_rounds=max_rounds if paired else LATENCY_ROUNDS)
    for key, stats in best.items():
        stats.update(threads=ctx.threads, input=[1, ctx.meta.in_channels, *ctx.input_hw], backend=backend,
                     contention=contention[key])
    return best, samples


def fp32_accuracy(ctx: ExportContext) -> dict[str, Any]:
    """Validation accuracy of model.onnx (computed once; the reference next to every INT8 figure)."""
    if "fp32_accuracy" not in ctx.shared:
        ctx.shared["fp32_accuracy"] = ctx.accuracy(ctx.open(ctx.onnx["fp32"]), "fp32")
    return ctx.shared["fp32_accuracy"]


def qat_int8(ctx: ExportContext, dst: Path, target: str = "onnxruntime-cpu", model: Any = None
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """INT8 by quantization-aware training (no PTQ): NNCF fake quantizers, fine-tuning, QDQ export to ``dst``.

    ``target`` picks the flavour (:data:`edgeseg.compress.qat.PRESETS`: ``tensorrt`` is symmetric);
    ``model`` defaults to the checkpoint's (the TensorRT kit passes its TensorRT-friendly twin). The
    fine-tuning log lands in ``OUT/qat`` (``OUT/qat-<target>`` for other targets).
    """
    import copy

    import torch

    from edgeseg.compress.calibration import calibration_images
    from edgeseg.compress.ptq import quantized_counts
    from edgeseg.compress.qat import export_qdq_onnx, qat_finetune
    from edgeseg.compress.qdq_graph import prepare_for_onnxruntime

    cal, qat = ctx.cfg.calibration, ctx.cfg.qat
    images, info = calibration_images(ctx.recipe.data, ctx.meta.in_channels, num_classes=ctx.meta.num_classes,
                                      count=cal.images, size=ctx.input_hw, seed=ctx.recipe.train.seed,
                                      task=ctx.meta.task)
    ctx.say(f"QAT ({target}): fake quantizers from {cal.images} training images, then {qat.epochs} epochs of "
            "fine-tuning")
    try:
        log_dir = ctx.out / ("qat" if target == "onnxruntime-cpu" else f"qat-{target}")
        qmodel, figures = qat_finetune(copy.deepcopy(ctx.model if model is None else model), ctx.recipe, log_dir,
                                       epochs=qat.epochs, lr=qat.lr, calibration=[torch.from_numpy(a) for a in images],
                                       target=target, distill=qat.distill and ctx.task.supports_distillation)
        proto = export_qdq_onnx(qmodel, torch.from_numpy(ctx.parity_inputs()[0]), opset=ctx.cfg.opset,
                                dynamic=ctx.cfg.dynamic, output_names=tuple(getattr(ctx.model, "output_names",
                                                                                    ("logits",))))
    except (RuntimeError, ValueError) as exc:
        raise ExportError(f"{ctx.checkpoint}: quantization-aware training failed: {first_line(exc)}") from exc
    if target == "onnxruntime-cpu":  # exact rewrites so that ORT fuses every quantized conv
        figures["graph_rewrites"] = prepare_for_onnxruntime(proto)
    save_onnx(proto, dst)
    return {"method": "qat", "qat": figures, **quantized_counts(proto)}, {**info.to_dict(), "method": "qat"}


def mixed_int8(ctx: ExportContext, fp32: Path, dst: Path, ranges: Any, settings: Any) -> dict[str, Any]:
    """Mixed precision under ``max_drop``: measured float fallback, then the chosen model written to ``dst``."""
    from edgeseg.compress.sensitivity import choose_float_layers

    method = ctx.cfg.calibration.method

    task_nodes = list(task_float_nodes(ctx.task, fp32))  # what the task always keeps in float

    def build(path: Path, excluded: list[str]) -> Any:
        return _quantize_excluding(fp32, path, ranges, settings, method, [*excluded, *task_nodes])

    key = ctx.task.headline.key  # mIoU, or mask AP for instance models

    def miou(path: Path) -> float:
        if path == fp32:
            return fp32_accuracy(ctx)[key]
        return ctx.accuracy(ctx.open(path), path.stem)[key]

    def latency(paths: dict[str, Path]) -> dict[str, float]:
        return {k: v["p50_ms"] for k, v in measure(ctx, paths).items()}

    choice = choose_float_layers(fp32, quantize=build, miou=miou, latency=latency, max_drop=ctx.cfg.max_drop,
                                 log=ctx.say)
    qinfo = build(dst, choice["float_layers"])
    reasons = {row["node"]: row["reason"] for row in choice["layers"] if row["precision"] == "fp32"}
    qinfo["excluded"] = {**qinfo.get("excluded", {}), **reasons}
    return {**qinfo, "mixed_precision": choice}


def _quantize_excluding(fp32: Path, dst: Path, ranges: Any, settings: Any, method: str,
                        excluded: list[str]) -> dict[str, Any]:
    try:
        return quantize(fp32, dst, ranges, settings, method=method, exclude=excluded)
    except Exception as exc:  # noqa: BLE001  (ORT's quantizer raises bare exceptions of many kinds)
        raise ExportError(f"{fp32}: INT8 quantization for {settings.target} failed: {first_line(exc)}") from exc


def _build(ctx: ExportContext, fp32: Path, dst: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """INT8 of ``fp32`` into ``dst`` by QAT, mixed precision under ``max_drop`` or plain PTQ, metadata embedded.

    Returns (quantization figures, calibration figures).
    """
    import onnx

    if ctx.cfg.qat is not None:
        qinfo, cal_info = qat_int8(ctx, dst)
    else:
        settings = ptq_settings(ctx.cfg.calibration)
        ranges, cal_info = calibration_ranges(ctx, fp32)
        if ctx.cfg.max_drop is not None:
            qinfo = mixed_int8(ctx, fp32, dst, ranges, settings)
        else:
            qinfo = quantize_checked(fp32, dst, ranges, settings, ctx.cfg.calibration.method,
                                     task_float_nodes(ctx.task, fp32))
    save_onnx(embed_onnx(onnx.load(str(dst)), ctx.meta, "int8"), dst)
    ctx.say(f"INT8: {qinfo['quantized_nodes']} weighted nodes quantized, {qinfo['skipped_nodes']} kept in float")
    return qinfo, cal_info


def _judge(ctx: ExportContext, fp32: Path, int8: Path) -> tuple[bool, str, dict[str, Any]]:
    """Parity, paired latency and whole-split accuracy of ``int8`` against ``fp32``; (ship, reason, figures)."""
    parity = ctx.parity(ctx.open(int8))
    parity["passed"] = parity["agreement"] >= ctx.task.parity_bars.int8_min_agreement
    ctx.say(f"measuring FP32 vs INT8 latency ({ctx.threads} threads, batch 1, {ctx.input_hw[0]}x{ctx.input_hw[1]})")
    latency, samples = measure_paired(ctx, {"fp32": fp32, "int8": int8})
    ship, reason, decision = decide_int8(ctx, latency, samples)
    if not parity["passed"]:
        ship = False
        reason = (f"{ctx.task.name} agreement with PyTorch {parity['agreement']:.2%} is below "
                  f"{ctx.task.parity_bars.int8_min_agreement:.0%}; " + reason)
    accuracy = {"fp32": fp32_accuracy(ctx), "int8": ctx.accuracy(ctx.open(int8), "int8")}
    key = ctx.task.headline.key
    drop = accuracy[f"{key}_drop_points"] = 100 * (accuracy["fp32"][key] - accuracy["int8"][key])
    if ctx.cfg.max_drop is not None and drop > ctx.cfg.max_drop:
        ship = False  # the budget is a promise: no layer choice met it (every weighted layer tried)
        reason = (f"no INT8 model within --max-drop {ctx.cfg.max_drop}: the best choice loses "
                  f"{drop:.2f} {ctx.task.headline.label} points; " + reason)
    figures = {"parity": parity, "latency_ms": {k: v["p50_ms"] for k, v in latency.items()}, "latency": latency,
               "speedup": _speedup(latency, samples, ctx.cfg.int8_policy), "accuracy": accuracy,
               "policy": ctx.cfg.int8_policy, "decision": decision}
    return ship, reason, figures


def convert(ctx: ExportContext) -> list[ArtifactRecord]:
    """Write model.int8.onnx (or model.int8.rejected.onnx) with calibration, parity, latency, accuracy.

    INT8 comes from post-training quantization, from mixed precision under ``max_drop`` (PTQ with a
    measured float fallback), or from quantization-aware training (``qat``; no PTQ then). Settings that
    cannot be combined were refused before the export began (:func:`edgeseg.export.options.check_plan`).
    """
    fp32 = ctx.onnx["fp32"]
    path, rejected = ctx.out / "model.int8.onnx", ctx.out / "model.int8.rejected.onnx"
    tmp = ctx.out / f".model.int8.tmp{os.getpid()}.onnx"
    try:
        qinfo, cal_info = _build(ctx, fp32, tmp)
        ship, reason, figures = _judge(ctx, fp32, tmp)
        final = path if ship else rejected
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    (rejected if ship else path).unlink(missing_ok=True)  # no stale file from an earlier export
    if ship:
        ctx.onnx["int8"] = final
    else:
        ctx.say(f"INT8 not shipped: {reason}", note=True)
    figures = {"calibration": cal_info, "quantization": qinfo, **figures}
    accuracy, key = figures["accuracy"], ctx.task.headline.key
    ctx.say(f"INT8 {ctx.task.headline.label} {accuracy['int8'][key]:.4f} vs FP32 {accuracy['fp32'][key]:.4f} "
            f"({accuracy['int8']['num_images']} val images); speed-up {figures['speedup']:.2f}x")
    return [ctx.add(ArtifactRecord(final, "onnx", "int8", shipped=ship, reason=reason, figures=figures))]
