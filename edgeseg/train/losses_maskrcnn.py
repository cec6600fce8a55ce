"""Mask R-CNN losses (He et al., 2017), on the dict the model's training forward returns.

- RPN: binary cross-entropy of the objectness over the sampled anchors, smooth-L1 of the deltas of the
  positive ones; both divided by the number of sampled anchors (Faster R-CNN).
- Box head: cross-entropy over the sampled RoIs (background included), smooth-L1 of the deltas of the
  ground-truth class at the foreground RoIs, divided by the number of RoIs.
- Mask head: per-pixel binary cross-entropy of the ground-truth class' mask only (no competition
  between classes: the paper's decoupling of mask and class), averaged over foreground RoIs and pixels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class MaskRCNNLoss(nn.Module):
    """``criterion(outputs, targets) -> (loss, parts)``; the targets were already used by the model.

    Args:
        num_classes: Object classes (background is index ``num_classes``).
        rpn_weight, box_weight, mask_weight: Multipliers of the RPN terms, the box-head terms and the mask term.
        beta: Smooth-L1 transition (Detectron2 uses 0 for the box head: plain L1; the paper 1).
    """

    def __init__(self, num_classes: int, rpn_weight: float = 1.0, box_weight: float = 1.0, mask_weight: float = 1.0,
                 beta: float = 1.0 / 9) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.rpn_weight, self.box_weight, self.mask_weight, self.beta = rpn_weight, box_weight, mask_weight, beta

    def forward(self, outputs: dict[str, torch.Tensor], targets: Any) -> tuple[torch.Tensor, dict[str, float]]:
        del targets  # matched inside the model's training forward
        o = {k: v.float() if v.is_floating_point() else v for k, v in outputs.items()}
        sampled = o["rpn_labels"] >= 0
        count = sampled.sum().clamp(min=1)
        rpn_cls = F.binary_cross_entropy_with_logits(o["rpn_logits"][sampled], o["rpn_labels"][sampled].float(),
                                                     reduction="sum") / count
        pos = o["rpn_labels"] == 1
        rpn_box = F.smooth_l1_loss(o["rpn_deltas"][pos], o["rpn_targets"][pos], beta=self.beta,
                                   reduction="sum") / count
        labels = o["roi_labels"]
        cls = F.cross_entropy(o["cls_logits"], labels)
        fg = torch.nonzero(labels < self.num_classes).flatten()
        deltas = o["box_deltas"][fg, labels[fg]]
        box = F.smooth_l1_loss(deltas, o["roi_targets"][fg], beta=self.beta, reduction="sum") / max(len(labels), 1)
        if o["mask_logits"].numel():
            mask = F.binary_cross_entropy_with_logits(o["mask_logits"], o["mask_targets"])
        else:
            mask = o["mask_logits"].sum()  # no foreground RoI: zero, still connected to the graph
        loss = self.rpn_weight * (rpn_cls + rpn_box) + self.box_weight * (cls + box) + self.mask_weight * mask
        parts = {"rpn_cls": rpn_cls, "rpn_box": rpn_box, "cls": cls, "box": box, "mask": mask}
        return loss, {k: float(v.detach()) for k, v in parts.items()}
