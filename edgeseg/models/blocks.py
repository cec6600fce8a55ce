"""Building blocks shared by every model family (conv stacks, upsampling, weight init)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

UpsampleMode = Literal["transpose", "nearest", "bilinear"]
UPSAMPLE_MODES: tuple[str, ...] = get_args(UpsampleMode)


class ConvBNReLU(nn.Sequential):
    """``Conv2d`` (no bias, "same" padding) + ``BatchNorm2d`` + ``ReLU``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3x3 conv-BN-ReLU followed by pointwise 1x1 conv-BN-ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            ConvBNReLU(in_channels, in_channels, 3, groups=in_channels),
            ConvBNReLU(in_channels, out_channels, 1),
        )


def conv3x3(in_channels: int, out_channels: int, separable: bool = False) -> nn.Module:
    """A 3x3 conv-BN-ReLU unit, depthwise-separable when ``separable``."""
    if separable:
        return SeparableConvBNReLU(in_channels, out_channels)
    return ConvBNReLU(in_channels, out_channels, 3)


class ConvStack(nn.Sequential):
    """Consecutive 3x3 units mapping ``channels[i] -> channels[i + 1]`` (``len(channels) - 1`` units, maybe 0).

    Args:
        channels: Channel counts, input first.
        separable: Use depthwise-separable units.
    """

    def __init__(self, channels: Sequence[int], separable: bool = False) -> None:
        super().__init__(*(conv3x3(c_in, c_out, separable) for c_in, c_out in zip(channels[:-1], channels[1:])))


def check_upsample_mode(mode: str) -> None:
    """Raise a clear ``ValueError`` for an unknown upsampling mode."""
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {mode!r}")


class Upsample(nn.Module):
    """Upsample by an integer ``factor`` while mapping ``in_channels -> out_channels``.

    ``transpose``: a learnable ``ConvTranspose2d`` (kernel ``kernel_size``, stride ``factor``).
    ``nearest`` / ``bilinear``: a 1x1 conv (only when the channel count changes) and interpolation.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        factor: Integer scale factor.
        mode: One of ``UPSAMPLE_MODES``.
        kernel_size: Transposed-conv kernel; ``factor`` (non-overlapping, U-Net) by default, ``2 * factor``
            for FCN-style overlapping kernels. ``kernel_size - factor`` must be even.
        bilinear_init: Initialise the transposed conv as per-channel bilinear interpolation (FCN);
            needs ``in_channels == out_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int = 2, mode: UpsampleMode = "transpose",
                 kernel_size: int | None = None, bilinear_init: bool = False) -> None:
        super().__init__()
        check_upsample_mode(mode)
        self.mode = mode
        self.factor = factor
        self.up: nn.ConvTranspose2d | None = None
        self.proj: nn.Conv2d | None = None
        if mode == "transpose":
            k = kernel_size or factor
            if (k - factor) % 2 or k < factor:
                raise ValueError(f"kernel_size - factor must be even and >= 0, got {k} and {factor}")
            self.up = nn.ConvTranspose2d(in_channels, out_channels, k, stride=factor, padding=(k - factor) // 2,
                                         bias=not bilinear_init)
            if bilinear_init:
                if in_channels != out_channels:
                    raise ValueError("bilinear_init needs in_channels == out_channels")
                with torch.no_grad():
                    self.up.weight.copy_(bilinear_kernel(in_channels, k))
        elif in_channels != out_channels:
            self.proj = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up is not None:
            return self.up(x)
        # A 1x1 conv commutes with nearest/bilinear interpolation (both linear, weights summing to 1),
        # so projecting first gives the same result as "interpolate, then 1x1 conv" at factor^2 fewer MACs.
        if self.proj is not None:
            x = self.proj(x)
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=float(self.factor), mode="nearest")
        return F.interpolate(x, scale_factor=float(self.factor), mode="bilinear", align_corners=False)


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """``channels x channels x k x k`` transposed-conv weight doing per-channel bilinear upsampling."""
    f = (kernel_size + 1) // 2  # the classic FCN ``upsample_filt``; equals ``factor`` when k == 2 * factor
    center = f - 1 if kernel_size % 2 else f - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / f
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt
    return weight


def scale_width(width: int, mult: float, divisor: int = 8) -> int:
    """``width * mult`` rounded to a multiple of ``divisor`` (SIMD/tensor-core friendly), at least ``divisor``."""
    if mult == 1.0:
        return width
    return max(divisor, int(width * mult + divisor / 2) // divisor * divisor)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan-out, ReLU) for convs, ones/zeros for BatchNorm; transposed convs are left alone."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
