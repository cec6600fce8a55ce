"""Make a QAT Q/DQ ONNX graph take ONNX Runtime's fused INT8 kernels, without changing what it computes.

Written by hand because no tool does this rewrite: ONNX Runtime's quantizer places Q/DQ itself (it would
re-calibrate, i.e. run PTQ again on a QAT model), and onnxslim's constant folding would fold the weights'
DequantizeLinear away. What the TorchScript export of NNCF's fake quantizers leaves, and why ONNX Runtime
then keeps convs in float (measured on a pruned U-Net: 10 of 19 convs fused, INT8 slower than FP32):

- weights as ``DequantizeLinear(QuantizeLinear(W_float))`` and zero points behind ``Identity`` nodes (the
  exporter's deduplicated constants): ORT's QDQ selectors want constant int8 initializers, so they are
  folded here (``QuantizeLinear`` of constants computed in numpy, as ONNX defines it: round half to even,
  saturate);
- ``Concat(DQ(a), DQ(b)) -> Conv``: NNCF quantizes the concat's inputs with one unified scale and zero
  point and nothing after it, so the conv sees a float input; a ``Q -> DQ`` pair with that same scale is
  inserted after the concat. It is exact: every value of the concat is already on that grid.
- ``Conv -> Relu -> Q`` where the quantizer's zero point is not the type's minimum (NNCF unified the
  ReLU's scale with the concat's other, signed input): ORT folds a ReLU into its INT8 conv only when the
  zero point clips it, so the conv stays float. A ``Q -> DQ`` with the same grid is inserted between conv
  and ReLU; also exact (``Q(relu(DQ(Q(x)))) == Q(relu(x))`` on one grid), and the conv fuses.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in graph.initializer}


def graph_index(graph: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(tensor -> producing node, tensor -> consuming nodes) of ``graph``."""
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return producers, consumers


def _resolve(name: str, values: dict[str, np.ndarray], producers: dict[str, Any]) -> np.ndarray | None:
    """The constant value of tensor ``name`` (initializer, Constant node, or Identity of one), else None."""
    from onnx import numpy_helper

    if name in values:
        return values[name]
    node = producers.get(name)
    if node is None:
        return None
    if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
        return numpy_helper.to_array(node.attribute[0].t)
    if node.op_type == "Identity":
        return _resolve(node.input[0], values, producers)
    return None


def quantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int = 1) -> np.ndarray:
    """ONNX ``QuantizeLinear`` in numpy: ``saturate(round_half_even(x / scale) + zero_point)``."""
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * x.ndim
        shape[axis] = scale.size
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    info = np.iinfo(zero_point.dtype)
    # float32 division, as ONNX Runtime's kernel does it (float64 rounds some halves the other way)
    q = np.rint(x.astype(np.float32) / scale.astype(np.float32)).astype(np.int64) + zero_point.astype(np.int64)
    return np.clip(q, info.min, info.max).astype(zero_point.dtype)


def fold_constant_quantizers(model: Any) -> Counter:
    """Fold ``QuantizeLinear``/``Identity``/``Constant`` nodes whose inputs are all constants into initializers."""
    from onnx import helper, numpy_helper

    graph, counts = model.graph, Counter()
    values = _constants(graph)
    producers = {o: n for n in graph.node for o in n.output}
    graph_outputs = {o.name for o in graph.output}
    kept = []
    for node in graph.node:
        folded = None
        if node.op_type in ("Identity", "Constant") and node.output[0] not in graph_outputs:
            folded = _resolve(node.output[0], values, producers)
        elif node.op_type == "QuantizeLinear" and len(node.input) == 3:
            x, scale, zp = (_resolve(n, values, producers) for n in node.input)
            if x is not None and scale is not None and zp is not None:
                axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
                folded = quantize_linear(x, scale, zp, axis)
        if folded is None:
            kept.append(node)
            continue
        values[node.output[0]] = folded
        graph.initializer.append(numpy_helper.from_array(folded, node.output[0]))
        counts[node.op_type] += 1
    del graph.node[:]
    graph.node.extend(kept)
    remove_unused_initializers(model)
    return counts


def requantize_concats(model: Any) -> int:
    """After each ``Concat`` of DequantizeLinear outputs sharing one scale and zero point, insert Q -> DQ.

    Only where the concat feeds something other than a QuantizeLinear (already quantized) or a graph
    output. Returns how many pairs were inserted.
    """

    graph = model.graph
    values, (producers, consumers) = _constants(graph), graph_index(graph)
    graph_outputs = {o.name for o in graph.output}
    inserted, nodes = 0, []
    for node in graph.node:
        nodes.append(node)
        if node.op_type != "Concat" or node.output[0] in graph_outputs:
            continue
        users = consumers.get(node.output[0], [])
        if not users or all(u.op_type == "QuantizeLinear" for u in users):
            continue
        grids = []
        for name in node.input:
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) != 3:
                break
            scale, zp = _resolve(dq.input[1], values, producers), _resolve(dq.input[2], values, producers)
            if scale is None or zp is None or scale.size != 1:
                break
            grids.append((dq.input[1], dq.input[2], float(scale), int(zp), zp.dtype))
        else:
            first = grids[0]
            if any(g[2:] != first[2:] for g in grids[1:]):
                continue  # different grids: requantizing would round (PTQ's job, not this exact rewrite)
            out = node.output[0]
            dq_out = _append_qdq(nodes, out, first[0], first[1])
            for user in users:
                for i, name in enumerate(user.input):
                    if name == out:
                        user.input[i] = dq_out
            inserted += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return inserted


def requantize_before_relus(model: Any) -> int:
    """Insert ``Q -> DQ`` between a ``Conv`` and its ``Relu`` when the ReLU's only consumers are quantizers
    on one grid whose zero point is above the type's minimum. Returns how many pairs were inserted."""

    graph = model.graph
    values, (producers, consumers) = _constants(graph), graph_index(graph)
    inserted, nodes = 0, []
    for node in graph.node:
        if node.op_type == "Relu":
            conv = producers.get(node.input[0])
            users = consumers.get(node.output[0], [])
            grid = _one_grid(users, values, producers) if users and all(
                u.op_type == "QuantizeLinear" and len(u.input) == 3 for u in users) else None
            if (conv is not None and conv.op_type == "Conv" and len(consumers.get(conv.output[0], [])) == 1
                    and grid is not None and int(grid[3]) > np.iinfo(grid[3].dtype).min):
                node.input[0] = _append_qdq(nodes, node.input[0], grid[0], grid[1])
                inserted += 1
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return inserted


def _append_qdq(nodes: list[Any], tensor: str, scale: str, zero_point: str) -> str:
    """Append ``Q -> DQ`` of ``tensor`` on the grid (``scale``, ``zero_point``); returns the DQ output."""
    from onnx import helper

    q_out, dq_out = f"{tensor}_requant_q", f"{tensor}_requant"
    nodes.append(helper.make_node("QuantizeLinear", [tensor, scale, zero_point], [q_out], name=q_out))
    nodes.append(helper.make_node("DequantizeLinear", [q_out, scale, zero_point], [dq_out], name=dq_out))
    return dq_out


def _one_grid(quantizers: list[Any], values: dict[str, np.ndarray], producers: dict[str, Any]
              ) -> tuple[str, str, float, np.ndarray] | None:
    """(scale name, zero-point name, scale, zero point) shared by all ``quantizers``, or None."""
    grids = []
    for q in quantizers:
        scale, zp = _resolve(q.input[1], values, producers), _resolve(q.input[2], values, producers)
        if scale is None or zp is None or scale.size != 1:
            return None
        grids.append((q.input[1], q.input[2], float(scale), zp.reshape(())))
    first = grids[0]
    if any(g[2] != first[2] or g[3] != first[3] or g[3].dtype != first[3].dtype for g in grids[1:]):
        return None
    return first


def remove_unused_initializers(model: Any) -> int:
    """Drop initializers no node reads (the float weights once their quantized copies are folded)."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    removed = len(graph.initializer) - len(keep)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return removed


def prepare_for_onnxruntime(model: Any) -> dict[str, int]:
    """Both rewrites, in place; returns what was done (for export.json)."""
    folded = fold_constant_quantizers(model)
    return {"folded_constants": sum(folded.values()), "folded_weight_quantizers": folded["QuantizeLinear"],
            "concat_requantizers": requantize_concats(model), "relu_requantizers": requantize_before_relus(model)}


__all__ = ["fold_constant_quantizers", "graph_index", "prepare_for_onnxruntime", "quantize_linear",
           "remove_unused_initializers", "requantize_before_relus", "requantize_concats"]
