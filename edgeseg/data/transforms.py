"""Joint image/mask transforms: random scale, pad + crop, flips, colour jitter (masks use nearest).

Written on torch tensors rather than with an augmentation library: the five operations below are all
segmentation training needs here, and keeping them on torch's global RNG makes an epoch's augmentation
depend only on the per-epoch seed, so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CropFlipAugment:
    """Random contrast/brightness, scale, pad + crop to ``size`` and flips, applied jointly to an image
    and an L x H x W stack of label maps (a semantic mask as L = 1, an instance mask stack as L = M).

    Args:
        size: Output (H, W).
        scale: Random resize factor range.
        hflip, vflip: Random flips.
        color_jitter: Contrast/brightness strength in normalised space.
    """

    size: tuple[int, int]
    scale: tuple[float, float] = (0.75, 1.25)
    hflip: bool = True
    vflip: bool = False
    color_jitter: float = 0.0

    def augment(self, image: torch.Tensor, labels: torch.Tensor, fill: int) -> tuple[torch.Tensor, torch.Tensor]:
        """image C x H x W float (normalised); labels L x H x W integer, padded with ``fill``."""
        if self.color_jitter > 0:
            image = _jitter(image, self.color_jitter)
        lo, hi = self.scale
        if hi > lo or lo != 1.0:
            image, labels = _rescale_stack(image, labels, lo + (hi - lo) * torch.rand(()).item())
        image, labels = _pad_to(image, labels, self.size, fill)
        th, tw = self.size
        h, w = labels.shape[-2:]
        top = int(torch.randint(0, h - th + 1, ()).item())
        left = int(torch.randint(0, w - tw + 1, ()).item())
        image, labels = image[:, top:top + th, left:left + tw], labels[:, top:top + th, left:left + tw]
        if self.hflip and torch.rand(()).item() < 0.5:
            image, labels = image.flip(-1), labels.flip(-1)
        if self.vflip and torch.rand(()).item() < 0.5:
            image, labels = image.flip(-2), labels.flip(-2)
        return image.contiguous(), labels.contiguous()


@dataclass(frozen=True)
class TrainTransform(CropFlipAugment):
    """Training augmentation producing fixed ``size`` crops from a normalised image and its mask."""

    ignore_index: int = 255

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image: C x H x W float (normalised); mask: H x W int64. Returns cropped copies."""
        image, labels = self.augment(image, mask[None], self.ignore_index)
        return image, labels[0]


def rescale(image: torch.Tensor, mask: torch.Tensor, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize by ``factor``: bilinear image, nearest mask (H x W)."""
    image, labels = _rescale_stack(image, mask[None], factor)
    return image, labels[0]


def _rescale_stack(image: torch.Tensor, labels: torch.Tensor, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = labels.shape[-2:]
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    if (nh, nw) == (h, w):
        return image, labels
    image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    if len(labels) == 0:  # an image without instances: torch cannot interpolate an empty stack
        return image, labels.new_zeros((0, nh, nw))
    labels = F.interpolate(labels[None].float(), size=(nh, nw), mode="nearest")[0].to(labels.dtype)
    return image, labels


def _pad_to(image: torch.Tensor, labels: torch.Tensor, size: tuple[int, int],
            fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad bottom/right to at least ``size``: image with 0 (the mean), labels with ``fill``."""
    h, w = labels.shape[-2:]
    ph, pw = max(0, size[0] - h), max(0, size[1] - w)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph), value=0.0)
        labels = F.pad(labels, (0, pw, 0, ph), value=fill)
    return image, labels


def _jitter(image: torch.Tensor, strength: float) -> torch.Tensor:
    """Random contrast and brightness in normalised space (factor in [1-s, 1+s], shift in [-s, s])."""
    contrast = 1.0 + strength * (2 * torch.rand(()).item() - 1)
    shift = strength * (2 * torch.rand(()).item() - 1)
    mean = image.mean()
    return (image - mean) * contrast + mean + shift
