"""Confusion-matrix semantic segmentation metrics (numpy only, so the bench runner can use them).

Conventions (documented in README):
- pixels whose target equals ``ignore_index`` are left out entirely;
- per-class IoU = TP / (TP + FP + FN), Dice = 2TP / (2TP + FP + FN);
- a class absent from both prediction and target (TP + FP + FN = 0) has an undefined IoU/Dice: it is
  reported as NaN and excluded from the means (mIoU, mean Dice);
- pixel accuracy = correct / counted pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ConfusionMatrix:
    """Accumulates a ``num_classes x num_classes`` matrix (rows: target, columns: prediction)."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one batch of class-index maps of equal shape."""
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        target = np.asarray(target).reshape(-1).astype(np.int64)
        if pred.shape != target.shape:
            raise ValueError(f"prediction and target sizes differ: {pred.size} vs {target.size}")
        keep = target != self.ignore_index if self.ignore_index is not None else np.ones_like(target, bool)
        pred, target = pred[keep], target[keep]
        bad = (target < 0) | (target >= self.num_classes)
        if bad.any():
            raise ValueError(f"target holds labels {sorted(set(target[bad].tolist()))[:5]} outside "
                             f"0..{self.num_classes - 1} (ignore_index={self.ignore_index})")
        self.matrix += np.bincount(target * self.num_classes + np.clip(pred, 0, self.num_classes - 1),
                                   minlength=self.num_classes ** 2).reshape(self.num_classes, -1)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix (e.g. from another DDP rank)."""
        self.matrix += other.matrix

    def compute(self, class_names: list[str] | None = None) -> dict[str, Any]:
        """Pixel accuracy, per-class and mean IoU/Dice (see module docstring for conventions)."""
        return metrics_from_confusion(self.matrix, class_names)


def metrics_from_confusion(matrix: np.ndarray, class_names: list[str] | None = None) -> dict[str, Any]:
    """Metrics dict from a confusion matrix (rows target, columns prediction)."""
    m = matrix.astype(np.float64)
    tp = np.diag(m)
    fp = m.sum(0) - tp
    fn = m.sum(1) - tp
    union = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        dice = np.where(union > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    total = m.sum()
    names = class_names or [f"class{i}" for i in range(len(tp))]
    present = union > 0
    return {
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "miou": float(np.nanmean(iou)) if present.any() else float("nan"),
        "mean_dice": float(np.nanmean(dice)) if present.any() else float("nan"),
        "iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
        "dice": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, dice)},
        "pixels": int(total),
    }
