"""Is an FP32 parity failure of an index-unpooling model (SegNet) explained by near-tied max-pool windows?

Float rounding that differs between PyTorch and ONNX Runtime by ~1e-6 can pick the other of two nearly
equal maxima in a 2x2 window; unpooling then moves a value by one pixel, a large local error that is not
a wrong export. Written by hand: no exporter or runtime checks this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
    import onnx

    proto = onnx.load(str(path))
    pools = _pooled_tensors(proto)
    if not pools:
        return {"applies": False}
    run = _session_with_pool_inputs(proto, pools, threads)
    stats = _TieStats(task.parity_bars.fp32_max_rel_err)
    out_names = list(getattr(model, "output_names", task.output_names))
    ort_outs, forced_refs, plain_refs = [], [], []
    for x in inputs:
        outs, feats = run(x)
        ort_outs.append(outs)
        try:
            forced_refs.append(_outputs(model, out_names, x, pool=_forced_pool(feats, stats)))
        except _NotApplicable:
            return {"applies": False}
        plain_refs.append(_outputs(model, out_names, x))
    forced_fig = task.parity(forced_refs, ort_outs, inputs)
    explained = bool(stats.feature_ok and stats.ties_ok and stats.flipped > 0 and task.fp32_parity_ok(forced_fig))
    return {"applies": True, "explained": explained, "pooled_tensors": len(pools), "windows": stats.total,
            "flipped": stats.flipped, "max_gap_at_flip": stats.max_gap, "max_feature_diff": stats.max_diff,
            "features_at_parity": bool(stats.feature_ok), "flips_are_ties": bool(stats.ties_ok),
            "outputs_beyond_tol": _share_beyond_tol(plain_refs, ort_outs, task.parity_bars.fp32_max_rel_err),
            "forced_max_rel_err": forced_fig["max_rel_err"], "forced_agreement": forced_fig["agreement"]}


def _pooled_tensors(proto: Any) -> list[str]:
    """Inputs of the graph's 2x2 stride-2 unpadded MaxPools, in graph order."""
    import onnx

    pools: list[str] = []
    for node in proto.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type == "MaxPool" and list(attrs.get("kernel_shape", [])) == [2, 2]
                and list(attrs.get("strides", [1, 1])) == [2, 2] and not any(attrs.get("pads", []))
                and node.input[0] not in pools):
            pools.append(node.input[0])
    return pools


def _session_with_pool_inputs(proto: Any, pools: list[str], threads: int
                              ) -> Callable[[np.ndarray], tuple[dict[str, np.ndarray], list[np.ndarray]]]:
    """A function running the graph on one input: (outputs by name, the pooled tensors in ``pools`` order)."""
    import onnx
    import onnxruntime as ort

    n_out = len(proto.graph.output)
    names = [o.name for o in proto.graph.output]
    for name in pools:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
        res = session.run(None, {session.get_inputs()[0].name: x})
        return dict(zip(names, res[:n_out])), list(res[n_out:])

    return run


def _windows(a: np.ndarray) -> np.ndarray:
    """N x C x H x W -> N x C x H/2 x W/2 x 4 (row-major window order)."""
    n, c, h, w = a.shape
    a = a[:, :, : h // 2 * 2, : w // 2 * 2]
    return a.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)


@dataclass
class _TieStats:
    """Windows seen and flipped, the largest top-2 gap at a flip and PyTorch/ORT feature difference."""

    max_rel_err: float
    total: int = 0
    flipped: int = 0
    max_gap: float = 0.0
    max_diff: float = 0.0
    feature_ok: bool = True
    ties_ok: bool = True

    def add(self, mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
        """Count one pooled tensor (PyTorch's, ORT's); returns ORT's pick (0..3) per window."""
        wm, wt = _windows(mine), _windows(theirs)
        pick_o = wt.argmax(-1)
        flips = wm.argmax(-1) != pick_o
        top2 = np.sort(wm, -1)[..., -2:]
        gap = top2[..., 1] - top2[..., 0]
        diff = float(np.abs(mine - theirs).max())
        self.total, self.flipped = self.total + flips.size, self.flipped + int(flips.sum())
        self.max_diff = max(self.max_diff, diff)
        self.feature_ok &= diff <= self.max_rel_err * max(float(np.abs(mine).max()), 1e-12)
        if flips.any():
            self.max_gap = max(self.max_gap, float(gap[flips].max()))
            self.ties_ok &= bool((gap[flips] <= 2 * diff).all())
        return pick_o


def _forced_pool(feats: list[np.ndarray], stats: _TieStats) -> Callable[..., Any]:
    """A ``max_pool2d`` that counts each call's windows in ``stats`` and returns PyTorch's values (and flat
    indices) at ORT's choices; raises _NotApplicable when the calls do not line up with ``feats``."""
    calls = iter(range(len(feats)))

    def forced(t: torch.Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Any:
        k = next(calls, None)
        if (k is None or kernel_size not in (2, (2, 2)) or stride not in (2, (2, 2), None) or padding
                or tuple(feats[k].shape) != tuple(t.shape)):
            raise _NotApplicable
        pick_o = stats.add(t.detach().numpy(), feats[k])
        n, c, h, w = t.shape
        rows = torch.arange(h // 2).view(1, 1, -1, 1) * 2 + torch.from_numpy(pick_o // 2)
        cols = torch.arange(w // 2).view(1, 1, 1, -1) * 2 + torch.from_numpy(pick_o % 2)
        flat = (rows * w + cols).long()
        values = t.flatten(2).gather(2, flat.flatten(2)).view_as(flat).to(t.dtype)
        return (values, flat) if return_indices else values

    return forced


def _outputs(model: torch.nn.Module, names: list[str], x: np.ndarray,
             pool: Callable[..., Any] | None = None) -> dict[str, np.ndarray]:
    """The model's outputs by name on ``x``, with ``max_pool2d`` replaced by ``pool`` meanwhile."""
    from edgeseg.tasks.base import by_name

    original = torch.nn.functional.max_pool2d
    try:
        if pool is not None:
            torch.nn.functional.max_pool2d = pool
        with torch.inference_mode():
            return {k: v.float().numpy() for k, v in by_name(names, model(torch.from_numpy(x))).items()}
    finally:
        torch.nn.functional.max_pool2d = original


def _share_beyond_tol(refs: list[dict[str, np.ndarray]], outs: list[dict[str, np.ndarray]], max_rel_err: float
                      ) -> float:
    """Share of output elements further from PyTorch than the FP32 bar (relative to each output's scale)."""
    beyond = count = 0
    for ref, out in zip(refs, outs):
        for key, r in ref.items():
            o = np.asarray(out[key], dtype=np.float32)
            tol = max_rel_err * max(float(np.abs(r).max()), 1e-12)
            beyond, count = beyond + int((np.abs(o - r) > tol).sum()), count + r.size
    return beyond / max(count, 1)


class _NotApplicable(Exception):
    """The model's pooling calls do not line up with the graph's 2x2 MaxPools."""
