"""Image pre-processing shared by training, evaluation, export and the device runner (numpy + PIL, no torch).

Normalisation turns a decoded H x W x C uint8 image into the C x H x W float32 a model takes; the
size helpers fit such an array to what an artifact accepts (a multiple of its stride, or its fixed
input) and bring label maps back to the image's own size.
"""

from __future__ import annotations

import numpy as np


def normalize(raw: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """H x W x C uint8 -> C x H x W float32: ``(raw / 255 - mean) / std`` per channel."""
    x = raw.astype(np.float32).transpose(2, 0, 1) / 255.0
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((x - m) / s)


def pad_to_stride(image: np.ndarray, stride: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Zero-pad a C x H x W array (zero = the mean after normalisation) at bottom/right to the stride.

    Returns the padded array and the original (H, W), to crop the prediction back.
    """
    _, h, w = image.shape
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        image = np.pad(image, ((0, 0), (0, ph), (0, pw)), mode="constant")
    return image, (h, w)


def round_up_to_stride(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """(H, W) rounded up to multiples of ``stride``."""
    return -(-hw[0] // stride) * stride, -(-hw[1] // stride) * stride


def resize_chw(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a C x H x W float array to ``hw`` (channel by channel, float32)."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(c.astype(np.float32), mode="F").resize(
        (hw[1], hw[0]), Image.BILINEAR)) for c in image])


def resize_labels(labels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an H x W label map to ``hw`` (int32)."""
    from PIL import Image

    return np.asarray(Image.fromarray(labels.astype(np.int32), mode="I").resize((hw[1], hw[0]), Image.NEAREST))
