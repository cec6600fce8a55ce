"""The FORMATS and PRECISIONS tables (the only dispatch of `export`) and the records every converter returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgeseg.catalog import kind_suffixes
from edgeseg.errors import ExportError

if TYPE_CHECKING:
    from edgeseg.export.context import ExportContext


Converter = Callable[["ExportContext"], "list[ArtifactRecord]"]


def load_converter(spec: str) -> Converter:
    """The function a ``"module:function"`` spec names (imported on first use)."""
    module, func = spec.split(":")
    return getattr(import_module(module), func)


@dataclass(frozen=True)
class Format:
    """One export target: whether it needs a GPU to build, whether it has INT8, its converter.

    ``converter`` is ``"module:function"``; the function takes the :class:`ExportContext` and returns
    the :class:`ArtifactRecord` list it produced (shipped or not).
    """

    name: str
    needs_gpu: bool
    supports_int8: bool
    converter: str
    description: str = ""

    @property
    def suffix(self) -> str:
        """Main file suffix of this format (from the one suffix table, ``edgeseg.artifacts.ARTIFACT_KINDS``)."""
        return kind_suffixes(self.name)[0]

    def load(self) -> Converter:
        return load_converter(self.converter)


# Order matters: every other format is converted from the ONNX files the "onnx" entry writes.
FORMATS: dict[str, Format] = {
    "onnx": Format("onnx", False, True, "edgeseg.export.formats:convert_onnx",
                   "ONNX (FP32 reference, FP16, INT8 QDQ) for ONNX Runtime and any ONNX consumer"),
    "ort": Format("ort", False, True, "edgeseg.export.onnx2ort:convert",
                  "ONNX Runtime mobile format + required_operators.config for minimal builds"),
    "tensorrt": Format("tensorrt", True, True, "edgeseg.export.onnx2trt:convert",
                       "TensorRT engine where TensorRT + GPU exist; always a Jetson build kit"),
    "openvino": Format("openvino", False, True, "edgeseg.export.onnx2openvino:convert",
                       "OpenVINO IR (.xml + .bin) where the openvino package is installed"),
    "executorch": Format("executorch", False, True, "edgeseg.export.torch2executorch:convert",
                         "ExecuTorch program (XNNPACK) for Android/iOS + phone kit (executorch extra)"),
}
# precision -> converter writing its ONNX file. Order matters: FP16 and INT8 are converted from FP32.
PRECISIONS: dict[str, str] = {
    "fp32": "edgeseg.export.torch2onnx:convert",
    "fp16": "edgeseg.export.onnx2fp16:convert",
    "int8": "edgeseg.export.onnx2int8:convert",
}


def convert_onnx(ctx: ExportContext) -> list[ArtifactRecord]:
    """The ``onnx`` format: one ONNX file per precision asked for, FP32 first (the precision fan-out)."""
    records: list[ArtifactRecord] = []
    for precision in ctx.precisions:  # resolve_precisions keeps the PRECISIONS order
        records += load_converter(PRECISIONS[precision])(ctx)
    return records


def resolve_formats(formats: list[str] | None) -> list[Format]:
    """Known formats in dispatch order, ONNX first (the others are built from it)."""
    names = list(dict.fromkeys(["onnx", *(formats or [])]))
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format {unknown[0]!r}; expected one of {', '.join(FORMATS)}")
    return [FORMATS[n] for n in FORMATS if n in names]


def resolve_precisions(precisions: list[str] | None) -> list[str]:
    """fp32 always (it is the parity and accuracy reference), plus what was asked."""
    names = list(dict.fromkeys(["fp32", *(precisions or [])]))
    unknown = [p for p in names if p not in PRECISIONS]
    if unknown:
        raise ExportError(f"unknown precision {unknown[0]!r}; expected one of {', '.join(PRECISIONS)}")
    return [p for p in PRECISIONS if p in names]


@dataclass
class ArtifactRecord:
    """One row of export.json's ``artifacts``: where, what, shipped or not and why, plus figures."""

    path: Path
    format: str
    precision: str
    shipped: bool = True
    reason: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        figures = d.pop("figures")
        d["path"] = str(self.path)
        if self.path.is_file():
            d["size_bytes"] = self.path.stat().st_size
        return {**d, **figures}
