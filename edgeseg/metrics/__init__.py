"""Segmentation metrics."""

from edgeseg.metrics.semantic import ConfusionMatrix, metrics_from_confusion

__all__ = ["ConfusionMatrix", "metrics_from_confusion"]
