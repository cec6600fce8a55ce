"""Shared blocks: upsampling modes, bilinear init, width scaling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgeseg.models import create_model
from edgeseg.models.blocks import UPSAMPLE_MODES, ConvStack, SeparableConvBNReLU, Upsample, scale_width


@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
@pytest.mark.parametrize("factor", [2, 8])
def test_upsample_modes_shape(mode: str, factor: int) -> None:
    up = Upsample(6, 4, factor, mode)
    assert up(torch.randn(2, 6, 5, 7)).shape == (2, 4, 5 * factor, 7 * factor)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_project_then_interpolate_equals_interpolate_then_project(mode: str) -> None:
    up = Upsample(6, 4, 2, mode)
    x = torch.randn(1, 6, 8, 8)
    assert up.proj is not None
    reference = up.proj(F.interpolate(x, scale_factor=2.0, mode=mode))
    torch.testing.assert_close(up(x), reference, atol=1e-5, rtol=1e-5)


def test_bilinear_init_matches_bilinear_interpolation_inside() -> None:
    up = Upsample(3, 3, 8, "transpose", kernel_size=16, bilinear_init=True)
    x = torch.randn(1, 3, 6, 6)
    ref = F.interpolate(x, scale_factor=8.0, mode="bilinear", align_corners=False)
    with torch.no_grad():
        y = up(x)
    # Equal away from the border (the transposed conv sees zero padding there).
    torch.testing.assert_close(y[..., 8:-8, 8:-8], ref[..., 8:-8, 8:-8], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["unet_test", "fcn_test"])
@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
def test_models_accept_every_upsample_mode(name: str, mode: str) -> None:
    model = create_model(name, num_classes=3, in_channels=1, upsample=mode).eval()
    has_transpose = any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())
    assert has_transpose == (mode == "transpose")
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 3, 64, 64)


def test_conv_stack_and_separable() -> None:
    stack = ConvStack([3, 8, 8], separable=True)
    assert len(stack) == 2 and all(isinstance(m, SeparableConvBNReLU) for m in stack)
    assert len(ConvStack([8])) == 0
    assert stack(torch.randn(1, 3, 9, 9)).shape == (1, 8, 9, 9)


def test_scale_width() -> None:
    assert scale_width(64, 1.0) == 64
    assert scale_width(64, 0.25) == 16
    assert scale_width(512, 0.3) % 8 == 0
    assert scale_width(4, 0.5) == 8
