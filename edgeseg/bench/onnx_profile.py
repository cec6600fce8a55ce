"""Parameters and MACs counted from an ONNX graph itself (onnx package, no torch).

The standalone runner uses this on devices without torch; it also profiles ONNX files whose
architecture is not in the registry. Quantised graphs count the same MACs as their FP32 source:
a QDQ graph's convolutions read their weights through DequantizeLinear, and QLinearConv /
ConvInteger are counted like Conv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

_CONVS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}  # op -> (input index, weight index)
_SCALE_NAMES = ("scale", "zero_point")


def onnx_params(model: Any) -> int:
    """Weights in the initialisers: tensors of rank >= 2 and biases (quantisation scales/zero points excluded)."""
    total = 0
    for init in model.graph.initializer:
        dims = list(init.dims)
        if len(dims) >= 2 or (len(dims) == 1 and not any(s in init.name for s in _SCALE_NAMES)):
            total += int(np.prod(dims))
    return total


def _fix_input(model: Any, shape: tuple[int, ...]) -> None:
    """Give the first graph input a static shape so shape inference reaches every tensor."""
    init_names = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in init_names)
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ValueError(f"input {inp.name!r} has rank {len(dims)}; expected {len(shape)} (N x C x H x W)")
    for d, v in zip(dims, shape):
        d.Clear()
        d.dim_value = int(v)


def _shapes(model: Any) -> dict[str, tuple[int, ...]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    shapes: dict[str, tuple[int, ...]] = {i.name: tuple(i.dims) for i in g.initializer}
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    # A QDQ weight is DequantizeLinear(int8 initialiser): same shape as its quantised source.
    for node in g.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in shapes:
            shapes.setdefault(node.output[0], shapes[node.input[0]])
    return shapes


def _runtime_shapes(model: Any, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Shapes of ``names`` from one ONNX Runtime pass on zeros (where static inference gives up, e.g. on
    the data-dependent shapes of an unpooling); empty without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in dict.fromkeys(names) if n not in known)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    dtypes = {"tensor(float16)": np.float16, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}
    dtype = dtypes.get(inp.type, np.float32)
    wanted = [o.name for o in sess.get_outputs()]
    values = sess.run(wanted, {inp.name: np.zeros(shape, dtype=dtype)})
    return {n: tuple(v.shape) for n, v in zip(wanted, values)}


def _node_macs(node: Any, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """MACs of one node, None when a needed shape is unknown; 0 for ops that are not counted."""
    op = node.op_type
    if op in _CONVS:
        xi, wi = _CONVS[op]
        out, w = shapes.get(node.output[0]), shapes.get(node.input[wi])
        if out is None or w is None:
            return None
        return int(np.prod(out)) * int(np.prod(w[1:]))  # each output element: C_in/groups x kH x kW MACs
    if op == "ConvTranspose":
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
        if x is None or w is None:
            return None
        return int(np.prod(x)) * int(np.prod(w[1:]))  # each input element scatters into C_out/groups x kH x kW
    if op in ("MatMul", "MatMulInteger", "Gemm"):
        a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
        if a is None or out is None:
            return None
        k = a[-2] if op == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute) else a[-1]
        return int(np.prod(out)) * int(k)
    return 0


def onnx_figures(path: str | Path, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """``{"params", "gmacs"}`` of an ONNX file at ``input_shape`` (N x C x H x W); counts for batch 1.

    Convolutions, transposed convolutions and matrix products are counted (as ``count_macs`` does for
    the PyTorch model). ``gmacs`` is None when shape inference leaves a counted node's shape unknown.
    """
    import onnx

    from edgeseg.artifacts.onnx_safety import check_external_data

    model = onnx.load(str(path), load_external_data=False)
    check_external_data(path, model)  # the shape pass below runs the graph in ONNX Runtime
    params = onnx_params(model)
    _fix_input(model, (1, *input_shape[1:]))
    shapes = _shapes(model)
    if any(_node_macs(n, shapes) is None for n in model.graph.node):
        needed = [t for n in model.graph.node if n.op_type in (*_CONVS, "ConvTranspose", "MatMul",
                                                                "MatMulInteger", "Gemm")
                  for t in (*n.input, n.output[0]) if t and t not in shapes]
        try:
            shapes.update(_runtime_shapes(model, needed))
        except Exception:  # noqa: BLE001  (the count stays partial and says so below)
            pass
    total, unknown = 0, []
    for node in model.graph.node:
        macs = _node_macs(node, shapes)
        if macs is None:
            unknown.append(node.name or node.op_type)
        else:
            total += macs
    figures: dict[str, Any] = {"params": params, "gmacs": None if unknown else round(total / 1e9, 4),
                               "profile_source": "onnx graph"}
    if unknown:
        figures["profile_error"] = f"shape inference left {len(unknown)} node(s) unsized, e.g. {unknown[0]}"
    return figures
