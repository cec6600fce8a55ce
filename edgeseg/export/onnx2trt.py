"""ONNX -> TensorRT: always the Jetson kit (``tensorrt/``); engines where TensorRT and a GPU exist.

SegNet's index unpooling has no TensorRT equivalent; the kit's graph is model.onnx, which export writes
with ``unpool="compare"`` (same weights, identical outputs). The kit's INT8 model uses symmetric int8
activations and weights and keeps ConvTranspose/Resize in float (TensorRT's INT8 trouble spots).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgeseg.artifacts.metadata import embed_onnx, write_sidecar
from edgeseg.artifacts.onnx_io import save_onnx
from edgeseg.compress.ptq import tensor_amax
from edgeseg.export import trt_kit
from edgeseg.export.context import ExportContext
from edgeseg.export.formats import ArtifactRecord
from edgeseg.export.onnx2fp16 import to_fp16
from edgeseg.export.torch2onnx import INPUT_NAME

WORKSPACE_MIB = 1024


def tensorrt_status() -> tuple[bool, str]:
    """(can build engines here, why not)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        return False, f"TensorRT is not installed here ({exc.__class__.__name__}: {exc}); build on the target with tensorrt/build_engine.sh"
    try:
        import torch

        if torch.cuda.is_available():
            return True, f"TensorRT {trt.__version__}"
    except ImportError:
        pass
    return False, f"TensorRT {trt.__version__} is installed but no CUDA GPU is visible; build on the target with tensorrt/build_engine.sh"


def _kit_model(ctx: ExportContext, kit: Path) -> tuple[Path, str, dict[str, Any], Any]:
    """The kit's FP32 graph: a copy of model.onnx, already in the form TensorRT runs (export writes
    ``SegModel.export_form``: SegNet with ``compare`` unpooling, since TensorRT has no MaxUnpool).

    Returns (path, calibration key, info, the torch model the graph comes from).
    """
    path = kit / "model.onnx"
    shutil.copyfile(ctx.onnx["fp32"], path)
    return path, "fp32", {"source": "model.onnx"}, ctx.model


def write_kit(ctx: ExportContext, kit: Path) -> tuple[ArtifactRecord, dict[str, Path], dict[str, str]]:
    """Write the kit folder; returns its record, its ONNX files by role, and the trtexec shape flags."""
    from edgeseg.export.onnx2int8 import (calibration_ranges, ptq_settings, qat_int8, quantize_checked,
                                          task_float_nodes)

    kit.mkdir(parents=True, exist_ok=True)
    fp32, key, figures, source_model = _kit_model(ctx, kit)
    files = {"fp32": fp32, "fp16": kit / "model.fp16.onnx"}
    to_fp16(fp32, files["fp16"], ctx.meta)
    int8 = "int8" in ctx.precisions
    largest = max((x.shape[2], x.shape[3]) for x in ctx.parity_inputs())
    shapes = trt_kit.shape_flags(INPUT_NAME, ctx.meta.in_channels, ctx.input_hw, ctx.meta.stride, ctx.cfg.dynamic)
    if shapes:  # the profile must also cover the real images the engines are checked on
        h, w = (int(v) for v in shapes["maxShapes"].split("x")[-2:])
        b = shapes["maxShapes"].split(":")[1].split("x")[0]
        shapes["maxShapes"] = f"{INPUT_NAME}:{b}x{ctx.meta.in_channels}x{max(h, largest[0])}x{max(w, largest[1])}"
    calib = None
    qat = int8 and ctx.cfg.qat is not None
    if qat:  # the symmetric QAT flavour (NNCF preset "performance"); no PTQ, so no calibration cache
        files["int8"] = kit / "model.int8.qdq.onnx"
        qinfo, calib = qat_int8(ctx, files["int8"], target="tensorrt", model=source_model)
        import onnx

        save_onnx(embed_onnx(onnx.load(str(files["int8"])), ctx.meta, "int8"), files["int8"])
        figures.update(quantization=qinfo, calibration=calib, qdq_parity_ort=ctx.parity(ctx.open(files["int8"])))
    elif int8:
        ranges, calib = calibration_ranges(ctx, fp32, key)
        files["int8"] = kit / "model.int8.qdq.onnx"
        qinfo = quantize_checked(fp32, files["int8"], ranges, ptq_settings(ctx.cfg.calibration, "tensorrt"),
                                 ctx.cfg.calibration.method, task_float_nodes(ctx.task, fp32))
        import onnx

        save_onnx(embed_onnx(onnx.load(str(files["int8"])), ctx.meta, "int8"), files["int8"])
        amax = tensor_amax(ranges)
        cache = trt_kit.calibration_cache(amax)
        trt_kit.write_text(kit / "calibration.cache", cache)
        figures.update(quantization=qinfo, calibration=calib, cache_tensors=len(amax),
                       qdq_parity_ort=ctx.parity(ctx.open(files["int8"])))
    for engine in ["model.fp16.engine", "model.int8.engine", "model.int8.calib.engine"][:(2 if qat else 3) if int8 else 1]:
        # so engines built on the target by build_engine.sh are usable by `edgeseg eval/predict/bench`
        write_sidecar(kit / engine, ctx.meta, "int8" if "int8" in engine else "fp16")
    notes = [n for n in [figures["source"] if key == "tensorrt" else ""] if n]
    trt_kit.write_text(kit / "build_engine.sh", trt_kit.build_script(shapes=shapes, int8=int8, cache=not qat,
                                                                     workspace_mib=WORKSPACE_MIB), executable=True)
    trt_kit.write_text(kit / "README.txt", trt_kit.readme(model_name=ctx.meta.model_name, input_name=INPUT_NAME,
                                                          shapes=shapes, int8=int8, calib=calib, qat=qat,
                                                          trt_version=trt_kit.DEFAULT_TRT_VERSION, notes=notes))
    figures.update(files=sorted(p.name for p in kit.iterdir() if not p.name.startswith(".")), shapes=shapes,
                   trt_cache_header_version=trt_kit.DEFAULT_TRT_VERSION)
    record = ArtifactRecord(kit, "tensorrt", "kit", figures=figures,
                            reason="Jetson / TensorRT build kit: run tensorrt/build_engine.sh on the target")
    return record, files, shapes


def _profile(shapes: dict[str, str]) -> dict[str, tuple[int, ...]] | None:
    if not shapes:
        return None
    return {k.replace("Shapes", ""): tuple(int(v) for v in s.split(":")[1].split("x")) for k, s in shapes.items()}


def convert(ctx: ExportContext) -> list[ArtifactRecord]:
    """The ``tensorrt`` format: kit always; FP16 (and INT8) engines when TensorRT + GPU are here."""
    kit = ctx.out / "tensorrt"
    ctx.say("writing the TensorRT / Jetson kit")
    record, files, shapes = write_kit(ctx, kit)
    records = [ctx.add(record)]
    available, why = tensorrt_status()
    wanted = ["fp16"] + (["int8"] if "int8" in ctx.precisions else [])
    if not available:
        ctx.say(f"no TensorRT engine built: {why}", note=True)
        return records + [ctx.add(ArtifactRecord(ctx.out / f"model.{p}.engine", "tensorrt", p, shipped=False,
                                                 reason=why)) for p in wanted]
    from edgeseg.export.trt_build import build_engine

    for precision in wanted:
        engine = ctx.out / f"model.{precision}.engine"
        source = files["int8"] if precision == "int8" else files["fp32"]
        info = build_engine(source, engine, precision=precision, profile=_profile(shapes),
                            workspace_mib=WORKSPACE_MIB, log_path=kit / f"build_{precision}.log")
        write_sidecar(engine, ctx.meta, precision)
        from edgeseg.runtime.trt_rt import TensorRTBackend

        be = TensorRTBackend(engine, device="cuda")
        match = ctx.compare(be, reference=ctx.open(source))
        ok = match["agreement"] >= ctx.task.parity_bars.engine_min_agreement
        records.append(ctx.add(ArtifactRecord(
            engine, "tensorrt", precision, shipped=ok,
            reason="" if ok else f"engine disagrees with ONNX Runtime ({ctx.task.name} agreement "
                                 f"{match['agreement']:.2%})",
            figures={"build": info, "source": str(source), "match_onnxruntime": match,
                     "parity": ctx.parity(be)})))
    return records

