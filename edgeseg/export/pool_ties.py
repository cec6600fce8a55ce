"""Is an FP32 parity failure of an index-unpooling model (SegNet) explained by near-tied max-pool windows?

Float rounding that differs between PyTorch and ONNX Runtime by ~1e-6 can pick the other of two nearly
equal maxima in a 2x2 window; unpooling then moves a value by one pixel, a large local error that is not
a wrong export. Written by hand: no exporter or runtime checks this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def pool_tie_check(model: torch.nn.Module, path: Path, inputs: list[Any], task: Any, *,
                   threads: int = 1) -> dict[str, Any]:
    """Is an FP32 parity failure explained by near-tied 2x2 max-pool windows? (index-unpooling models)

    The ONNX file is run with every 2x2/2 MaxPool's input as an extra output. Per window, the first
    maximum of ORT's input and of PyTorch's are compared: a window may "flip" only if its two largest
    PyTorch values differ by at most twice the largest PyTorch/ORT difference of that tensor (each value
    moves by at most that much). Then PyTorch runs again with ORT's choices forced into every
    ``max_pool2d`` call (values and indices taken at ORT's positions from PyTorch's own tensor) and is
    compared with ORT through the task's parity.

    Explained (``explained``: True) when every pooled tensor is itself at FP32 parity (difference <=
    the task's ``fp32_max_rel_err`` times the tensor's scale), every flipped window is such a tie, and
    with ORT's choices forced the outputs pass the task's FP32 bar. A genuinely wrong export (wrong
    weights or ops anywhere) fails one of these. ``applies`` is False for graphs without such pools.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort

    from edgeseg.tasks.base import by_name

    proto = onnx.load(str(path))
    pools: list[str] = []
    for node in proto.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type == "MaxPool" and list(attrs.get("kernel_shape", [])) == [2, 2]
                and list(attrs.get("strides", [1, 1])) == [2, 2] and not any(attrs.get("pads", []))
                and node.input[0] not in pools):
            pools.append(node.input[0])
    if not pools:
        return {"applies": False}
    n_out = len(proto.graph.output)
    names = [o.name for o in proto.graph.output]
    for name in pools:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    bars = task.parity_bars
    out_names = list(getattr(model, "output_names", task.output_names))

    def windows(a: np.ndarray) -> np.ndarray:  # N x C x H x W -> N x C x H/2 x W/2 x 4 (row-major window order)
        n, c, h, w = a.shape
        a = a[:, :, : h // 2 * 2, : w // 2 * 2]
        return a.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)

    total = flipped = 0
    max_gap, max_diff, feature_ok, ties_ok = 0.0, 0.0, True, True
    ort_outs, forced_refs, plain_refs = [], [], []
    original = torch.nn.functional.max_pool2d
    for x in inputs:
        res = session.run(None, {session.get_inputs()[0].name: x})
        ort_outs.append(dict(zip(names, res[:n_out])))
        feats = list(res[n_out:])
        calls = iter(range(len(feats)))

        def forced(t: torch.Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                   ceil_mode: bool = False, return_indices: bool = False) -> Any:
            nonlocal total, flipped, max_gap, max_diff, feature_ok, ties_ok
            k = next(calls, None)
            if (k is None or kernel_size not in (2, (2, 2)) or stride not in (2, (2, 2), None) or padding
                    or tuple(feats[k].shape) != tuple(t.shape)):
                raise _NotApplicable
            mine, theirs = t.detach().numpy(), feats[k]
            wm, wt = windows(mine), windows(theirs)
            pick_t, pick_o = wm.argmax(-1), wt.argmax(-1)
            flips = pick_t != pick_o
            top2 = np.sort(wm, -1)[..., -2:]
            gap = top2[..., 1] - top2[..., 0]
            diff = float(np.abs(mine - theirs).max())
            total, flipped = total + flips.size, flipped + int(flips.sum())
            max_diff = max(max_diff, diff)
            feature_ok &= diff <= bars.fp32_max_rel_err * max(float(np.abs(mine).max()), 1e-12)
            if flips.any():
                max_gap = max(max_gap, float(gap[flips].max()))
                ties_ok &= bool((gap[flips] <= 2 * diff).all())
            # PyTorch's values at ORT's choices, and the matching flat indices within each plane.
            n, c, h, w = t.shape
            rows = torch.arange(h // 2).view(1, 1, -1, 1) * 2 + torch.from_numpy(pick_o // 2)
            cols = torch.arange(w // 2).view(1, 1, 1, -1) * 2 + torch.from_numpy(pick_o % 2)
            flat = (rows * w + cols).long()
            values = t.flatten(2).gather(2, flat.flatten(2)).view_as(flat).to(t.dtype)
            return (values, flat) if return_indices else values

        try:
            torch.nn.functional.max_pool2d = forced
            with torch.inference_mode():
                forced_refs.append({k: v.float().numpy() for k, v in by_name(out_names, model(torch.from_numpy(x))).items()})
        except _NotApplicable:
            return {"applies": False}
        finally:
            torch.nn.functional.max_pool2d = original
        with torch.inference_mode():
            plain_refs.append({k: v.float().numpy() for k, v in by_name(out_names, model(torch.from_numpy(x))).items()})
    forced_fig = task.parity(forced_refs, ort_outs, inputs)
    beyond = count = 0
    for ref, out in zip(plain_refs, ort_outs):
        for key, r in ref.items():
            o = np.asarray(out[key], dtype=np.float32)
            tol = bars.fp32_max_rel_err * max(float(np.abs(r).max()), 1e-12)
            beyond, count = beyond + int((np.abs(o - r) > tol).sum()), count + r.size
    explained = bool(feature_ok and ties_ok and flipped > 0 and task.fp32_parity_ok(forced_fig))
    return {"applies": True, "explained": explained, "pooled_tensors": len(pools), "windows": total,
            "flipped": flipped, "max_gap_at_flip": max_gap, "max_feature_diff": max_diff,
            "features_at_parity": bool(feature_ok), "flips_are_ties": bool(ties_ok),
            "outputs_beyond_tol": beyond / max(count, 1), "forced_max_rel_err": forced_fig["max_rel_err"],
            "forced_agreement": forced_fig["agreement"]}


class _NotApplicable(Exception):
    """The model's pooling calls do not line up with the graph's 2x2 MaxPools."""
