"""Export's view of the catalog's FORMATS and PRECISIONS tables (the only dispatch of `export`), the
precision fan-out of the ``onnx`` format, and the records every converter returns.

Names, suffixes, descriptions and converter specs live in :mod:`edgeseg.catalog`; this module only
turns a ``"module:function"`` spec into the function when an export runs it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgeseg.catalog import FORMATS, PRECISIONS
from edgeseg.catalog import FormatRecord as Format
from edgeseg.errors import ExportError

if TYPE_CHECKING:
    from edgeseg.export.context import ExportContext


Converter = Callable[["ExportContext"], "list[ArtifactRecord]"]


def load_converter(spec: str) -> Converter:
    """The function a ``"module:function"`` spec names (imported on first use)."""
    module, func = spec.split(":")
    return getattr(import_module(module), func)


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
