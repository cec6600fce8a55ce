"""Datasets: synthetic shapes and image/mask folders, behind one ``build_dataset`` call.

A dataset item is ``(image, mask)``: a normalised C x H x W float32 tensor and an H x W int64 tensor.
Training items are augmented fixed-size crops; evaluation items are whole images at native resolution.
``base``, ``preprocess`` and ``folder`` import no torch (the standalone bench runner reads folders with them);
``SegDataset``/``build_dataset`` load torch on first use.
"""

from __future__ import annotations

from typing import Any

from edgeseg.data.base import DataError, default_mean_std, load_image
from edgeseg.data.classes import resolve_classes
from edgeseg.data.preprocess import normalize, pad_to_stride, resize_chw, resize_labels

__all__ = ["DataError", "SegDataset", "build_dataset", "default_mean_std", "load_image", "normalize",
           "pad_to_stride", "resize_chw", "resize_labels", "resolve_classes"]


def __getattr__(name: str) -> Any:
    if name in ("SegDataset", "build_dataset"):
        from edgeseg.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'edgeseg.data' has no attribute {name!r}")
