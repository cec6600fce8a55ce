"""Joint transforms keep image and mask aligned; masks are never interpolated."""

from __future__ import annotations

import torch

from edgeseg.data.transforms import TrainTransform, rescale


def test_crop_flip_keep_alignment():
    torch.manual_seed(0)
    # The image encodes its own mask: channel 0 equals the label, so alignment is checkable.
    mask = torch.randint(0, 3, (40, 52))
    image = mask[None].float().repeat(2, 1, 1)
    t = TrainTransform(size=(32, 32), scale=(1.0, 1.0), hflip=True, vflip=True)
    for _ in range(10):
        x, y = t(image, mask)
        assert x.shape == (2, 32, 32) and y.shape == (32, 32)
        assert torch.equal(x[0].long(), y)


def test_rescale_uses_nearest_for_masks():
    mask = torch.randint(0, 4, (30, 30))
    image = torch.rand(3, 30, 30)
    x, y = rescale(image, mask, 1.5)
    assert x.shape == (3, 45, 45) and y.shape == (45, 45)
    assert set(y.unique().tolist()) <= set(mask.unique().tolist())


def test_small_images_are_padded_with_ignore():
    t = TrainTransform(size=(16, 16), scale=(1.0, 1.0), hflip=False, ignore_index=255)
    x, y = t(torch.ones(1, 8, 8), torch.zeros(8, 8, dtype=torch.long))
    assert (y == 255).sum() == 16 * 16 - 64 and (x == 0).sum() == 16 * 16 - 64


def test_color_jitter_changes_values_not_shape():
    torch.manual_seed(1)
    image = torch.rand(3, 16, 16)
    t = TrainTransform(size=(16, 16), scale=(1.0, 1.0), hflip=False, color_jitter=0.5)
    x, _ = t(image, torch.zeros(16, 16, dtype=torch.long))
    assert x.shape == image.shape and not torch.allclose(x, image)
