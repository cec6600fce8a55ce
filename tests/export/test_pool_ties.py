"""FP32 parity of index-unpooling models: a mismatch explained by near-tied max-pool windows passes, a wrong export fails.

ORT and PyTorch round differently (~1e-6 relative); where a 2x2 window's two largest values are closer than
that, the runtimes pick different maxima and SegNet's unpooling puts a value one pixel off. The test makes
such flips on purpose: it adds, inside the ONNX graph, a small positive offset to the runner-up of the
most nearly tied windows of the first pooled tensor (a stand-in for the runtimes' rounding differences).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgeseg.export.pool_ties import pool_tie_check
from edgeseg.export.torch2onnx import export_onnx
from edgeseg.runtime.ort_rt import OrtBackend
from edgeseg.tasks import get_task
from tests.conftest import make_checkpoint


def _windows(a: np.ndarray) -> np.ndarray:
    n, c, h, w = a.shape
    return a.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)


def _segnet(tmp_path: Path, unpool: str) -> tuple[torch.nn.Module, Path, np.ndarray, np.ndarray]:
    """segnet_test (``unpool`` form) exported statically, with its first pre-pool tensor."""
    from edgeseg.artifacts.checkpoint import load_checkpoint

    ckpt = load_checkpoint(make_checkpoint(tmp_path / "m.pt", model="segnet_test", num_classes=2))
    model, meta = ckpt.model.with_unpool(unpool).eval(), ckpt.meta
    g = torch.Generator().manual_seed(0)
    for m in model.modules():  # distinct channels, non-trivial decoder values
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.5 + 0.5
    path = tmp_path / "model.onnx"
    export_onnx(model, meta, path, hw=(32, 32), dynamic=False)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    feats: list[torch.Tensor] = []
    hook = model.encoder[0].register_forward_hook(lambda m, i, o: feats.append(o.detach()))
    with torch.no_grad():
        model(torch.from_numpy(x))
    hook.remove()
    return model, path, x, feats[0].numpy()


def _perturb(path: Path, feature: np.ndarray, offset: np.ndarray, out: Path, weight_scale: float = 1.0) -> None:
    """Add ``offset`` to the first MaxPool input inside the graph (and optionally scale the last conv's weight)."""
    proto = onnx.load(str(path))
    pool = next(n for n in proto.graph.node if n.op_type == "MaxPool")
    name = pool.input[0]
    proto.graph.initializer.append(numpy_helper.from_array(offset.astype(np.float32), "tie_offset"))
    producer = next(i for i, n in enumerate(proto.graph.node) if name in n.output)
    proto.graph.node.insert(producer + 1, onnx.helper.make_node("Add", [name, "tie_offset"], [name + "_moved"]))
    for node in proto.graph.node:  # every reader sees the moved tensor (compare unpooling also reads it)
        if node.output != [name + "_moved"]:
            node.input[:] = [name + "_moved" if i == name else i for i in node.input]
    if weight_scale != 1.0:
        conv = [n for n in proto.graph.node if n.op_type == "Conv"][-1]
        init = next(i for i in proto.graph.initializer if i.name == conv.input[1])
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * weight_scale, init.name))
    onnx.save(proto, str(out))
    onnx.checker.check_model(str(out))


def _offset(feature: np.ndarray, near_ties: bool) -> tuple[np.ndarray, int]:
    """Offsets that flip windows: the runner-up of near-tied windows pushed just past the maximum."""
    win = _windows(feature)
    order = np.argsort(win, -1)
    top, second = np.take_along_axis(win, order[..., -1:], -1)[..., 0], np.take_along_axis(win, order[..., -2:-1], -1)[..., 0]
    gap = top - second
    scale = np.abs(feature).max()
    chosen = (gap > 0) & (gap < 2e-4 * scale) if near_ties else (gap > 0.05 * scale)
    if not near_ties:  # a few clearly separated windows only
        chosen &= np.cumsum(chosen.ravel()).reshape(chosen.shape) <= 3
    offset_win = np.zeros_like(win)
    np.put_along_axis(offset_win, order[..., -2:-1], np.where(chosen, gap * 1.5, 0.0)[..., None], -1)
    n, c, h2, w2, _ = win.shape
    offset = offset_win.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(feature.shape)
    return offset, int(chosen.sum())


def _plain_parity(model: torch.nn.Module, path: Path, x: np.ndarray) -> dict:
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = OrtBackend(path, threads=1)(x)
    return get_task("semantic").parity([{"logits": ref}], [out], [x])


@pytest.mark.parametrize("unpool", ["indices", "compare"])
def test_flips_at_near_ties_are_explained(unpool: str, tmp_path: Path) -> None:
    model, path, x, feature = _segnet(tmp_path, unpool)
    offset, n = _offset(feature, near_ties=True)
    assert n >= 1, "no near-tied window to flip in this seed's features"
    moved = tmp_path / "ties.onnx"
    _perturb(path, feature, offset, moved)
    task = get_task("semantic")
    plain = _plain_parity(model, moved, x)
    assert not task.fp32_parity_ok(plain)  # the flips alone fail the plain check (a pixel-off unpooled value)
    ties = pool_tie_check(model, moved, [x], task)
    assert ties["applies"] and ties["flipped"] == n and ties["explained"], ties
    assert ties["forced_max_rel_err"] <= 1e-4 and 0 < ties["outputs_beyond_tol"] < 0.05
    assert pool_tie_check(model, path, [x], task)["flipped"] == 0  # the unmodified export: no flips


@pytest.mark.parametrize("unpool", ["indices", "compare"])
@pytest.mark.parametrize("wrong", ["weights", "clear_flips"])
def test_a_wrong_export_is_not_explained_by_ties(wrong: str, unpool: str, tmp_path: Path) -> None:
    model, path, x, feature = _segnet(tmp_path, unpool)
    offset, n = _offset(feature, near_ties=wrong == "weights")
    moved = tmp_path / "wrong.onnx"
    # weights: same near-tie flips, plus a decoder weight off by 2%; clear_flips: windows whose maximum
    # leads by > 5% of the tensor's scale forced to another position (not a rounding effect).
    _perturb(path, feature, offset, moved, weight_scale=1.02 if wrong == "weights" else 1.0)
    task = get_task("semantic")
    assert not task.fp32_parity_ok(_plain_parity(model, moved, x))
    ties = pool_tie_check(model, moved, [x], task)
    assert ties["applies"] and ties["flipped"] >= 1 and not ties["explained"], ties
    if wrong == "clear_flips":
        assert not (ties["flips_are_ties"] and ties["features_at_parity"])
    else:
        assert ties["forced_max_rel_err"] > 1e-3
