"""Backbones returning multi-scale features (strides 8, 16, 32) for detection-style heads.

Written here because torchvision cannot be installed beside this CPU torch build. Two kinds:

- :class:`ResNet`: the classic residual network (basic or bottleneck blocks), for the full YOLACT.
- :class:`FusedMobileNet`: inverted residual blocks (expand -> project, residual on the narrow side)
  whose expansion is a full 3x3 convolution ("Fused-MBConv", EfficientNetV2) instead of a 1x1 +
  depthwise 3x3 pair. On x86 CPUs without VNNI ONNX Runtime's INT8 depthwise kernels are slower than
  FP32 (see ANCHORS.md), while dense 3x3 convolutions with channel counts that are multiples of 8/16
  gain 1.5-1.8x from INT8; the fused form keeps the mobile block's shape and quantizes well.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvBNAct(nn.Sequential):
    """Conv (no bias) + BatchNorm + ReLU (or no activation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 act: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _ResidualBlock(nn.Module):
    """``relu(body(x) + shortcut(x))``, the shortcut projected by a 1x1 conv when the shape changes."""

    def __init__(self, body: nn.Module, in_channels: int, out: int, stride: int) -> None:
        super().__init__()
        self.body = body
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out
                         else ConvBNAct(in_channels, out, 1, stride, act=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class BasicBlock(_ResidualBlock):
    """ResNet basic block: two 3x3 convs."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        out = width * self.expansion
        super().__init__(nn.Sequential(ConvBNAct(in_channels, width, 3, stride), ConvBNAct(width, out, 3, act=False)),
                         in_channels, out, stride)


class Bottleneck(_ResidualBlock):
    """ResNet bottleneck block: 1x1 reduce, 3x3 (strided), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        out = width * self.expansion
        super().__init__(nn.Sequential(ConvBNAct(in_channels, width, 1), ConvBNAct(width, width, 3, stride),
                                       ConvBNAct(width, out, 1, act=False)), in_channels, out, stride)


class _StagedBackbone(nn.Module):
    """A stem then ``stages``; returns the features of every stage but the first (C3, C4, C5)."""

    stem: nn.Module
    stages: nn.ModuleList

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats[1:]


class ResNet(_StagedBackbone):
    """ResNet (He et al., 2016) returning C3, C4, C5 (strides 8, 16, 32).

    Args:
        in_channels: Input image channels.
        layers: Blocks per stage (ResNet-50: 3, 4, 6, 3).
        block: ``bottleneck`` or ``basic``.
        base_width: Width of the first stage (64 in the paper).
    """

    def __init__(self, in_channels: int, layers: Sequence[int] = (3, 4, 6, 3), block: str = "bottleneck",
                 base_width: int = 64) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers needs 4 values (blocks per stage), got {list(layers)}")
        if block not in ("bottleneck", "basic"):
            raise ValueError(f"block must be 'bottleneck' or 'basic', got {block!r}")
        cls: type[BasicBlock] | type[Bottleneck] = Bottleneck if block == "bottleneck" else BasicBlock
        self.stem = nn.Sequential(ConvBNAct(in_channels, base_width, 7, 2), nn.MaxPool2d(3, 2, 1))
        stages, c_in = [], base_width
        for i, n in enumerate(layers):
            width = base_width * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(cls(c_in, width, 2 if (j == 0 and i > 0) else 1))
                c_in = width * cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.out_channels = [base_width * 2 ** i * cls.expansion for i in (1, 2, 3)]


class FusedMBConv(nn.Module):
    """Inverted residual with a fused expansion: 3x3 conv ``c_in -> c_in * expand``, 1x1 project to ``c_out``.

    The residual connects the narrow ends when the shape is kept (stride 1, ``c_in == c_out``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expand: float = 2.0) -> None:
        super().__init__()
        hidden = max(8, int(round(in_channels * expand / 8)) * 8)
        self.expand = ConvBNAct(in_channels, hidden, 3, stride)
        self.project = ConvBNAct(hidden, out_channels, 1, act=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.expand(x))
        return x + y if self.residual else y


class FusedMobileNet(_StagedBackbone):
    """Mobile backbone of Fused-MBConv stages returning features at strides 8, 16, 32.

    Args:
        in_channels: Input image channels.
        stem: Channels of the stride-2 stem conv.
        widths: Output channels of the stages at strides 4, 8, 16, 32 (multiples of 8).
        depths: Blocks per stage (the first of each stage has stride 2).
        expand: Expansion ratio per stage.
    """

    def __init__(self, in_channels: int, stem: int = 16, widths: Sequence[int] = (24, 48, 96, 160),
                 depths: Sequence[int] = (1, 2, 3, 2), expand: Sequence[float] = (2, 2, 2, 2)) -> None:
        super().__init__()
        if not len(widths) == len(depths) == len(expand) == 4:
            raise ValueError("widths, depths and expand need 4 values each (stages at strides 4, 8, 16, 32)")
        self.stem = ConvBNAct(in_channels, stem, 3, 2)
        stages, c_in = [], stem
        for width, depth, e in zip(widths, depths, expand):
            blocks = []
            for j in range(depth):
                blocks.append(FusedMBConv(c_in, width, 2 if j == 0 else 1, e))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.out_channels = list(widths[1:])
