"""Losses of the YOLACT-style instance models, with their target assignment.

Target assignment (anchor-free points, per image):

1. Level: a ground-truth object goes to the FPN level whose ``size_ranges`` entry holds the longer
   side of its box (input pixels; default P3 <= 64 < P4 <= 128 < P5).
2. Positives: the points of that level inside the box and within ``center_radius`` strides of the
   box centre (FCOS centre sampling), plus always the point nearest to the centre, so an object smaller
   than the stride (an 8-px nucleus on P3) still has one.
3. A point claimed by several objects goes to the smallest one (by box area).

Terms (each normalised so the weights are comparable):

- class: quality focal loss (GFL, Li et al. 2020; default) on the class-wise sigmoid, whose target at a
  positive is the IoU of the predicted box with its object (scores then rank by localisation quality,
  which is what AP rewards), or the plain sigmoid focal loss (``cls_loss: focal``); summed, divided by
  the number of positives;
- box: GIoU loss over the positives;
- mask: binary cross-entropy of the assembled mask logits ``coefs x protos`` against the object's
  mask (area-downsampled to prototype resolution), over the pixels inside its box only, divided by the
  box area in prototype pixels (YOLACT: small objects count as much as large ones); at most ``max_masks``
  positives per image (random) to bound the cost;
- semantic (optional, with the model's ``semantic_head``): per-class BCE on P3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

OUTPUT_NAMES = ("scores", "boxes", "coefs", "protos", "semantic")
STRIDES = (8, 16, 32)


def point_grid(input_hw: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A x 2 centres x, y; A strides; A level indices) in the order of the model's outputs."""
    centres, strides, levels = [], [], []
    for lvl, s in enumerate(STRIDES):
        h, w = input_hw[0] // s, input_hw[1] // s
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        centres.append((torch.stack([xs.flatten(), ys.flatten()], 1).float() + 0.5) * s)
        strides.append(torch.full((h * w,), float(s), device=device))
        levels.append(torch.full((h * w,), lvl, device=device, dtype=torch.long))
    return torch.cat(centres), torch.cat(strides), torch.cat(levels)


def giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(IoU, GIoU) of paired xyxy boxes ``P x 4``."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = (area_a + area_b - inter).clamp(min=1e-6)
    iou = inter / union
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(1).clamp(min=1e-6)
    return iou, iou - (hull - union) / hull


def assign(boxes: torch.Tensor, centres: torch.Tensor, strides: torch.Tensor, levels: torch.Tensor, *,
           size_ranges: Sequence[Sequence[float]], center_radius: float) -> torch.Tensor:
    """Object index per point (A,), -1 for background; see the module docstring for the rule."""
    a = len(centres)
    owner = torch.full((a,), -1, dtype=torch.long, device=centres.device)
    if len(boxes) == 0:
        return owner
    wh = boxes[:, 2:] - boxes[:, :2]
    size = wh.max(1).values
    lo = torch.tensor([r[0] for r in size_ranges], device=boxes.device)
    hi = torch.tensor([r[1] for r in size_ranges], device=boxes.device)
    lvl = ((size[:, None] > lo[None]) & (size[:, None] <= hi[None])).float().argmax(1)  # M
    cxy = (boxes[:, :2] + boxes[:, 2:]) / 2
    px, py = centres[:, 0][None], centres[:, 1][None]  # 1 x A
    inside = ((px > boxes[:, 0:1]) & (px < boxes[:, 2:3]) & (py > boxes[:, 1:2]) & (py < boxes[:, 3:4]))
    r = center_radius * strides[None]
    near = ((px - cxy[:, 0:1]).abs() < r) & ((py - cxy[:, 1:2]).abs() < r)
    on_level = levels[None] == lvl[:, None]
    pos = inside & near & on_level  # M x A
    dist = (px - cxy[:, 0:1]) ** 2 + (py - cxy[:, 1:2]) ** 2
    nearest = torch.where(on_level, dist, torch.full_like(dist, float("inf"))).argmin(1)
    pos[torch.arange(len(boxes), device=boxes.device), nearest] = True
    area = wh.prod(1).clamp(min=1e-6)
    cost = torch.where(pos, area[:, None].expand_as(pos), torch.full_like(dist, float("inf")))
    best_cost, best = cost.min(0)
    owner[torch.isfinite(best_cost)] = best[torch.isfinite(best_cost)]
    return owner


def quality_focal_loss(logits: torch.Tensor, target: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """GFL's quality focal loss with soft targets in [0, 1] (summed)."""
    p = logits.sigmoid()
    return (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * (p - target).abs().pow(beta)).sum()


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """RetinaNet's focal loss with binary targets (summed)."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return (a_t * ce * (1 - p_t).pow(gamma)).sum()


class YolactLoss(nn.Module):
    """Class + box + mask (+ semantic) loss of :class:`edgeseg.models.yolact.Yolact` outputs.

    Args:
        num_classes: Object classes.
        cls_loss: ``quality_focal`` (default) or ``focal``.
        cls_weight, box_weight, mask_weight, semantic_weight: Term weights.
        center_radius: Centre-sampling radius in strides.
        size_ranges: Per level (P3, P4, P5) ``(lo, hi]`` of an object's longer box side, input pixels.
        max_masks: Positives per image whose masks are assembled (random subset above it).
    """

    def __init__(self, num_classes: int, *, cls_loss: str = "quality_focal", cls_weight: float = 1.0,
                 box_weight: float = 2.0, mask_weight: float = 2.0, semantic_weight: float = 1.0,
                 center_radius: float = 2.5,
                 size_ranges: Sequence[Sequence[float]] = ((0, 64), (64, 128), (128, math.inf)),
                 max_masks: int = 200) -> None:
        super().__init__()
        if cls_loss not in ("quality_focal", "focal"):
            raise ValueError(f"cls_loss must be 'quality_focal' or 'focal', got {cls_loss!r}")
        if len(size_ranges) != len(STRIDES):
            raise ValueError(f"size_ranges needs {len(STRIDES)} (lo, hi) pairs (P3, P4, P5), got {size_ranges}")
        self.num_classes = num_classes
        self.cls_loss = cls_loss
        self.weights = {"cls": cls_weight, "box": box_weight, "mask": mask_weight, "semantic": semantic_weight}
        self.center_radius = center_radius
        self.size_ranges = [(float(lo), float(hi)) for lo, hi in size_ranges]
        self.max_masks = max_masks

    def forward(self, outputs: Sequence[torch.Tensor] | dict[str, torch.Tensor],
                targets: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, dict[str, float]]:
        """(total loss, float value of each weighted term and the positives per image)."""
        if isinstance(outputs, dict):
            outs = [outputs.get(n) for n in OUTPUT_NAMES]
        else:
            outs = list(outputs) + [None] * (len(OUTPUT_NAMES) - len(outputs))
        # Under CUDA AMP the heads come out in fp16: the focal/GIoU/BCE terms are computed in fp32 (as
        # autocast itself does for losses), which also keeps the target tensors' dtypes consistent.
        scores, boxes, coefs, protos, semantic = (o.float() if o is not None else None for o in outs)
        n, _, hp, wp = protos.shape
        input_hw = tuple(int(v) for v in targets[0]["masks"].shape[-2:])
        ps = input_hw[0] // hp
        centres, strides, levels = point_grid(input_hw, scores.device)
        if len(centres) != scores.shape[1]:
            raise ValueError(f"outputs have {scores.shape[1]} points but targets of size {input_hw} give "
                             f"{len(centres)}: masks must be at the network input size")
        cls_target = torch.zeros_like(scores)
        box_sum = scores.new_zeros(())
        mask_sum = scores.new_zeros(())
        num_pos = num_masks = 0
        for i, t in enumerate(targets):
            gt_boxes = t["boxes"].to(scores.device, torch.float32)
            owner = assign(gt_boxes, centres, strides, levels, size_ranges=self.size_ranges,
                           center_radius=self.center_radius)
            pos = torch.nonzero(owner >= 0).squeeze(1)
            if len(pos) == 0:
                continue
            obj = owner[pos]
            iou, g = giou(boxes[i, pos], gt_boxes[obj])
            box_sum = box_sum + (1 - g).sum()
            labels = t["labels"].to(scores.device)[obj]
            cls_target[i, pos, labels] = iou.detach().clamp(min=0) if self.cls_loss == "quality_focal" else 1.0
            num_pos += len(pos)
            if len(pos) > self.max_masks:
                pick = torch.randperm(len(pos), device=pos.device)[:self.max_masks]
                pos, obj = pos[pick], obj[pick]
            mask_sum = mask_sum + self._mask_loss(coefs[i, pos], protos[i], t["masks"].to(scores.device),
                                                  gt_boxes, obj, ps)
            num_masks += len(pos)
        denom = max(1, num_pos)
        if self.cls_loss == "quality_focal":
            cls = quality_focal_loss(scores, cls_target) / denom
        else:
            cls = sigmoid_focal_loss(scores, cls_target) / denom
        parts = {"cls": cls, "box": box_sum / denom, "mask": mask_sum / max(1, num_masks)}
        if semantic is not None:
            parts["semantic"] = self._semantic_loss(semantic, targets)
        total = sum(self.weights[k] * v for k, v in parts.items())
        info = {k: float(self.weights[k] * v.detach()) for k, v in parts.items()}
        info["positives"] = num_pos / max(1, n)
        return total, info

    @staticmethod
    def _mask_loss(coefs: torch.Tensor, protos: torch.Tensor, masks: torch.Tensor, boxes: torch.Tensor,
                   obj: torch.Tensor, ps: int) -> torch.Tensor:
        """Sum over positives of box-cropped BCE / box area (prototype pixels)."""
        hp, wp = protos.shape[-2:]
        gt = F.avg_pool2d(masks[None].float(), ps)[0] if ps > 1 else masks.float()  # M x Hp x Wp, soft
        logits = torch.einsum("khw,pk->phw", protos, coefs)
        b = boxes[obj] / ps
        ys = torch.arange(hp, device=protos.device, dtype=torch.float32) + 0.5
        xs = torch.arange(wp, device=protos.device, dtype=torch.float32) + 0.5
        in_y = (ys[None] >= b[:, 1:2]) & (ys[None] <= b[:, 3:4])
        in_x = (xs[None] >= b[:, 0:1]) & (xs[None] <= b[:, 2:3])
        crop = (in_y[:, :, None] & in_x[:, None, :]).float()
        bce = F.binary_cross_entropy_with_logits(logits, gt[obj], reduction="none")
        area = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).clamp(min=1.0)
        return ((bce * crop).sum((1, 2)) / area).sum()

    def _semantic_loss(self, semantic: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        n, c, h, w = semantic.shape
        target = semantic.new_zeros((n, c, h, w))
        for i, t in enumerate(targets):
            m = t["masks"].to(semantic.device).float()
            if len(m) == 0:
                continue
            small = F.adaptive_avg_pool2d(m[None], (h, w))[0] > 0.5
            for lab in t["labels"].unique().tolist():
                target[i, lab] = small[t["labels"].to(semantic.device) == lab].any(0).float()
        return F.binary_cross_entropy_with_logits(semantic, target)
