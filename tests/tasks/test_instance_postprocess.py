"""numpy instance postprocess: agreement with the torch one, Fast NMS, limits, masks, no torch import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from edgeseg.models.yolact import OUTPUT_NAMES, postprocess as torch_postprocess
from edgeseg.tasks.instance_postprocess import Detections, fast_nms, paste_masks, postprocess, select


def _outputs(seed: int = 0, n: int = 2, hw: tuple[int, int] = (64, 96), classes: int = 3,
             k: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = sum((hw[0] // s) * (hw[1] // s) for s in (8, 16, 32))
    xy = torch.rand(n, a, 2, generator=g) * torch.tensor([hw[1], hw[0]])
    wh = 4 + torch.rand(n, a, 2, generator=g) * 30
    return {"scores": torch.randn(n, a, classes, generator=g) * 2, "boxes": torch.cat([xy - wh / 2, xy + wh / 2], -1),
            "coefs": torch.tanh(torch.randn(n, a, k, generator=g)),
            "protos": torch.relu(torch.randn(n, k, hw[0] // 4, hw[1] // 4, generator=g))}


@pytest.mark.parametrize(("placement", "image_hw"), [("resize", (50, 70)), ("resize", (200, 130)), ("pad", (60, 90))])
def test_numpy_agrees_with_torch(placement: str, image_hw: tuple[int, int]) -> None:
    outs = _outputs()
    kw = {"input_hw": (64, 96), "image_hw": image_hw, "score_thresh": 0.3, "top_k": 40, "max_dets": 60,
          "placement": placement}
    ref = torch_postprocess(outs, **kw)
    got = postprocess({k: v.numpy() for k, v in outs.items()}, **kw)
    assert len(got) == len(ref) == 2
    for a, b in zip(ref, got):
        assert isinstance(b, Detections) and len(b) == len(a) > 10
        assert b.masks.shape == (len(b), *image_hw) and b.masks.dtype == bool
        np.testing.assert_allclose(b.scores, a.scores, rtol=1e-6)
        np.testing.assert_array_equal(b.labels, a.labels)
        np.testing.assert_allclose(b.boxes, a.boxes, atol=1e-4)
        assert (b.masks != a.masks).mean() < 1e-5 and b.masks.any()
        assert np.all(np.diff(b.scores) <= 0) and b.boxes[:, 2].max() <= image_hw[1]


def test_limits_and_thresholds() -> None:
    outs = {k: v.numpy() for k, v in _outputs(n=1).items()}
    many = postprocess(outs, input_hw=(64, 96), image_hw=(64, 96), score_thresh=0.05, top_k=500, max_dets=1000)[0]
    per_class = postprocess(outs, input_hw=(64, 96), image_hw=(64, 96), score_thresh=0.05, top_k=5, max_dets=1000)[0]
    assert np.bincount(per_class.labels).max() <= 5 < np.bincount(many.labels).max()
    assert len(postprocess(outs, input_hw=(64, 96), image_hw=(64, 96), max_dets=7)[0]) == 7
    none = postprocess(outs, input_hw=(64, 96), image_hw=(32, 48), score_thresh=0.9999)[0]
    assert len(none) == 0 and none.masks.shape == (0, 32, 48) and none.boxes.shape == (0, 4)
    with pytest.raises(KeyError, match="protos"):
        postprocess({k: v for k, v in outs.items() if k != "protos"}, input_hw=(64, 96), image_hw=(64, 96))


def test_select_is_per_class_fast_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.full((4, 2), -10.0, np.float32)
    scores[0, 0], scores[1, 0], scores[2, 1], scores[3, 0] = 3.0, 2.0, 1.0, 0.5  # 2 is another class
    s, labels, idx = select(scores, boxes, score_thresh=0.05, iou_thresh=0.5, top_k=10, max_dets=10)
    assert idx.tolist() == [0, 2, 3] and labels.tolist() == [0, 1, 0]
    assert fast_nms(boxes[:2], 0.5).tolist() == [True, False] and fast_nms(boxes[:0], 0.5).shape == (0,)


def test_paste_masks_bilinear_inside_box() -> None:
    logits = np.full((1, 2, 2), -1.0, np.float32)
    logits[0, 0, 0] = 1.0  # top-left prototype pixel positive
    full = torch.nn.functional.interpolate(torch.from_numpy(logits)[None], size=(8, 8), mode="bilinear",
                                           align_corners=False)[0, 0].numpy() > 0
    m = paste_masks(logits, np.array([[0, 0, 8, 8]], np.float32), (8, 8), (8, 8), 0.0)[0]
    np.testing.assert_array_equal(m, full)
    m = paste_masks(logits, np.array([[0, 0, 2, 8]], np.float32), (8, 8), (8, 8), 0.0)[0]
    assert m[:, 2:].sum() == 0 and np.array_equal(m[:, :2], full[:, :2])


def test_module_imports_no_torch() -> None:
    code = "import sys, edgeseg.tasks.instance_postprocess as m; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_output_names_shared() -> None:
    from edgeseg.tasks import instance_postprocess

    assert instance_postprocess.OUTPUT_NAMES == OUTPUT_NAMES
