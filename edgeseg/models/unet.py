"""U-Net (Ronneberger et al., 2015) and its depthwise-separable lite variant."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from edgeseg.models.base import SegModel
from edgeseg.models.blocks import ConvStack, Upsample, UpsampleMode, check_upsample_mode, init_weights
from edgeseg.models.registry import register_model


class UNet(SegModel):
    """Encoder-decoder with concatenated skips; ``depth`` 2x2 max-pools, so stride ``2 ** depth``.

    Args:
        num_classes: Output channels (logits).
        in_channels: Input image channels.
        base_width: Channels of the first level; level ``i`` has ``base_width * 2 ** i``.
        depth: Number of downsamplings.
        upsample: ``transpose`` (2x2 up-conv, the paper's), or ``nearest`` / ``bilinear`` + 1x1 conv.
        separable: Depthwise-separable 3x3 units everywhere except the first encoder stage (a full-conv
            stem: a depthwise conv over the 1-3 channels of an image has too little capacity).
        widths: Explicit per-level widths (``depth + 1`` values), overriding ``base_width``.
    """

    stride = 16

    def __init__(self, num_classes: int, in_channels: int, *, base_width: int = 64, depth: int = 4,
                 upsample: UpsampleMode = "transpose", separable: bool = False,
                 widths: Sequence[int] | None = None) -> None:
        super().__init__(num_classes, in_channels)
        check_upsample_mode(upsample)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        w = list(widths) if widths is not None else [base_width * 2 ** i for i in range(depth + 1)]
        if len(w) != depth + 1:
            raise ValueError(f"widths needs depth + 1 = {depth + 1} values, got {len(w)}")
        self.stride = 2 ** depth
        self.encoder = nn.ModuleList(
            ConvStack([in_channels if i == 0 else w[i - 1], w[i], w[i]], separable and i > 0)
            for i in range(depth + 1))
        self.pool = nn.MaxPool2d(2)
        # Decoder level i (0 = finest) maps w[i + 1] -> w[i], concatenates the skip, then two convs.
        self.ups = nn.ModuleList(Upsample(w[i + 1], w[i], 2, upsample) for i in range(depth))
        self.decoder = nn.ModuleList(ConvStack([2 * w[i], w[i], w[i]], separable) for i in range(depth))
        self.head = nn.Conv2d(w[0], num_classes, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](torch.cat([skips[i], self.ups[i](x)], dim=1))
        return self.head(x)


@register_model("unet", family="unet", stride=16, description="Classic U-Net, widths 64-1024, 2x2 up-convs")
def unet(*, num_classes: int, in_channels: int, **kwargs: Any) -> SegModel:
    """Classic U-Net (widths 64-128-256-512-1024, transposed-conv upsampling)."""
    return UNet(num_classes, in_channels, **kwargs)


@register_model("unet-lite", family="unet", stride=16, base_width=16, separable=True, upsample="bilinear",
                description="U-Net, widths 16-256, depthwise-separable convs, bilinear upsampling")
def unet_lite(*, num_classes: int, in_channels: int, **kwargs: Any) -> SegModel:
    """Edge U-Net: 1/4 widths, depthwise-separable units after a full-conv stem."""
    return UNet(num_classes, in_channels, **kwargs)


@register_model("unet_test", family="unet", stride=4, input_size=(32, 32), base_width=4, depth=2,
                description="Tiny U-Net for tests")
def unet_test(*, num_classes: int, in_channels: int, **kwargs: Any) -> SegModel:
    """Tiny U-Net for tests."""
    return UNet(num_classes, in_channels, **kwargs)
