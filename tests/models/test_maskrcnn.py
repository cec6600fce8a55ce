"""Mask R-CNN family: registry, head shapes, box coding, RoIAlign against a slow reference (torch and
ONNX Runtime), training outputs, numpy paste of RoI masks, ONNX export matching PyTorch detections."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

from edgeseg.models import create_model, get_model_info, list_models
from edgeseg.models.box_ops import batched_fast_nms, decode, encode
from edgeseg.models.maskrcnn import OUTPUT_NAMES
from edgeseg.models.maskrcnn_heads import (
    BoxHead,
    MaskHead,
    RPNHead,
    level_anchors,
    proposals,
    roi_levels,
)
from edgeseg.models.roi_align import roi_align
from edgeseg.tasks.instance_postprocess import decode_roi_outputs, paste_roi_masks


def _tiny(num_classes: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("maskrcnn_test", num_classes=num_classes).eval()


def reference_roi_align(feat: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], scale: float,
                        ratio: int) -> torch.Tensor:
    """Slow RoIAlign (aligned=True): bilinear samples, averaged per bin, one point at a time (float64)."""
    n, c, h, w = feat.shape
    out = torch.zeros(n * boxes.shape[1], c, *size, dtype=torch.float64)
    f = feat.double()

    def sample(img: torch.Tensor, y: float, x: float) -> torch.Tensor:
        if y < -1 or y > h or x < -1 or x > w:
            return torch.zeros(c, dtype=torch.float64)
        y, x = min(max(y, 0.0), h - 1.0), min(max(x, 0.0), w - 1.0)
        y0, x0 = int(y), int(x)
        y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
        ly, lx = y - y0, x - x0
        return ((1 - ly) * (1 - lx) * img[:, y0, x0] + (1 - ly) * lx * img[:, y0, x1]
                + ly * (1 - lx) * img[:, y1, x0] + ly * lx * img[:, y1, x1])

    for i in range(n):
        for j in range(boxes.shape[1]):
            x1, y1, x2, y2 = (float(v) * scale - 0.5 for v in boxes[i, j])
            bw, bh = (x2 - x1) / size[1], (y2 - y1) / size[0]
            for py in range(size[0]):
                for px in range(size[1]):
                    acc = sum(sample(f[i], y1 + py * bh + (iy + .5) * bh / ratio, x1 + px * bw + (ix + .5) * bw / ratio)
                              for iy in range(ratio) for ix in range(ratio))
                    out[i * boxes.shape[1] + j, :, py, px] = acc / ratio ** 2
    return out


ROI_FEAT_SHAPE = (2, 3, 10, 12)
# boxes inside, across the border, sub-pixel, and past the far edges (scale 1/4: the map is 48 x 40 input px)
ROI_BOXES = torch.tensor([[[0, 0, 40, 30], [-6, -5, 10, 9], [30, 20, 52, 44]],
                          [[5.5, 3.3, 6.1, 3.9], [1, 2, 47, 39], [44, 36, 60, 50]]])


def test_registered_with_params_and_macs() -> None:
    assert {"maskrcnn", "maskrcnn-lite"} <= set(list_models("instance"))
    for name in ("maskrcnn", "maskrcnn-lite", "maskrcnn_test"):
        info = get_model_info(name)
        assert info.task == "instance" and info.family == "maskrcnn" and info.output_names == OUTPUT_NAMES


def test_roi_align_matches_slow_reference() -> None:
    torch.manual_seed(0)
    feat = torch.randn(*ROI_FEAT_SHAPE)
    got = roi_align(feat, ROI_BOXES, (3, 4), 0.25, 2)
    assert got.shape == (6, 3, 3, 4)
    torch.testing.assert_close(got.double(), reference_roi_align(feat, ROI_BOXES, (3, 4), 0.25, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dynamo", [True, False])
def test_roi_align_exports_to_onnx_roialign(dynamo: bool) -> None:
    import onnx
    import onnxruntime as ort

    class Pool(torch.nn.Module):
        def forward(self, f: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return roi_align(f, b, (3, 4), 0.25, 2)

    torch.manual_seed(0)
    feat = torch.randn(*ROI_FEAT_SHAPE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            data = torch.onnx.export(Pool(), (feat, ROI_BOXES), dynamo=True, opset_version=17,
                                     input_names=["f", "b"], verbose=False).model_proto.SerializeToString()
        else:
            buf = io.BytesIO()
            torch.onnx.export(Pool(), (feat, ROI_BOXES), buf, dynamo=False, opset_version=17, input_names=["f", "b"])
            data = buf.getvalue()
    assert [n.op_type for n in onnx.load_from_string(data).graph.node].count("RoiAlign") == 1
    out = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(
        None, {"f": feat.numpy(), "b": ROI_BOXES.numpy()})[0]
    np.testing.assert_allclose(out, reference_roi_align(feat, ROI_BOXES, (3, 4), 0.25, 2).numpy(), atol=1e-5)


def test_box_coding_round_trip_and_anchors() -> None:
    anchors = level_anchors((2, 3), 8, 16, (0.5, 1.0, 2.0))
    assert anchors.shape == (2 * 3 * 3, 4)
    torch.testing.assert_close(anchors[1], torch.tensor([-4.0, -4.0, 12.0, 12.0]))  # cell (0, 0), ratio 1
    boxes = torch.tensor([[1.0, 2.0, 30.0, 12.0]]).expand(len(anchors), 4)
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
        torch.testing.assert_close(decode(encode(boxes, anchors, weights), anchors, weights), boxes, atol=1e-4, rtol=0)


def test_batched_nms_keeps_groups_apart() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]])
    keep = batched_fast_nms(boxes, torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 0, 1, 0]), 0.5, span=100.0)
    assert keep.tolist() == [True, False, True, True]


def test_head_shapes() -> None:
    feats = [torch.randn(2, 16, s, s) for s in (16, 8)]
    logits, deltas = RPNHead(16, 3)(feats)
    assert [tuple(t.shape) for t in logits] == [(2, 768), (2, 192)]
    assert [tuple(t.shape) for t in deltas] == [(2, 768, 4), (2, 192, 4)]
    anchors = [level_anchors((16, 16), 4, 8, (0.5, 1, 2)), level_anchors((8, 8), 8, 16, (0.5, 1, 2))]
    props = proposals(logits, deltas, anchors, (64, 64), pre_nms=50, post_nms=20, nms_thresh=0.7)
    assert props.shape == (2, 20, 4) and props.min() >= 0 and props.max() <= 64
    cls, box = BoxHead(16, 7, 32, 2, 3)(torch.randn(5, 16, 7, 7))
    assert cls.shape == (5, 4) and box.shape == (5, 3, 4)
    assert MaskHead(16, 16, 4, 3)(torch.randn(5, 16, 14, 14)).shape == (5, 3, 28, 28)
    assert roi_levels(torch.tensor([[0.0, 0, 20, 20], [0, 0, 224, 224], [0, 0, 2000, 2000]]), 4, 224).tolist() == [0, 2, 3]


def test_inference_outputs_fixed_slots() -> None:
    model = _tiny(num_classes=2)
    boxes, scores, labels, masks = model(torch.randn(2, 3, 64, 96))
    d = model.max_dets
    assert boxes.shape == (2, d, 4) and scores.shape == (2, d) and labels.shape == (2, d) and labels.dtype == torch.int64
    assert masks.shape == (2, d, 14, 14) and 0 <= masks.min() and masks.max() <= 1
    assert bool((scores[:, :-1] >= scores[:, 1:]).all())


def test_training_forward_gives_the_loss_inputs() -> None:
    from edgeseg.train.losses_maskrcnn import MaskRCNNLoss

    model = _tiny(num_classes=2).train()
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 5:20, 5:25] = True
    masks[1, 30:50, 30:40] = True
    targets = [{"boxes": torch.tensor([[5.0, 5, 25, 20], [30, 30, 40, 50]]), "labels": torch.tensor([0, 1]),
                "masks": masks}, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                                  "masks": torch.zeros(0, 64, 64, dtype=torch.bool)}]
    out = model(torch.randn(2, 3, 64, 64), targets)
    r = model.rois_per_image
    assert out["rpn_logits"].shape == out["rpn_labels"].shape and out["cls_logits"].shape == (2 * r, 3)
    assert out["box_deltas"].shape == (2 * r, 2, 4) and out["mask_logits"].shape == out["mask_targets"].shape
    assert 1 <= out["mask_logits"].shape[0] <= r // 4 + 2  # fg fraction 1/4 (+ the ground-truth boxes)
    loss, parts = MaskRCNNLoss(num_classes=2)(out, targets)
    loss.backward()
    assert set(parts) == {"rpn_cls", "rpn_box", "cls", "box", "mask"} and torch.isfinite(loss)


def test_paste_roi_masks_fills_the_box() -> None:
    full = paste_roi_masks(np.ones((1, 14, 14), np.float32), np.array([[2.0, 3.0, 10.0, 7.0]]), (12, 12), 0.5)
    assert full[0].sum() == 8 * 4 and full[0, 3:7, 2:10].all()
    outs = {"det_boxes": np.array([[[2.0, 3, 10, 7], [0, 0, 0, 0]]], np.float32),
            "det_scores": np.array([[0.9, 0.0]], np.float32), "det_labels": np.array([[1, 0]]),
            "det_roi_masks": np.ones((1, 2, 14, 14), np.float32)}
    (det,) = decode_roi_outputs(outs, input_hw=(12, 12), image_hw=(24, 24), placement="resize")
    assert len(det) == 1 and det.labels.tolist() == [1] and det.masks[0].sum() == 16 * 8
    np.testing.assert_allclose(det.boxes[0], [4, 6, 20, 14])


def test_onnx_export_matches_pytorch_detections() -> None:
    import onnxruntime as ort

    model = _tiny(num_classes=2)
    x = torch.randn(1, 3, 64, 64)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17, input_names=["input"],
                          output_names=list(OUTPUT_NAMES))
    import onnx

    ops = [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node]
    assert ops.count("RoiAlign") == 2  # one for the box head, one for the mask head, all levels each
    got = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = [t.numpy() for t in model(x)]
    for name, r, g in zip(OUTPUT_NAMES, ref, got):
        np.testing.assert_allclose(g.astype(np.float64), r.astype(np.float64), atol=1e-4, err_msg=name)


def test_one_roialign_for_all_levels_equals_pooling_each_level() -> None:
    from edgeseg.models.maskrcnn_heads import multilevel_roi_align

    torch.manual_seed(0)
    strides = (4, 8, 16, 32)
    feats = [torch.randn(2, 4, 64 // s, 96 // s) for s in strides]
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 60, 60], [5, 5, 40, 30]],
                          [[1, 2, 3, 4], [0, 0, 96, 64], [50, 9, 96, 64]]])  # image edges and corners included
    got = multilevel_roi_align(feats, strides, boxes, 5, 2, 16.0)
    level = roi_levels(boxes, 4, 16.0)
    assert set(level.flatten().tolist()) == {0, 1, 2, 3}
    for i in range(2):
        for j in range(3):
            lvl = int(level[i, j])
            want = reference_roi_align(feats[lvl][i:i + 1], boxes[i:i + 1, j:j + 1], (5, 5), 1 / strides[lvl], 2)
            torch.testing.assert_close(got[i * 3 + j].double(), want[0], atol=1e-5, rtol=0)
