"""Mask R-CNN training targets: RPN anchor labels, RoI sampling and mask targets (the paper's recipe).

- RPN: an anchor is positive at IoU >= ``pos_iou`` with a ground-truth box, or when it is the best
  anchor of some box; negative below ``neg_iou``; ``batch`` anchors per image are sampled, at most half
  positive; the rest is ignored (label -1).
- RoIs: proposals plus the ground-truth boxes; foreground at IoU >= ``fg_iou``, ``rois`` per image with
  at most ``fg_fraction`` foreground (a fixed count, so the heads see static batches).
- Masks: each foreground RoI's ground-truth mask cut out with RoIAlign at the mask head's resolution,
  thresholded at 0.5.
"""

from __future__ import annotations

import torch

from edgeseg.models.box_ops import box_iou, encode
from edgeseg.models.maskrcnn_heads import BOX_WEIGHTS
from edgeseg.models.roi_align import roi_align_torch


def _take(priority: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` highest priorities."""
    return priority.topk(min(count, priority.numel())).indices


@torch.no_grad()
def rpn_targets(anchors: torch.Tensor, targets: list[dict[str, torch.Tensor]], *, batch: int = 256,
                pos_fraction: float = 0.5, pos_iou: float = 0.7, neg_iou: float = 0.3
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels N x A: 1 positive, 0 negative, -1 ignored; regression targets N x A x 4)."""
    labels, deltas = [], []
    for t in targets:
        gt = t["boxes"].to(anchors)
        lab = torch.zeros(len(anchors), dtype=torch.long, device=anchors.device)
        reg = torch.zeros_like(anchors)
        if len(gt):
            iou = box_iou(gt, anchors)  # M x A
            best, which = iou.max(0)
            lab = torch.where(best >= pos_iou, 1, torch.where(best < neg_iou, 0, -1))
            per_gt = iou.amax(1, keepdim=True)
            lab[((iou == per_gt) & (per_gt > 0)).any(0)] = 1
            reg = encode(gt[which], anchors)
        rand = torch.rand(len(anchors), device=anchors.device)
        pos = torch.nonzero(lab == 1).flatten()
        keep_pos = pos[_take(rand[pos], int(batch * pos_fraction))]
        neg = torch.nonzero(lab == 0).flatten()
        keep_neg = neg[_take(rand[neg], batch - len(keep_pos))]
        out = torch.full_like(lab, -1)
        out[keep_pos], out[keep_neg] = 1, 0
        labels.append(out)
        deltas.append(reg)
    return torch.stack(labels), torch.stack(deltas)


@torch.no_grad()
def sample_rois(props: torch.Tensor, targets: list[dict[str, torch.Tensor]], num_classes: int, *, rois: int,
                fg_fraction: float = 0.25, fg_iou: float = 0.5
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sampled RoIs per image from proposals N x P x 4 and the ground truth.

    Returns:
        (boxes N x R x 4, labels N x R (``num_classes`` = background), box targets N x R x 4,
        matched ground-truth index N x R (-1 for background)).
    """
    boxes, labels, regs, matched = [], [], [], []
    for p, t in zip(props, targets):
        gt = t["boxes"].to(p)
        cand = torch.cat([p, gt])
        lab = torch.full((len(cand),), num_classes, dtype=torch.long, device=p.device)
        idx = torch.full((len(cand),), -1, dtype=torch.long, device=p.device)
        if len(gt):
            best, which = box_iou(cand, gt).max(1)
            fg = best >= fg_iou
            lab = torch.where(fg, t["labels"].to(p.device)[which], lab)
            idx = torch.where(fg, which, idx)
        fg = lab < num_classes
        rand = torch.rand(len(cand), device=p.device)
        # foreground up to the fraction first, background next, spare foreground only to fill up
        fg_rank = torch.zeros_like(rand)
        fg_pos = torch.nonzero(fg).flatten()
        fg_rank[fg_pos[_take(rand[fg_pos], int(rois * fg_fraction))]] = 2.0
        priority = rand + fg_rank + (~fg).to(rand.dtype)
        pick = _take(priority, rois)
        if len(pick) < rois:  # fewer candidates than RoIs: repeat (counts stay static)
            pick = pick[torch.arange(rois, device=p.device) % len(pick)]
        b, i = cand[pick], idx[pick]
        reg = encode(gt[i.clamp(min=0)], b, BOX_WEIGHTS) if len(gt) else torch.zeros_like(b)
        boxes.append(b)
        labels.append(lab[pick])
        regs.append(reg)
        matched.append(i)
    return torch.stack(boxes), torch.stack(labels), torch.stack(regs), torch.stack(matched)


@torch.no_grad()
def mask_targets(boxes: torch.Tensor, matched: torch.Tensor, targets: list[dict[str, torch.Tensor]],
                 size: int) -> torch.Tensor:
    """Ground-truth masks of foreground RoIs: boxes N x R x 4, matched N x R -> K x size x size (K = foreground
    RoIs, image-major), 0/1 float."""
    out = []
    for b, m, t in zip(boxes, matched, targets):
        fg = m >= 0
        if not bool(fg.any()):
            continue
        masks = t["masks"][m[fg]].to(b.dtype)[:, None]  # K x 1 x H x W: one "image" per RoI
        cut = roi_align_torch(masks, b[fg][:, None], (size, size), 1.0, 2, aligned=True)
        out.append((cut[:, 0] >= 0.5).to(b.dtype))
    if not out:
        return boxes.new_zeros((0, size, size))
    return torch.cat(out)
