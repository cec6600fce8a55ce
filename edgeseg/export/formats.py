"""The FORMATS table (the only dispatch of `export`) and the records every converter returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgeseg.errors import UserError

if TYPE_CHECKING:
    from edgeseg.export.context import ExportContext


class ExportError(UserError, RuntimeError):
    """An export cannot be done or failed its checks; the message says which and what to do."""


@dataclass(frozen=True)
class Format:
    """One export target: file suffix, whether it needs a GPU to build, whether it has INT8.

    ``converter`` is ``"module:function"``; the function takes the :class:`ExportContext` and returns
    the :class:`ArtifactRecord` list it produced (shipped or not).
    """

    name: str
    suffix: str
    needs_gpu: bool
    supports_int8: bool
    converter: str
    description: str = ""

    def load(self) -> Callable[[ExportContext], list[ArtifactRecord]]:
        module, func = self.converter.split(":")
        return getattr(import_module(module), func)


# Order matters: every other format is converted from the ONNX files the "onnx" entry writes.
FORMATS: dict[str, Format] = {
    "onnx": Format("onnx", ".onnx", False, True, "edgeseg.export.torch2onnx:convert",
                   "ONNX (FP32 reference, FP16, INT8 QDQ) for ONNX Runtime and any ONNX consumer"),
    "ort": Format("ort", ".ort", False, True, "edgeseg.export.onnx2ort:convert",
                  "ONNX Runtime mobile format + required_operators.config for minimal builds"),
    "tensorrt": Format("tensorrt", ".engine", True, True, "edgeseg.export.onnx2trt:convert",
                       "TensorRT engine where TensorRT + GPU exist; always a Jetson build kit"),
    "openvino": Format("openvino", ".xml", False, True, "edgeseg.export.onnx2openvino:convert",
                       "OpenVINO IR (.xml + .bin) where the openvino package is installed"),
}
PRECISIONS = ("fp32", "fp16", "int8")


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
