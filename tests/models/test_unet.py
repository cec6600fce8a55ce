"""U-Net family specifics."""

from __future__ import annotations

import pytest
import torch

from edgeseg.models import create_model
from edgeseg.models.blocks import ConvBNReLU, SeparableConvBNReLU
from edgeseg.models.profile import count_macs


def test_unet_lite_has_20x_fewer_macs() -> None:
    with torch.device("meta"):
        full = create_model("unet", num_classes=2, in_channels=3)
        lite = create_model("unet-lite", num_classes=2, in_channels=3)
    assert count_macs(full, (256, 256)) >= 20 * count_macs(lite, (256, 256))


def test_classic_unet_layout() -> None:
    with torch.device("meta"):
        model = create_model("unet", num_classes=2, in_channels=1)
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512, 1024, 1024]
    assert model.stride == 16 and len(model.ups) == 4
    assert all(isinstance(u.up, torch.nn.ConvTranspose2d) and u.up.kernel_size == (2, 2) for u in model.ups)


def test_unet_lite_has_full_conv_stem_then_separable() -> None:
    model = create_model("unet-lite", num_classes=2, in_channels=1)
    assert all(isinstance(m, ConvBNReLU) for m in model.encoder[0])
    assert all(isinstance(m, SeparableConvBNReLU) for stage in model.encoder[1:] for m in stage)


@pytest.mark.parametrize("depth", [1, 3])
def test_depth_sets_stride(depth: int) -> None:
    model = create_model("unet_test", num_classes=2, depth=depth).eval()
    assert model.stride == 2 ** depth
    with torch.no_grad():
        assert model(torch.randn(1, 3, 2 ** depth * 3, 2 ** depth * 2)).shape == (1, 2, 2 ** depth * 3, 2 ** depth * 2)


def test_explicit_widths() -> None:
    model = create_model("unet_test", num_classes=2, widths=[8, 16, 24])
    assert model.head.in_channels == 8
    with pytest.raises(ValueError, match="depth \\+ 1"):
        create_model("unet_test", num_classes=2, widths=[8, 16])
