"""FCN-8s (Long et al., 2015) on a VGG16-BN-style encoder, with a slim conv6/conv7 head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.base import SegModel
from edgeseg.models.blocks import (ConvBNReLU, ConvStack, Upsample, UpsampleMode, check_upsample_mode, conv3x3,
                                   init_weights, scale_width)
from edgeseg.models.registry import register_model


class FCN8s(SegModel):
    """Five pooled VGG stages; class scores of pool3, pool4 and conv7 fused by 2x, 2x, then 8x upsampling.

    Args:
        num_classes: Output channels (logits).
        in_channels: Input image channels.
        widths: Channels of the five encoder stages (VGG16: 64, 128, 256, 512, 512).
        depths: 3x3 convs per stage (VGG16: 2, 2, 3, 3, 3).
        width_mult: Multiplier applied to ``widths`` and ``head_width`` (rounded to multiples of 8).
        head_width: Channels of conv6 (3x3) and conv7 (1x1), the slim stand-ins for VGG's fc6/fc7.
        separable: Depthwise-separable 3x3 units everywhere except the first encoder stage (a full-conv
            stem: a depthwise conv over the 1-3 channels of an image has too little capacity).
        upsample: ``transpose`` (learnable, bilinear-initialised, the paper's) or ``nearest`` / ``bilinear``.
    """

    stride = 32

    def __init__(self, num_classes: int, in_channels: int, *, widths: Sequence[int] = (64, 128, 256, 512, 512),
                 depths: Sequence[int] = (2, 2, 3, 3, 3), width_mult: float = 1.0, head_width: int = 1024,
                 separable: bool = False, upsample: UpsampleMode = "transpose") -> None:
        super().__init__(num_classes, in_channels)
        check_upsample_mode(upsample)
        if len(widths) != 5 or len(depths) != 5 or min(depths) < 1:
            raise ValueError(f"FCN-8s needs 5 stages (pool3 and pool4 skips) with depths >= 1, "
                             f"got widths {tuple(widths)} and depths {tuple(depths)}")
        w = [scale_width(c, width_mult) for c in widths]
        hw = scale_width(head_width, width_mult)
        self.encoder = nn.ModuleList(
            ConvStack([in_channels if i == 0 else w[i - 1]] + [w[i]] * d, separable and i > 0)
            for i, d in enumerate(depths))
        self.conv6 = conv3x3(w[4], hw, separable)
        self.conv7 = ConvBNReLU(hw, hw, 1)
        self.score_fr = nn.Conv2d(hw, num_classes, 1)
        self.score_pool4 = nn.Conv2d(w[3], num_classes, 1)
        self.score_pool3 = nn.Conv2d(w[2], num_classes, 1)
        k = num_classes
        self.up_fr = Upsample(k, k, 2, upsample, kernel_size=4, bilinear_init=True)
        self.up_pool4 = Upsample(k, k, 2, upsample, kernel_size=4, bilinear_init=True)
        self.up_final = Upsample(k, k, 8, upsample, kernel_size=16, bilinear_init=True)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        pooled = []
        for stage in self.encoder:
            x = F.max_pool2d(stage(x), 2, 2)
            pooled.append(x)
        score = self.up_fr(self.score_fr(self.conv7(self.conv6(x)))) + self.score_pool4(pooled[3])
        score = self.up_pool4(score) + self.score_pool3(pooled[2])
        return self.up_final(score)


@register_model("fcn8s", family="fcn", stride=32,
                description="FCN-8s, VGG16-BN encoder, 1024-ch conv6/conv7, learnable upsampling")
def fcn8s(*, num_classes: int, in_channels: int, **kwargs: Any) -> SegModel:
    """FCN-8s with a VGG16-BN encoder."""
    return FCN8s(num_classes, in_channels, **kwargs)


@register_model("fcn-lite", family="fcn", stride=32, width_mult=0.25, separable=True,
                description="FCN-8s, 1/4-width VGG encoder, depthwise-separable convs")
def fcn_lite(*, num_classes: int, in_channels: int, **kwargs: Any) -> SegModel:
    """Edge FCN-8s: 1/4 widths (16-128, head 256), depthwise-separable units after a full-conv stem."""
    return FCN8s(num_classes, in_channels, **kwargs)


@register_model("fcn_test", family="fcn", stride=32, input_size=(64, 64), widths=(4, 4, 8, 8, 8),
                depths=(1, 1, 1, 1, 1), head_width=8, description="Tiny FCN-8s for tests")
def fcn_test(*, num_classes: int, in_channels: int, **kwargs: Any) -> SegModel:
    """Tiny FCN-8s for tests."""
    return FCN8s(num_classes, in_channels, **kwargs)
