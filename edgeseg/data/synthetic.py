"""Seeded procedural shapes: overlapping discs, boxes, triangles, ... on textured backgrounds.

Every image is a pure function of (seed, split, index), so splits never overlap and need no files.
The class of a shape is its geometry (its colour is random), which a model must learn from form,
not colour. Each image also yields per-instance masks (visible part of every shape) for the
instance-segmentation models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeseg.data.base import DataError

SHAPE_KINDS = ("disc", "box", "triangle", "ring", "cross", "ellipse")
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
MIN_INSTANCE_PIXELS = 12


def class_names(num_classes: int) -> list[str]:
    """Background plus the first ``num_classes - 1`` shape kinds."""
    check_num_classes(num_classes)
    return ["background", *SHAPE_KINDS[:num_classes - 1]]


def check_num_classes(num_classes: int) -> None:
    if not 2 <= num_classes <= len(SHAPE_KINDS) + 1:
        raise DataError(f"recipe field model.num_classes: synthetic shapes support 2..{len(SHAPE_KINDS) + 1} "
                        f"classes (background + {', '.join(SHAPE_KINDS)}), got {num_classes}")


@dataclass
class ShapesSample:
    """One generated image (H x W x 3 uint8), its semantic mask and its visible instances."""

    image: np.ndarray
    mask: np.ndarray
    instance_masks: np.ndarray  # N x H x W bool
    instance_classes: np.ndarray  # N int64 (1-based class ids)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random texture: low-frequency noise around a random base colour, plus grain."""
    from PIL import Image

    base = rng.uniform(40, 215, 3)
    grid = rng.normal(0, 1, (6, 6, 3)).astype(np.float32)
    low = np.stack([np.asarray(Image.fromarray(grid[:, :, c], mode="F").resize((size, size), Image.BICUBIC))
                    for c in range(3)], axis=-1)
    img = base + 25.0 * low + rng.normal(0, 6, (size, size, 3))
    return img


def _shape_mask(kind: str, rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    cy, cx = rng.uniform(0.1, 0.9, 2) * size
    r = rng.uniform(0.07, 0.2) * size
    theta = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    if kind == "disc":
        return dx * dx + dy * dy <= r * r
    if kind == "box":
        a = r * rng.uniform(0.7, 1.0)
        return (np.abs(u) <= a) & (np.abs(v) <= a * rng.uniform(0.6, 1.0))
    if kind == "triangle":
        angles = theta + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        px, py = cx + 1.2 * r * np.cos(angles), cy + 1.2 * r * np.sin(angles)
        inside = np.ones_like(u, dtype=bool)
        for i in range(3):
            j = (i + 1) % 3
            cross = (px[j] - px[i]) * (yy - py[i]) - (py[j] - py[i]) * (xx - px[i])
            inside &= cross >= 0
        return inside
    if kind == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if kind == "cross":
        arm = r * 0.35
        return ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))
    if kind == "ellipse":
        a, b = r * 1.3, r * 0.45
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    raise ValueError(kind)


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def generate(seed: int, split: str, index: int, *, size: int, num_classes: int, max_shapes: int) -> ShapesSample:
    """The ``index``-th image of ``split``: deterministic in (seed, split, index)."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = _background(rng, size)
    bg_luma = _luma(img.mean(axis=(0, 1)))
    mask = np.zeros((size, size), np.int64)
    owner = np.full((size, size), -1, np.int64)
    classes = []
    for n in range(int(rng.integers(1, max_shapes + 1))):
        cls = int(rng.integers(1, num_classes))
        region = _shape_mask(SHAPE_KINDS[cls - 1], rng, size, yy, xx)
        if not region.any():
            continue
        # Keep shapes visible in gray too: resample colours too close to the background's luminance.
        for _ in range(20):
            colour = rng.uniform(0, 255, 3)
            if abs(_luma(colour) - bg_luma) >= 45:
                break
        shade = 1.0 + 0.15 * ((xx - xx.mean()) / size)[..., None]
        img[region] = (colour * shade[region]) + rng.normal(0, 6, (int(region.sum()), 3))
        mask[region] = cls
        owner[region] = n
        classes.append((n, cls))
    inst, inst_cls = [], []
    for n, cls in classes:
        visible = owner == n
        if visible.sum() >= MIN_INSTANCE_PIXELS:
            inst.append(visible)
            inst_cls.append(cls)
    inst_masks = np.stack(inst) if inst else np.zeros((0, size, size), bool)
    return ShapesSample(np.clip(img, 0, 255).astype(np.uint8), mask, inst_masks, np.asarray(inst_cls, np.int64))


def split_length(cfg: object, split: str) -> int:
    """Images in ``split`` per ``data.synthetic`` (num_train / num_val / num_test)."""
    syn = cfg.synthetic  # type: ignore[attr-defined]
    if split not in SPLIT_IDS:
        raise DataError(f"unknown split {split!r}: expected one of {', '.join(SPLIT_IDS)}")
    n = {"train": syn.num_train, "val": syn.num_val, "test": syn.num_test}[split]
    if n == 0:
        raise DataError(f"recipe field data.synthetic.num_{split}: the {split} split is empty (0 images)")
    return n
