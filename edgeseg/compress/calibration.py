"""Calibration data for static INT8: images of the TRAINING split only, at the recipe input size.

Calibrating (or validating) on the evaluation split makes accuracy figures of the INT8 model
optimistic; this module never builds anything but the ``train`` split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeseg.data.base import DataError
from edgeseg.data.preprocess import resize_chw

CALIBRATION_SPLIT = "train"


@dataclass
class CalibrationInfo:
    """What went into a calibration: split, image count (and how many distinct), size, seed."""

    split: str
    images: int
    distinct_images: int
    size: tuple[int, int]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size": list(self.size)}


def crop_or_resize(image: np.ndarray, hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random ``hw`` crop of a C x H x W image; a side smaller than ``hw`` is first resized up to fit."""
    _, h, w = image.shape
    th, tw = hw
    if h < th or w < tw:
        scale = max(th / h, tw / w)
        image = resize_chw(image, (max(th, round(h * scale)), max(tw, round(w * scale))))
        _, h, w = image.shape
    top = int(rng.integers(0, h - th + 1))
    left = int(rng.integers(0, w - tw + 1))
    return np.ascontiguousarray(image[:, top:top + th, left:left + tw], dtype=np.float32)


def calibration_images(data_cfg: Any, in_channels: int, *, count: int, size: tuple[int, int],
                       seed: int = 0, num_classes: int | None = None, task: str = "semantic"
                       ) -> tuple[Iterator[np.ndarray], CalibrationInfo]:
    """``count`` normalised 1 x C x H x W arrays from the training split (lazily), plus what they are.

    Images are visited in a seeded random order; with fewer training images than ``count`` the split
    is cycled, each visit with a different random crop.
    """
    from edgeseg.tasks import get_task

    dataset = get_task(task).build_dataset(data_cfg, CALIBRATION_SPLIT, in_channels=in_channels, train=False,
                                           num_classes=num_classes)
    n = len(dataset)
    if n == 0:
        raise DataError("the training split is empty: INT8 calibration needs training images")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(-(-count // n))])[:count]
    info = CalibrationInfo(CALIBRATION_SPLIT, count, len(set(order.tolist())), tuple(size), seed)

    def generate() -> Iterator[np.ndarray]:
        for idx in order:
            image = dataset[int(idx)][0]
            image = image.numpy() if hasattr(image, "numpy") else np.asarray(image)
            yield crop_or_resize(image.astype(np.float32), size, rng)[None]

    return generate(), info


class ArrayReader:
    """An ONNX Runtime ``CalibrationDataReader`` over an iterable of input arrays (one model input)."""

    def __init__(self, input_name: str, arrays: Iterable[np.ndarray]) -> None:
        self.input_name = input_name
        self._it = iter(arrays)

    def get_next(self) -> dict[str, np.ndarray] | None:
        arr = next(self._it, None)
        return None if arr is None else {self.input_name: arr}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (item := self.get_next()) is not None:
            yield item


def chunked(arrays: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Lists of at most ``size`` arrays: calibration collects per chunk so memory stays bounded."""
    chunk: list[np.ndarray] = []
    for arr in arrays:
        chunk.append(arr)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
