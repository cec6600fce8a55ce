"""PyTorch -> ONNX file: dynamo exporter first, TorchScript exporter as a reported fallback, onnxslim after.

The low half of export (``edgeseg export`` checks parity and converts precisions on top of it,
:mod:`edgeseg.export.torch2onnx`); it sits under the artifacts so that compress (prune's latency probe)
and export both call it without compress importing the export verb.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch

from edgeseg.artifacts.metadata import ModelMeta, embed_onnx
from edgeseg.artifacts.onnx_io import PROTOBUF_LIMIT, save_onnx
from edgeseg.errors import ExportError
from edgeseg.quiet import first_line, quiet_tools

INPUT_NAME = "input"
INPUT_AXES = {0: "batch", 2: "height", 3: "width"}


def _dynamo_export(model: torch.nn.Module, x: torch.Tensor, opset: int, dynamic: bool,
                   output_names: list[str]) -> Any:
    # dynamo derives the outputs' dynamic axes from the input's
    dynamic_shapes = (INPUT_AXES,) if dynamic else None
    # The exporter logs its opset up/down-conversion and prints progress; the result is checked instead.
    with quiet_tools("onnxscript", "onnx_ir", "torch.onnx", "torch.export"):
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                                    output_names=output_names, dynamic_shapes=dynamic_shapes, optimize=True,
                                    verbose=False)
    return program.model_proto


def _torchscript_export(model: torch.nn.Module, x: torch.Tensor, opset: int, dynamic: bool,
                        output_axes: dict[str, dict[int, str]]) -> Any:
    import onnx

    output_names = list(output_axes)
    dynamic_axes = {INPUT_NAME: INPUT_AXES, **output_axes} if dynamic else None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation warning; the fallback itself is reported
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def export_onnx(model: torch.nn.Module, meta: ModelMeta, path: Path, *, hw: tuple[int, int], opset: int = 17,
                dynamic: bool = True, simplify: bool = True, precision: str = "fp32") -> dict[str, Any]:
    """Export ``model`` to ``path`` (atomically) with ``meta`` in ``metadata_props``.

    Args:
        model: Model in eval mode (CPU).
        meta: Metadata to embed.
        path: Output ``.onnx`` file.
        hw: Example input size (also the fixed size when ``dynamic`` is False).
        opset: ONNX opset.
        dynamic: Dynamic input axes named batch/height/width; the outputs' dynamic axes follow from
            them (named by the task when the TorchScript fallback runs).
        simplify: Run onnxslim on the graph.
        precision: Precision recorded in the metadata.

    Returns:
        Figures: exporter used, fallback reason ('' if none), opset, node counts, simplification.
    """
    import onnx

    from edgeseg.tasks import get_task

    task = get_task(meta.task)
    output_names = list(getattr(model, "output_names", task.output_names))
    x = torch.randn(1, meta.in_channels, *hw)
    info: dict[str, Any] = {"exporter": "dynamo", "fallback_reason": "", "opset": opset, "dynamic": dynamic}
    try:
        proto = _dynamo_export(model, x, opset, dynamic, output_names)
    except Exception as exc:  # noqa: BLE001  (any dynamo failure -> TorchScript fallback, reported)
        info.update(exporter="torchscript", fallback_reason=first_line(exc))
        try:
            proto = _torchscript_export(model, x, opset, dynamic, {n: task.output_axes(n) for n in output_names})
        except Exception as exc2:  # noqa: BLE001
            raise ExportError(f"ONNX export failed with both exporters: dynamo ({info['fallback_reason']}); "
                              f"torchscript ({first_line(exc2)})") from exc2
    info["opset"] = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    info["nodes_exported"] = len(proto.graph.node)
    if simplify:
        try:
            import onnxslim

            proto = onnxslim.slim(proto)
            info["simplified"] = "onnxslim"
        except Exception as exc:  # noqa: BLE001  (an unsimplified graph still works; say so)
            info["simplified"] = f"no (onnxslim failed: {first_line(exc)})"
    info["nodes"] = len(proto.graph.node)
    info["op_types"] = sorted({n.op_type for n in proto.graph.node})
    embed_onnx(proto, meta, precision)
    onnx.checker.check_model(proto) if proto.ByteSize() < PROTOBUF_LIMIT else None
    save_onnx(proto, path)
    return info
