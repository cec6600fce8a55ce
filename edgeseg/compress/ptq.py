"""Post-training static INT8 quantization of ONNX models to QDQ, over ONNX Runtime's quantizer.

Calibration runs once (:func:`calibrate`, streamed in chunks so entropy/percentile histograms never
hold more than a chunk of activations); the same tensor ranges then feed several quantizations
(:func:`quantize`) with target-specific :class:`QuantSettings`, and the TensorRT calibration cache.

Why two settings: on x86 CPUs without VNNI, ONNX Runtime's INT8 kernels are fastest with uint8
activations x int8 weights (measured here, U-Net 256x256, 2 threads: 1.80x faster than FP32, symmetric
int8 activations 1.61x), with 7-bit weights (``reduce_range``, no measurable cost here) so the AVX2
u8*s8 pair sums cannot saturate. TensorRT wants symmetric int8 activations and weights, and no INT8
ConvTranspose.
"""

from __future__ import annotations

import enum
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class CalibMethod(str, enum.Enum):
    """How activation ranges are derived from calibration data."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"

    def ort(self) -> Any:
        from onnxruntime.quantization import CalibrationMethod

        return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile}[self.value]

    @property
    def chunk(self) -> int:
        """Images per collection pass: histogram methods hold full activations of a chunk in memory."""
        return 16 if self is CalibMethod.MINMAX else 4


@dataclass(frozen=True)
class QuantSettings:
    """How an FP32 ONNX model becomes a QDQ INT8 model for one target runtime.

    Attributes:
        target: Runtime the artifact is for (recorded in export.json).
        activation_type: ``uint8`` or ``int8``.
        activation_symmetric: Zero-point 0 for activations (TensorRT needs it).
        reduce_range: 7-bit weights (no u8*s8 saturation on AVX2 without VNNI).
        per_channel: Per-output-channel weight scales.
        exclude_depthwise: Keep depthwise convolutions in float.
        exclude_op_types: Operator types kept in float (e.g. ConvTranspose for TensorRT).
        dedicated_qdq_pair: One Q/DQ pair per consumer (what TensorRT's fusions expect).
    """

    target: str
    activation_type: str = "uint8"
    activation_symmetric: bool = False
    reduce_range: bool = True
    per_channel: bool = True
    exclude_depthwise: bool = False
    exclude_op_types: tuple[str, ...] = ()
    dedicated_qdq_pair: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exclude_op_types": list(self.exclude_op_types)}


CPU_SETTINGS = QuantSettings("onnxruntime-cpu")
TENSORRT_SETTINGS = QuantSettings("tensorrt", activation_type="int8", activation_symmetric=True, reduce_range=False,
                                  exclude_op_types=("ConvTranspose", "Resize"), dedicated_qdq_pair=True)


def calibrate(model_path: str | Path, batches: Iterable[np.ndarray], *, method: CalibMethod | str = "minmax",
              input_name: str = "input", total: int | None = None) -> Any:
    """Activation ranges of every float tensor of ``model_path`` over ``batches``.

    Args:
        model_path: FP32 ONNX model.
        batches: Normalised 1 x C x H x W arrays (consumed lazily, chunk by chunk).
        method: minmax | entropy | percentile.
        input_name: The model's input name.
        total: Number of batches, for the progress bar.

    Returns:
        ``onnxruntime.quantization.calibrate.TensorsData`` (tensor name -> lowest/highest).
    """
    from onnxruntime.quantization.calibrate import create_calibrator

    from edgeseg.compress.calibration import ArrayReader, chunked
    from edgeseg.progress import track

    method = CalibMethod(method)
    with tempfile.TemporaryDirectory(prefix="edgeseg-calib-") as tmp:
        # op_types_to_calibrate=None: every float tensor, so TensorRT's cache covers each layer too.
        calibrator = create_calibrator(Path(model_path), None, augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                       calibrate_method=method.ort(), extra_options={"symmetric": False})
        for chunk in chunked(track(batches, total=total, description=f"calibrating ({method.value})"),
                             method.chunk):
            calibrator.collect_data(ArrayReader(input_name, chunk))
        ranges = calibrator.compute_data()
        del calibrator
    return ranges


def tensor_amax(ranges: Any) -> dict[str, float]:
    """max(|lowest|, |highest|) per tensor: the symmetric range TensorRT scales are made from."""
    out = {}
    for name in ranges:
        lo, hi = ranges[name].range_value
        out[name] = float(max(abs(float(np.max(np.abs(lo)))), abs(float(np.max(np.abs(hi))))))
    return out


def self_comparison_nodes(model: Any, max_depth: int = 8) -> dict[str, str]:
    """Nodes that read a tensor on either side of an ``Equal`` comparing a tensor with a function of itself.

    SegNet's mask unpooling computes ``x == resize(maxpool(x))``. Quantized, the path's MaxPool/Resize
    get their own int8 grids, or one side is read through a Q/DQ pair that another consumer of the same
    tensor asked for (ONNX Runtime quantizes a tensor for all its readers; the exporter merges the mask's
    Resize with the unpooling's): the two sides are no longer the same numbers, the mask loses its
    maxima and the unpooling breaks (seen: 79% agreement with every conv in float). Every reader of
    those tensors stays float, so both sides are the same values (on ``x``'s own grid when the conv
    producing ``x`` is quantized).
    """
    from edgeseg.compress.qdq_graph import graph_index

    producers, readers = graph_index(model.graph)
    out: dict[str, str] = {}
    for eq in (n for n in model.graph.node if n.op_type == "Equal"):
        for source, derived in ((eq.input[0], eq.input[1]), (eq.input[1], eq.input[0])):
            path, tensor = [], derived
            while tensor != source and tensor in producers and len(path) < max_depth:
                path.append(producers[tensor])
                tensor = path[-1].input[0] if path[-1].input else ""
            if tensor != source or not path:
                continue
            why = f"reads one side of {eq.name}, a comparison of a tensor with itself (unpooling mask)"
            for name in [source, *(n.output[0] for n in path)]:
                for node in readers.get(name, []):
                    if node is not eq and (node in path or node.op_type not in WEIGHTED_OPS):
                        out[node.name] = why
    return out


def float_comparison_paths(model: Any, max_depth: int = 8) -> int:
    """Read the float outputs of the max-pool/resize path feeding each ``Equal`` (see
    :func:`self_comparison_nodes`) where ONNX Runtime's quantizer put a Q/DQ pair on them for another
    reader (a conv after the pool): requantized on the pool output's own grid they would no longer equal
    the tensor they are compared with. Returns how many inputs were reconnected."""
    producers = {o: n for n in model.graph.node for o in n.output}
    path_ops = {"MaxPool", "Resize"}
    fixed = 0
    for eq in (n for n in model.graph.node if n.op_type == "Equal"):
        for node, k in ((eq, 0), (eq, 1)):
            for _ in range(max_depth):
                dq = producers.get(node.input[k])
                q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
                if q is not None and q.op_type == "QuantizeLinear" and getattr(producers.get(q.input[0]), "op_type",
                                                                                "") in path_ops:
                    node.input[k] = q.input[0]
                    fixed += 1
                    continue
                nxt = producers.get(node.input[k])
                if nxt is None or nxt.op_type not in path_ops:
                    break
                node, k = nxt, 0
    return fixed


def comparison_only_resizes(model: Any) -> dict[str, str]:
    """Resize nodes read only by ``Equal``: SegNet's mask upsamples a window max to compare it with the
    tensor itself. Resize keeps its input's int8 grid either way; a Q/DQ pair on its output would only add
    a full-resolution pass before a comparison that reads float (measured: pruned SegNet INT8 8% faster)."""
    from edgeseg.compress.qdq_graph import graph_index

    _, readers = graph_index(model.graph)
    return {n.name: "only read by a comparison (unpooling mask): a Q/DQ pair there buys nothing"
            for n in model.graph.node
            if n.op_type == "Resize" and readers.get(n.output[0]) and
            all(r.op_type == "Equal" for r in readers[n.output[0]])}


# Ops whose int8 output keeps the input's grid (ONNX Runtime's quantizer gives them the input's scale and
# zero point): a comparison of a tensor with a max-pool/resize of itself stays exact through them.
GRID_KEEPING_OPS = frozenset({"MaxPool", "Resize"})


def inexact_comparisons(model: Any) -> list[str]:
    """``Equal`` nodes of a QDQ model comparing a tensor with a max-pool/resize of itself whose two sides
    do not see that tensor on the same grid (float on one side, or two different int8 grids).

    Each side is followed back through Q/DQ, MaxPool and Resize to the tensor it starts from; the
    comparison is exact when both sides start from the same tensor and every Q/DQ on either side uses
    one and the same (scale, zero point), or none does.
    """
    from onnx import numpy_helper

    from edgeseg.compress.qdq_graph import graph_index

    producers, _ = graph_index(model.graph)
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}

    def grid(node: Any) -> tuple[float, int]:
        zp = values.get(node.input[2]) if len(node.input) > 2 else None
        return float(values[node.input[1]].reshape(-1)[0]), int(zp.reshape(-1)[0]) if zp is not None else 0

    def side(tensor: str) -> tuple[str, frozenset[tuple[float, int]]]:
        grids: set[tuple[float, int]] = set()
        node = producers.get(tensor)
        while node is not None and (node.op_type in QDQ_OPS or node.op_type in GRID_KEEPING_OPS):
            if node.op_type in QDQ_OPS:
                if node.input[1] not in values:  # a computed scale: cannot tell, call it its own grid
                    grids.add((float("nan"), len(grids)))
                else:
                    grids.add(grid(node))
            tensor = node.input[0]
            node = producers.get(tensor)
        return tensor, frozenset(grids)

    out = []
    for eq in (n for n in model.graph.node if n.op_type == "Equal"):
        (root_a, grids_a), (root_b, grids_b) = side(eq.input[0]), side(eq.input[1])
        if root_a == root_b and (grids_a != grids_b or len(grids_a) > 1):
            out.append(eq.name)
    return out


def excluded_nodes(model: Any, settings: QuantSettings, extra: Iterable[str] | dict[str, str] = ()) -> dict[str, str]:
    """Node name -> why it stays in float, for ``model`` under ``settings`` (``extra``: names, or names -> why)."""
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    out = comparison_only_resizes(model)
    out.update(dict(extra) if isinstance(extra, dict) else {name: "user exclusion" for name in extra})
    for node in model.graph.node:
        if node.op_type in settings.exclude_op_types:
            out[node.name] = f"{node.op_type} kept in float for {settings.target}"
        elif settings.exclude_depthwise and node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            w = shapes.get(node.input[1])
            if group > 1 and w is not None and w[1] == 1:
                out[node.name] = "depthwise convolution"
    return out


def quantize(model_path: str | Path, out_path: str | Path, ranges: Any, settings: QuantSettings, *,
             method: CalibMethod | str = "minmax", exclude: Iterable[str] | dict[str, str] = ()) -> dict[str, Any]:
    """Write a QDQ INT8 model from precomputed ``ranges`` (no recalibration).

    Returns:
        Figures: settings, excluded nodes with reasons, quantized / float weighted-node counts.
    """
    import onnx

    method = CalibMethod(method)
    model = onnx.load(str(model_path))
    skip = excluded_nodes(model, settings, exclude)
    _quantize_static(model_path, out_path, ranges, settings, method, skip)
    quantized = onnx.load(str(out_path))
    comparisons: dict[str, Any] = {"equal_nodes": sum(n.op_type == "Equal" for n in model.graph.node)}
    inexact = inexact_comparisons(quantized)
    if inexact:
        # Mixed precision (a float conv before the pool) or a new graph form: the two sides of a comparison
        # see different numbers and the unpooling mask would lose its maxima. Keep the comparison paths in
        # float and read the pools' float outputs instead.
        skip.update(self_comparison_nodes(model))
        _quantize_static(model_path, out_path, ranges, settings, method, skip)
        quantized = onnx.load(str(out_path))
        comparisons.update(inexact_on_shared_grid=inexact, float_comparison_inputs=float_comparison_paths(quantized))
        onnx.save(quantized, str(out_path))
        left = inexact_comparisons(quantized)
        if left:
            raise RuntimeError(f"comparisons {left} still see two different grids after keeping their paths float")
    return {"settings": settings.to_dict(), "calibration_method": method.value, **quantized_counts(quantized),
            "excluded": skip, "comparisons": comparisons}


def _quantize_static(model_path: str | Path, out_path: str | Path, ranges: Any, settings: QuantSettings,
                     method: CalibMethod, skip: dict[str, str]) -> None:
    """ONNX Runtime's ``quantize_static`` from precomputed ``ranges``, ``skip`` left in float."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    act = QuantType.QUInt8 if settings.activation_type == "uint8" else QuantType.QInt8
    extra = {"ActivationSymmetric": settings.activation_symmetric, "WeightSymmetric": True,
             "DedicatedQDQPair": settings.dedicated_qdq_pair}
    with tempfile.TemporaryDirectory(prefix="edgeseg-ptq-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, cache)
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # ORT logs a "pre-process first" warning per call
        try:
            quantize_static(str(model_path), str(out_path), None, quant_format=QuantFormat.QDQ,
                            per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                            activation_type=act, weight_type=QuantType.QInt8, nodes_to_exclude=list(skip),
                            calibrate_method=method.ort(), extra_options=extra, calibration_cache_path=cache)
        finally:
            logging.getLogger().setLevel(quiet)


# Ops whose output is on its input's int8 grid (ORT's QDQ propagation moves DQ after them).
QDQ_TRANSPARENT_OPS = frozenset({"MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"})


def quantized_counts(model: Any) -> dict[str, Any]:
    """How many weighted nodes (Conv, ConvTranspose, Gemm, MatMul) run in INT8 vs float in a QDQ model.

    A node counts as quantized when both its data and weight inputs come from DequantizeLinear, directly
    or through ops ONNX Runtime moves the DequantizeLinear across (a max-pool of int8 values is the int8
    max-pool: its QDQ propagation does that before fusing the conv).
    """
    producers = {o: n for n in model.graph.node for o in n.output}

    def from_dq(tensor: str) -> bool:
        node = producers.get(tensor)
        while node is not None and node.op_type in QDQ_TRANSPARENT_OPS:
            node = producers.get(node.input[0])
        return node is not None and node.op_type == "DequantizeLinear"

    quantized: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type in WEIGHTED_OPS and len(node.input) > 1:
            is_q = all(from_dq(t) for t in node.input[:2])
            (quantized if is_q else skipped)[node.op_type] += 1
    return {"quantized_nodes": sum(quantized.values()), "skipped_nodes": sum(skipped.values()),
            "quantized_by_op": dict(quantized), "skipped_by_op": dict(skipped),
            "qdq_nodes": sum(n.op_type in QDQ_OPS for n in model.graph.node)}
