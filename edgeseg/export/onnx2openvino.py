"""ONNX -> OpenVINO IR (``openvino/model*.xml`` + ``.bin``) with the metadata in ``rt_info``.

FP32 from model.onnx, FP16 by OpenVINO's own weight compression, INT8 from the shipped Q/DQ model
(OpenVINO turns Q/DQ pairs into FakeQuantize and runs them as INT8 on CPU).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgeseg.artifacts.metadata import embed_openvino
from edgeseg.export.context import ExportContext
from edgeseg.export.formats import ArtifactRecord, ExportError


def to_openvino(onnx_path: Path, xml_path: Path, meta: object, precision: str) -> dict[str, str]:
    """Convert one ONNX file; write ``xml_path`` and its ``.bin`` atomically (both renamed at the end)."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise ExportError("OpenVINO export needs the openvino package: pip install 'edgeseg[openvino]'") from exc
    model = ov.convert_model(str(onnx_path))
    embed_openvino(model, meta, precision)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix=".ov-", dir=xml_path.parent) as tmp:
        tmp_xml = Path(tmp) / xml_path.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=precision == "fp16")
        os.replace(tmp_xml.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(tmp_xml, xml_path)
    return {"openvino": ov.__version__, "source": str(onnx_path)}


def convert(ctx: ExportContext) -> list[ArtifactRecord]:
    """Write openvino/model.xml (+ model.fp16.xml, model.int8.xml for shipped variants); check each runs."""
    from edgeseg.runtime.openvino_rt import OpenVINOBackend

    folder = ctx.out / "openvino"
    folder.mkdir(parents=True, exist_ok=True)
    sources = {"fp32": ctx.onnx["fp32"]}
    if "fp16" in ctx.precisions:
        sources["fp16"] = ctx.onnx["fp32"]  # OpenVINO compresses the FP32 weights itself
    if "int8" in ctx.onnx:
        sources["int8"] = ctx.onnx["int8"]
    records = []
    for precision, src in sources.items():
        xml = folder / ("model.xml" if precision == "fp32" else f"model.{precision}.xml")
        ctx.say(f"converting {src.name} to OpenVINO IR ({precision})")
        info = to_openvino(src, xml, ctx.meta, precision)
        parity = ctx.parity(OpenVINOBackend(xml, threads=ctx.threads))
        bars = ctx.task.parity_bars
        bar = {"fp32": bars.fp32_min_agreement, "fp16": bars.fp16_min_agreement, "int8": bars.int8_min_agreement}
        ok = parity["agreement"] >= bar[precision]
        parity["passed"] = ok
        reason = "" if ok else f"{ctx.task.name} agreement {parity['agreement']:.2%} with PyTorch is too low"
        records.append(ctx.add(ArtifactRecord(xml, "openvino", precision, shipped=ok, reason=reason,
                                              figures={"conversion": info, "parity": parity})))
    return records
