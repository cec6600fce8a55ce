"""ONNX -> ONNX Runtime mobile format (.ort) + the operator config a minimal (reduced) ORT build needs.

Uses ``onnxruntime.tools.convert_onnx_models_to_ort`` (fixed optimizations, portable: no NCHWc layout)
on all shipped ONNX files at once, so one ``required_operators.config`` covers them all.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgeseg.artifacts import atomic_write_text
from edgeseg.export.context import ExportContext
from edgeseg.export.formats import ArtifactRecord, ExportError

CONFIG_NAME = "required_operators.config"


def to_ort(onnx_files: list[Path], out_dir: Path) -> tuple[list[Path], Path, str]:
    """Convert ``onnx_files`` into ``out_dir`` (each ``x.onnx`` -> ``x.ort``) plus the operator config.

    Returns:
        (ort files, config file, the converter's log).
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    log = io.StringIO()
    with tempfile.TemporaryDirectory(prefix=".ort-", dir=out_dir) as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        for f in onnx_files:
            shutil.copy2(f, src / f.name)
        tool_log = logging.getLogger("ort_format_model.utils")
        level = tool_log.level
        tool_log.setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(log):
                convert_onnx_models_to_ort(src, output_dir=dst, optimization_styles=[OptimizationStyle.Fixed])
        except Exception as exc:  # noqa: BLE001  (the tool raises bare Exceptions)
            raise ExportError(f"ORT format conversion failed: {type(exc).__name__}: {exc}") from None
        finally:
            tool_log.setLevel(level)
        outputs = []
        for f in onnx_files:
            produced = dst / f.with_suffix(".ort").name
            os.replace(produced, out_dir / produced.name)  # same filesystem: atomic
            outputs.append(out_dir / produced.name)
        # The tool lists the temp paths it converted in comments; name the shipped files instead.
        text = (dst / CONFIG_NAME).read_text().replace(f"{dst}{os.sep}", "")
        atomic_write_text(out_dir / CONFIG_NAME, text)
    return outputs, out_dir / CONFIG_NAME, log.getvalue()


def required_operators(config: Path) -> dict[str, list[str]]:
    """``domain;opset;Op1,Op2`` lines of an operator config -> {"domain:opset": [ops]}."""
    ops: dict[str, list[str]] = {}
    for line in config.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            domain, opset, names = line.split(";")
            ops[f"{domain}:{opset}"] = sorted(names.split(","))
    return ops


def convert(ctx: ExportContext) -> list[ArtifactRecord]:
    """Write model.ort (and model.int8.ort / model.fp16.ort for shipped variants); verify each."""
    sources = {p: path for p, path in ctx.onnx.items()}
    ctx.say(f"converting {', '.join(p.name for p in sources.values())} to the ORT format")
    files, config, _ = to_ort(list(sources.values()), ctx.out)
    ops = required_operators(config)
    records = []
    for (precision, onnx_path), ort_path in zip(sources.items(), files):
        ort_be = ctx.open(ort_path)
        match = ctx.compare(ort_be, reference=ctx.open(onnx_path))
        meta_ok = ort_be.meta.model_name == ctx.meta.model_name and ort_be.meta.precision == precision
        # the .ort holds the same graph, optimised ahead of time: the FP32 bar applies to every precision
        ok = match["agreement"] >= ctx.task.parity_bars.fp32_min_agreement and meta_ok
        figures: dict[str, Any] = {"source": str(onnx_path), "operator_config": str(config),
                                   "required_operators": ops, "match_onnx": match, "metadata_ok": meta_ok,
                                   "parity": ctx.parity(ort_be)}
        reason = "" if ok else "the .ort output or metadata differs from the ONNX file"
        if not ok:
            ctx.say(f"{ort_path.name}: {reason}", note=True)
        records.append(ctx.add(ArtifactRecord(ort_path, "ort", precision, shipped=ok, reason=reason,
                                              figures=figures)))
    return records
