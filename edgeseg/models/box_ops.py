"""Box operations shared by the instance families (YOLACT, Mask R-CNN): IoU, box coding, matrix NMS.

Everything here keeps static shapes (no boolean indexing), so it exports to ONNX inside a graph.
NMS is YOLACT's Fast NMS (one IoU matrix, no sequential loop): an already suppressed box still
suppresses others, so it keeps slightly fewer boxes than greedy NMS at the same threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# Largest exp() of a width/height delta (Detectron2's log(1000 / 16)): keeps an untrained head finite.
DELTA_CLAMP = math.log(1000.0 / 16)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of ``... x n x 4`` and ``... x m x 4`` xyxy boxes -> ``... x n x m``."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=1e-9)


def encode(boxes: torch.Tensor, anchors: torch.Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Faster R-CNN deltas ``(dx, dy, dw, dh)`` taking ``anchors`` to ``boxes`` (both ``... x 4`` xyxy)."""
    wa, ha = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    xa, ya = anchors[..., 0] + 0.5 * wa, anchors[..., 1] + 0.5 * ha
    wb, hb = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    xb, yb = boxes[..., 0] + 0.5 * wb, boxes[..., 1] + 0.5 * hb
    wa, ha = wa.clamp(min=1e-6), ha.clamp(min=1e-6)
    return torch.stack([weights[0] * (xb - xa) / wa, weights[1] * (yb - ya) / ha,
                        weights[2] * torch.log(wb.clamp(min=1e-6) / wa),
                        weights[3] * torch.log(hb.clamp(min=1e-6) / ha)], dim=-1)


def decode(deltas: torch.Tensor, anchors: torch.Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Inverse of :func:`encode`: deltas ``... x 4`` applied to ``anchors`` (broadcast) -> xyxy boxes."""
    wa, ha = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    xa, ya = anchors[..., 0] + 0.5 * wa, anchors[..., 1] + 0.5 * ha
    dx, dy = deltas[..., 0] / weights[0], deltas[..., 1] / weights[1]
    dw = (deltas[..., 2] / weights[2]).clamp(max=DELTA_CLAMP)
    dh = (deltas[..., 3] / weights[3]).clamp(max=DELTA_CLAMP)
    x, y = xa + dx * wa, ya + dy * ha
    w, h = wa * torch.exp(dw), ha * torch.exp(dh)
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], dim=-1)


def clip_boxes(boxes: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Clamp xyxy boxes ``... x 4`` to an image of ``hw`` (python ints: constants in an exported graph)."""
    x = boxes[..., 0::2].clamp(0.0, float(hw[1]))
    y = boxes[..., 1::2].clamp(0.0, float(hw[0]))
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def fast_nms(boxes: torch.Tensor, scores: torch.Tensor | None, iou_thresh: float) -> torch.Tensor:
    """YOLACT's Fast NMS on score-sorted candidates: keep j when max_{i<j} IoU(i, j) < ``iou_thresh``.

    Args:
        boxes: ``... x k x 4`` sorted by descending score along k.
        scores: unused for the decision (kept for the signature's symmetry with numpy).

    Returns:
        ``... x k`` bool keep mask. Unlike greedy NMS, an already suppressed box still suppresses others.
    """
    del scores
    iou = box_iou(boxes, boxes).triu(diagonal=1)
    return iou.amax(dim=-2) < iou_thresh


def batched_fast_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_thresh: float,
                     span: float) -> torch.Tensor:
    """Fast NMS within groups (classes, FPN levels) in one matrix: boxes ``... x k x 4`` and ``groups``
    ``... x k`` (sorted by descending ``scores`` along k) -> ``... x k`` bool keep mask.

    Each group's boxes are shifted by ``group * span`` so boxes of different groups never overlap
    (``span``: more than the largest coordinate, e.g. the image's longer side + 1).
    """
    shifted = boxes + (groups.to(boxes.dtype) * span)[..., None]
    return fast_nms(shifted, scores, iou_thresh)


def sorted_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``min(k, size)`` highest entries along the last axis, descending, with their indices."""
    return scores.topk(min(k, scores.shape[-1]), dim=-1, sorted=True)


def gather_rows(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``t`` ``N x A x ...`` rows picked by ``index`` ``N x K`` -> ``N x K x ...``."""
    shape = index.shape + t.shape[2:]
    flat = index.reshape(*index.shape, *([1] * (t.dim() - 2))).expand(shape)
    return torch.gather(t, 1, flat)
