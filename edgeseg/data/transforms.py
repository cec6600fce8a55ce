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
class TrainTransform:
    """Training augmentation producing fixed ``size`` crops from a normalised image and its mask."""

    size: tuple[int, int]
    scale: tuple[float, float] = (0.75, 1.25)
    hflip: bool = True
    vflip: bool = False
    color_jitter: float = 0.0
    ignore_index: int = 255

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image: C x H x W float (normalised); mask: H x W int64. Returns cropped copies."""
        if self.color_jitter > 0:
            image = _jitter(image, self.color_jitter)
        lo, hi = self.scale
        if hi > lo or lo != 1.0:
            s = lo + (hi - lo) * torch.rand(()).item()
            image, mask = rescale(image, mask, s)
        image, mask = _pad_to(image, mask, self.size, self.ignore_index)
        th, tw = self.size
        h, w = mask.shape
        top = int(torch.randint(0, h - th + 1, ()).item())
        left = int(torch.randint(0, w - tw + 1, ()).item())
        image, mask = image[:, top:top + th, left:left + tw], mask[top:top + th, left:left + tw]
        if self.hflip and torch.rand(()).item() < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        if self.vflip and torch.rand(()).item() < 0.5:
            image, mask = image.flip(-2), mask.flip(-2)
        return image.contiguous(), mask.contiguous()


def rescale(image: torch.Tensor, mask: torch.Tensor, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize by ``factor``: bilinear image, nearest mask."""
    h, w = mask.shape
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    if (nh, nw) == (h, w):
        return image, mask
    image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    mask = F.interpolate(mask[None, None].float(), size=(nh, nw), mode="nearest")[0, 0].long()
    return image, mask


def _pad_to(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int],
            ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad bottom/right to at least ``size``: image with 0 (the mean), mask with ignore_index."""
    h, w = mask.shape
    ph, pw = max(0, size[0] - h), max(0, size[1] - w)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph), value=0.0)
        mask = F.pad(mask, (0, pw, 0, ph), value=ignore_index)
    return image, mask


def _jitter(image: torch.Tensor, strength: float) -> torch.Tensor:
    """Random contrast and brightness in normalised space (factor in [1-s, 1+s], shift in [-s, s])."""
    contrast = 1.0 + strength * (2 * torch.rand(()).item() - 1)
    shift = strength * (2 * torch.rand(()).item() - 1)
    mean = image.mean()
    return (image - mean) * contrast + mean + shift
