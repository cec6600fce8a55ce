"""Mask R-CNN heads (He et al., 2017): RPN with anchors and proposals, multi-level RoIAlign, box and mask heads.

Every step keeps static shapes (fixed counts per image, scores masked instead of boxes dropped), so
the whole two-stage network exports to one ONNX graph. NMS is the matrix Fast NMS of
:mod:`edgeseg.models.box_ops`, per FPN level for proposals and per class for detections.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.box_ops import batched_fast_nms, clip_boxes, decode, fast_nms, gather_rows, sorted_topk
from edgeseg.models.roi_align import roi_align

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # box-head delta scaling (Detectron2's default)
CANONICAL_LEVEL = 4  # FPN paper eq. 1: a box of ``canonical_size`` pixels pools from P4


def level_anchors(hw: tuple[int, int], stride: int, size: float, ratios: Sequence[float],
                  device: torch.device | None = None) -> torch.Tensor:
    """Anchors of one level, ``H*W*len(ratios) x 4`` xyxy input pixels, ordered (y, x, ratio).

    Centred on the cells ((x + .5) s, (y + .5) s) like the YOLACT points; ratio is height / width.
    """
    h, w = hw
    ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) * stride
    xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) * stride
    r = torch.tensor(list(ratios), dtype=torch.float32, device=device)
    half_w, half_h = size / torch.sqrt(r) / 2, size * torch.sqrt(r) / 2
    cy, cx = ys.view(h, 1, 1), xs.view(1, w, 1)
    return torch.stack(torch.broadcast_tensors(cx - half_w, cy - half_h, cx + half_w, cy + half_h), -1).reshape(-1, 4)


class RPNHead(nn.Module):
    """Shared over levels: 3x3 conv + ReLU, then per anchor an objectness logit and 4 box deltas."""

    def __init__(self, width: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.objectness = nn.Conv2d(width, num_anchors, 1)
        self.deltas = nn.Conv2d(width, 4 * num_anchors, 1)
        for m in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level: logits N x (H*W*A) and deltas N x (H*W*A) x 4, in :func:`level_anchors` order."""
        logits, deltas = [], []
        for f in feats:
            t = F.relu(self.conv(f))
            n = t.shape[0]
            logits.append(self.objectness(t).permute(0, 2, 3, 1).reshape(n, -1))
            deltas.append(self.deltas(t).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return logits, deltas


def proposals(logits: list[torch.Tensor], deltas: list[torch.Tensor], anchors: list[torch.Tensor],
              image_hw: tuple[int, int], *, pre_nms: int, post_nms: int, nms_thresh: float,
              min_size: float = 0.0) -> torch.Tensor:
    """RPN proposals ``N x P x 4`` (``P = min(post_nms, candidates)``), best first.

    Per level the ``pre_nms`` best anchors are decoded and clipped; Fast NMS runs within each level;
    boxes smaller than ``min_size`` and suppressed ones drop to the end (their score is -inf).
    """
    boxes, scores = [], []
    for lg, dl, an in zip(logits, deltas, anchors):
        s, idx = sorted_topk(lg, pre_nms)
        b = clip_boxes(decode(gather_rows(dl, idx), an[idx]), image_hw)
        wh = b[..., 2:] - b[..., :2]
        keep = fast_nms(b, s, nms_thresh) & (wh.amin(dim=-1) > min_size)  # one small matrix per level
        boxes.append(b)
        scores.append(torch.where(keep, s, torch.full_like(s, -math.inf)))
    b, s = torch.cat(boxes, 1), torch.cat(scores, 1)
    _, best = sorted_topk(s, post_nms)
    return gather_rows(b, best)


def roi_levels(boxes: torch.Tensor, num_levels: int, canonical_size: float) -> torch.Tensor:
    """FPN level index (0 = P2) each box pools from: ``floor(4 + log2(sqrt(area) / canonical_size))``."""
    area = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])).clamp(min=1e-6)
    k = torch.floor(CANONICAL_LEVEL + torch.log2(torch.sqrt(area) / canonical_size + 1e-8))
    return (k.clamp(2, 1 + num_levels) - 2).to(torch.int64)


def multilevel_roi_align(feats: list[torch.Tensor], strides: Sequence[int], boxes: torch.Tensor, size: int,
                         sampling_ratio: int, canonical_size: float) -> torch.Tensor:
    """RoIAlign of ``boxes`` N x P x 4 on the FPN level each is assigned to -> N*P x C x size x size.

    One ``RoiAlign`` for all levels: the levels, each padded by one replicated pixel, sit side by side in
    one map, and each box is moved into its level's tile. For boxes inside the image this equals pooling
    each level on its own (a sample within half a pixel of a tile's edge reads the replicated edge, as
    RoIAlign's clamping does), at the cost of one level instead of all of them.
    """
    level = roi_levels(boxes, len(feats), canonical_size)
    height = int(feats[0].shape[-2]) + 2
    tiles, offsets, x = [], [], 0
    for f in feats:
        t = F.pad(f, (1, 1, 1, 1), mode="replicate")
        tiles.append(F.pad(t, (0, 0, 0, height - int(t.shape[-2]))))
        offsets.append(x + 1)
        x += int(t.shape[-1])
    scale = (1.0 / torch.tensor([float(s) for s in strides], device=boxes.device))[level]
    shift = torch.tensor([float(o) for o in offsets], device=boxes.device)[level]
    one = torch.ones_like(shift)
    moved = boxes * scale[..., None] + torch.stack([shift, one, shift, one], dim=-1)
    return roi_align(torch.cat(tiles, dim=-1), moved, (size, size), 1.0, sampling_ratio, aligned=True)


class BoxHead(nn.Module):
    """``num_fc`` fully connected layers + ReLU on the pooled RoI, then class logits (``C + 1``, background
    last) and class-specific box deltas (``C x 4``)."""

    def __init__(self, in_channels: int, pool: int, fc_dim: int, num_fc: int, num_classes: int) -> None:
        super().__init__()
        dims = [in_channels * pool * pool] + [fc_dim] * num_fc
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.cls = nn.Linear(dims[-1], num_classes + 1)
        self.box = nn.Linear(dims[-1], num_classes * 4)
        self.num_classes = num_classes
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.box.weight, std=0.001)
        for m in (self.cls, self.box):
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K x C x pool x pool -> (K x (C + 1) logits, K x C x 4 deltas)."""
        x = x.flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x))
        return self.cls(x), self.box(x).reshape(-1, self.num_classes, 4)


class MaskHead(nn.Module):
    """``num_convs`` 3x3 convs + ReLU, a 2x transposed conv + ReLU, a 1x1 conv to one mask logit per class."""

    def __init__(self, in_channels: int, width: int, num_convs: int, num_classes: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1)
                                   for i in range(num_convs))
        self.up = nn.ConvTranspose2d(width if num_convs else in_channels, width, 2, stride=2)
        self.out = nn.Conv2d(width, num_classes, 1)
        for m in (*self.convs, self.up):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        nn.init.normal_(self.out.weight, std=0.001)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """K x C_in x m x m -> K x C x 2m x 2m mask logits."""
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.out(F.relu(self.up(x)))


def detect(cls_logits: torch.Tensor, box_deltas: torch.Tensor, rois: torch.Tensor, image_hw: tuple[int, int], *,
           score_thresh: float, iou_thresh: float, top_k: int, max_dets: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Second-stage detections with a fixed count ``D`` per image.

    Args:
        cls_logits: N x P x (C + 1); box_deltas: N x P x C x 4; rois: N x P x 4.

    Returns:
        (boxes N x D x 4, scores N x D, labels N x D int64); empty slots have score 0.
    """
    n, p, c = box_deltas.shape[:3]
    probs = cls_logits.softmax(-1)[..., :c].reshape(n, p * c)
    boxes = clip_boxes(decode(box_deltas, rois[:, :, None], BOX_WEIGHTS), image_hw).reshape(n, p * c, 4)
    s, idx = sorted_topk(probs, top_k)
    b = gather_rows(boxes, idx)
    labels = torch.remainder(idx, c)
    keep = batched_fast_nms(b, s, labels, iou_thresh, span=float(max(image_hw)) + 1.0) & (s > score_thresh)
    top, pos = sorted_topk(torch.where(keep, s, torch.zeros_like(s)), max_dets)
    return gather_rows(b, pos), top, torch.gather(labels, 1, pos)


def select_class_masks(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each RoI's mask of its own class: logits K x C x m x m, labels K -> K x m x m."""
    k, _, h, w = logits.shape
    return torch.gather(logits, 1, labels.reshape(k, 1, 1, 1).expand(k, 1, h, w))[:, 0]
