"""Class weights for unbalanced data, computed once from the training split's masks (numpy only).

``median_frequency`` is SegNet's balancing (Eigen & Fergus): ``freq(c)`` is the pixels of class c
divided by the pixels of the images where c is present, and ``w(c) = median(freq) / freq(c)``.
``inverse_sqrt`` is a milder ``w(c) = freq(c) ** -0.5`` over all labelled pixels, scaled so its median
is 1. Pixels equal to ``ignore_index`` count for nothing; a class absent from the training split gets
weight 1 (it never occurs as a target, so its weight never applies).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.data.base import DataError
from edgeseg.recipe import RecipeError

METHODS = ("median_frequency", "inverse_sqrt")


@dataclass
class ClassWeights:
    """The weights a training run used, and what they came from (recorded in checkpoints and train.json)."""

    method: str  # "median_frequency", "inverse_sqrt" or "given"
    weights: list[float]
    pixels: list[int]  # labelled training pixels per class (empty for "given")
    images: int  # training images counted

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "weights": [round(w, 6) for w in self.weights], "pixels": self.pixels,
                "images": self.images}


def class_pixel_counts(masks: Iterable[np.ndarray], num_classes: int, ignore_index: int
                       ) -> tuple[np.ndarray, np.ndarray, int]:
    """Per class: labelled pixels, and pixels of the images where the class is present; plus the image count."""
    pixels = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    images = 0
    for mask in masks:
        labels = np.asarray(mask).ravel()
        labels = labels[labels != ignore_index]
        counts = np.bincount(labels, minlength=num_classes)[:num_classes]
        pixels += counts
        image_pixels[counts > 0] += labels.size
        images += 1
    return pixels, image_pixels, images


def compute_class_weights(spec: str | list[float], masks: Iterable[np.ndarray], *, num_classes: int,
                          ignore_index: int) -> ClassWeights:
    """Weights for ``spec``: a method name, or an explicit list (checked against ``num_classes``).

    Raises:
        RecipeError: a list of the wrong length, a non-positive weight, an unknown method.
        DataError: a training split without labelled pixels.
    """
    if not isinstance(spec, str):
        weights = [float(w) for w in spec]
        if len(weights) != num_classes or any(w <= 0 for w in weights):
            raise RecipeError(f"train.class_weights: expected {num_classes} positive numbers (one per class), "
                             f"got {spec}")
        return ClassWeights("given", weights, [], 0)
    if spec not in METHODS:
        raise RecipeError(f"train.class_weights: expected one of {METHODS} or a list of numbers, got {spec!r}")
    pixels, image_pixels, images = class_pixel_counts(masks, num_classes, ignore_index)
    present = pixels > 0
    if not present.any():
        raise DataError("train.class_weights: the training masks hold no labelled pixel (all ignore_index?)")
    if spec == "median_frequency":
        freq = np.where(present, pixels / np.maximum(image_pixels, 1), 0.0)
        raw = np.median(freq[present]) / np.where(present, freq, 1.0)
    else:
        freq = pixels / pixels.sum()
        raw = np.where(present, freq, 1.0) ** -0.5
        raw = raw / np.median(raw[present])
    weights = np.where(present, raw, 1.0)
    return ClassWeights(spec, [float(w) for w in weights], [int(p) for p in pixels], images)
