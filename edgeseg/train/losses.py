"""Semantic segmentation losses: cross-entropy, focal, soft Dice, and sums; class weights and ignore_index."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg import catalog


class DiceLoss(nn.Module):
    """Soft multi-class Dice loss (1 - mean Dice over classes present in the batch), ignoring pixels.

    Classes absent from both target and prediction contribute nothing, matching the metric's convention.
    """

    def __init__(self, ignore_index: int = 255, class_weights: torch.Tensor | None = None, eps: float = 1.0):
        super().__init__()
        self.ignore_index = ignore_index
        self.eps = eps
        self.register_buffer("class_weights", class_weights if class_weights is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        valid = (target != self.ignore_index).unsqueeze(1)
        probs = logits.float().softmax(1) * valid
        onehot = F.one_hot(torch.where(valid.squeeze(1), target, 0), num_classes).permute(0, 3, 1, 2)
        onehot = onehot.to(probs.dtype) * valid
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        card = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.eps) / (card + self.eps)
        weights = torch.ones_like(dice) if self.class_weights is None else self.class_weights.to(dice)
        present = (onehot.sum(dims) > 0).to(dice)
        weights = weights * present
        return 1 - (dice * weights).sum() / weights.sum().clamp_min(1e-6)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al.): ``-w[c] (1 - p_c)^gamma log p_c``, a weighted mean over non-ignored pixels.

    Easy, confident pixels (mostly the frequent classes) contribute little, so rare classes weigh
    more even without class weights; ``gamma=0`` is weighted cross-entropy (same normalisation as
    ``nn.CrossEntropyLoss(weight=...)``).
    """

    def __init__(self, gamma: float = 2.0, ignore_index: int = 255, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.register_buffer("class_weights", class_weights if class_weights is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore_index
        safe = torch.where(valid, target, 0)
        logp = logits.float().log_softmax(1).gather(1, safe.unsqueeze(1)).squeeze(1)
        weights = valid.to(logp.dtype)
        if self.class_weights is not None:
            weights = weights * self.class_weights.to(logp)[safe]
        loss = -((1 - logp.exp()) ** self.gamma) * logp
        return (loss * weights).sum() / weights.sum().clamp_min(1e-6)


SEMANTIC_LOSSES = catalog.SEMANTIC_LOSSES


class SegLoss(nn.Module):
    """``ce``, ``dice``, ``focal`` or a ``+`` sum of them, with optional class weights and ignore_index.

    Class weights apply to every term: cross-entropy and focal weight each pixel by its class, Dice
    averages the per-class scores with the weights.
    """

    def __init__(self, kind: str = "ce+dice", ignore_index: int = 255, class_weights: list[float] | None = None,
                 focal_gamma: float = 2.0):
        super().__init__()
        if kind not in SEMANTIC_LOSSES:
            raise ValueError(f"train.loss: expected one of {SEMANTIC_LOSSES}, got {kind!r}")
        w = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        terms = kind.split("+")
        self.use_ce, self.use_dice, self.use_focal = "ce" in terms, "dice" in terms, "focal" in terms
        self.ce = nn.CrossEntropyLoss(weight=w, ignore_index=ignore_index)
        self.dice = DiceLoss(ignore_index, w)
        self.focal = FocalLoss(focal_gamma, ignore_index, w)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = logits.new_zeros(())
        if self.use_ce:
            loss = loss + self.ce(logits.float(), target)
        if self.use_focal:
            loss = loss + self.focal(logits, target)
        if self.use_dice:
            loss = loss + self.dice(logits, target)
        return loss


class SemanticCriterion(nn.Module):
    """The semantic task's criterion: :class:`SegLoss` on the ``logits`` output, as ``(loss, parts)``."""

    def __init__(self, kind: str = "ce+dice", ignore_index: int = 255, class_weights: list[float] | None = None,
                 focal_gamma: float = 2.0):
        super().__init__()
        self.loss = SegLoss(kind, ignore_index, class_weights, focal_gamma=focal_gamma)

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        from edgeseg.tasks.semantic import logits_of

        return self.loss(logits_of(outputs), target), {}


def _yolact_loss(**kwargs: Any) -> nn.Module:
    from edgeseg.train.losses_instance import YolactLoss

    return YolactLoss(**kwargs)


def _maskrcnn_loss(**kwargs: Any) -> nn.Module:
    from edgeseg.train.losses_maskrcnn import MaskRCNNLoss

    return MaskRCNNLoss(**kwargs)


# loss name (what a task's ``loss()`` or a model's ``loss_name`` gives) -> constructor
LOSSES: dict[str, Callable[..., nn.Module]] = {"segmentation": SemanticCriterion, "yolact": _yolact_loss,
                                               "maskrcnn": _maskrcnn_loss}


def criterion_for(task: Any, recipe: Any, model: nn.Module | None = None) -> nn.Module:
    """The loss module ``task`` asks for (or ``model``, when it names its own), built with its arguments from
    ``recipe``."""
    name, kwargs = task.loss(recipe)
    return LOSSES[getattr(model, "loss_name", None) or name](**kwargs)
