"""SegNet (Badrinarayanan et al., 2017): VGG16-BN encoder, decoder unpooling by stored max locations.

Three interchangeable unpooling forms share the same weights:

* ``indices``: ``max_pool2d(return_indices=True)`` + ``max_unpool2d`` (the paper's). PyTorch's dynamo
  exporter lowers it to MaxPool-with-indices + ScatterND, which ONNX Runtime runs but TensorRT cannot
  (no MaxUnpool, no MaxPool indices output).
* ``compare``: a mask of the max location built from ops every runtime has (MaxPool, Resize, Equal, Cast,
  Tile, Mul), then ``nearest_upsample(values) * mask``. Ties inside a 2x2 window (common: ReLU
  zeros) are broken like ``max_pool2d``'s indices, first maximum in row-major window order, so both forms
  give identical outputs for any non-NaN input.
* ``arith``: the same mask written with arithmetic and layout ops only (max-pool, sub, clamp, ceil, mul,
  reshape, permute, slice, cat): ExecuTorch's XNNPACK delegate has no comparison, nearest-upsample,
  strided-slice or index_put kernel, so this is the one form it runs whole (the others fall back to
  ExecuTorch's portable kernels). Identical to ``compare`` except where a window's max exceeds another
  element by less than the smallest float32 (denormals flushed to zero count as a tie).
"""

from __future__ import annotations

import copy

from collections.abc import Sequence
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.base import SegModel
from edgeseg.models.blocks import ConvStack, init_weights, scale_width
from edgeseg.models.registry import register_model

UnpoolMode = Literal["indices", "compare", "arith"]
UNPOOL_MODES: tuple[str, ...] = get_args(UnpoolMode)


# Row-major window position weights: among a window's maxima, the first one has the largest weight.
_FIRST_MAX_WEIGHTS = torch.tensor([[4.0, 3.0], [2.0, 1.0]])


def max_pool_mask(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2/2 max-pool plus a 0/1 mask (same shape as ``x``) marking each window's max location.

    Only one position per window is marked even on ties: the first maximum in row-major order
    (top-left, top-right, bottom-left, bottom-right), which is the one ``max_pool2d``'s indices select.
    The maxima are weighted 4/3/2/1 by window position and a second max-pool picks the largest weight:
    only contiguous whole-tensor ops, the fastest of the forms measured in ONNX Runtime (the strided-slice
    and DepthToSpace form it replaced: docs/export.md).
    """
    pooled = F.max_pool2d(x, 2, 2)
    at_max = (x == F.interpolate(pooled, scale_factor=2.0, mode="nearest")).to(x.dtype)
    weights = _FIRST_MAX_WEIGHTS.to(x.dtype).repeat(x.shape[-2] // 2, x.shape[-1] // 2)
    weighted = at_max * weights
    first = F.interpolate(F.max_pool2d(weighted, 2, 2), scale_factor=2.0, mode="nearest")
    return pooled, (weighted == first).to(x.dtype)


def mask_unpool(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Place ``values`` (N x C x h x w) at the max locations marked in ``mask`` (N x C x 2h x 2w)."""
    return F.interpolate(values, scale_factor=2.0, mode="nearest") * mask


# A module-level constant (not torch.ones in forward): torch.export bakes it into the delegate.
_REPEAT_2X2 = torch.ones(1, 1, 2, 1, 2)


def repeat_2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2x upsampling as a broadcast multiply + reshape (ops XNNPACK delegates)."""
    n, c, h, w = x.shape
    return (x.reshape(n * c, h, 1, w, 1) * _REPEAT_2X2.to(x.dtype)).reshape(n, c, 2 * h, 2 * w)


def max_pool_mask_arith(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`max_pool_mask` without comparisons, nearest resize or strided slices (same tie rule)."""
    n, c, hh, ww = x.shape
    h, w = hh // 2, ww // 2
    pooled = F.max_pool2d(x, 2, 2)
    # 0 at a window's max, 1 elsewhere: the difference to the max is >= 0, ceil(clamp(., 0, 1)) is 0 only at 0.
    below = torch.ceil(torch.clamp(repeat_2x(pooled) - x, 0.0, 1.0))
    below = below.reshape(n * c, h, 2, w, 2).permute(0, 2, 4, 1, 3).reshape(n * c, 4, h, w)
    b00, b01, b10 = below[:, 0:1], below[:, 1:2], below[:, 2:3]
    # First max in row-major window order; the last position is the max when none before it is.
    mask = torch.cat([1.0 - b00, (1.0 - b01) * b00, (1.0 - b10) * b00 * b01, b00 * b01 * b10], 1)
    mask = mask.reshape(n * c, 2, 2, h, w).permute(0, 3, 1, 4, 2).reshape(n, c, hh, ww)
    return pooled, mask


class SegNet(SegModel):
    """VGG-style encoder of ``len(widths)`` stages, each ending in a 2x2 max-pool; mirrored decoder.

    Args:
        num_classes: Output channels (logits).
        in_channels: Input image channels.
        widths: Channels per encoder stage (VGG16: 64, 128, 256, 512, 512); stride is ``2 ** len(widths)``.
        depths: 3x3 convs per stage (VGG16: 2, 2, 3, 3, 3); the decoder mirrors them.
        width_mult: Multiplier applied to ``widths`` (rounded to multiples of 8).
        separable: Depthwise-separable 3x3 units everywhere except the first encoder stage (a full-conv
            stem: a depthwise conv over the 1-3 channels of an image has too little capacity).
        unpool: ``indices`` (max_unpool2d), ``compare`` (TensorRT-friendly mask form, same result) or
            ``arith`` (the mask form ExecuTorch's XNNPACK delegate runs whole).
    """

    stride = 32
    # Set only while Torch-Pruning traces the model (edgeseg.compress.prune): see ``forward``.
    trace_unpool_coupling: bool = False

    def __init__(self, num_classes: int, in_channels: int, *, widths: Sequence[int] = (64, 128, 256, 512, 512),
                 depths: Sequence[int] = (2, 2, 3, 3, 3), width_mult: float = 1.0, separable: bool = False,
                 unpool: UnpoolMode = "indices") -> None:
        super().__init__(num_classes, in_channels)
        if unpool not in UNPOOL_MODES:
            raise ValueError(f"unpool must be one of {UNPOOL_MODES}, got {unpool!r}")
        if len(widths) != len(depths) or not widths or min(depths) < 1:
            raise ValueError(f"widths and depths need the same non-zero length and depths >= 1, "
                             f"got {tuple(widths)} and {tuple(depths)}")
        w = [scale_width(c, width_mult) for c in widths]
        self.unpool = unpool
        self.stride = 2 ** len(w)
        self.encoder = nn.ModuleList(
            ConvStack([in_channels if i == 0 else w[i - 1]] + [w[i]] * d, separable and i > 0)
            for i, d in enumerate(depths))
        # Decoder stage i (0 = finest) runs after unpooling into encoder stage i's resolution:
        # d convs w[i] -> w[i], the last one narrowing to w[i - 1]; stage 0's last conv is the head.
        self.decoder = nn.ModuleList(
            ConvStack([w[i]] * d + ([w[i - 1]] if i > 0 else []), separable) for i, d in enumerate(depths))
        self.head = nn.Conv2d(w[0], num_classes, 3, padding=1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        saved, pooled = [], []
        for stage in self.encoder:
            x = stage(x)
            if self.unpool == "indices":
                x, where = F.max_pool2d(x, 2, 2, return_indices=True)
            elif self.unpool == "arith":
                x, where = max_pool_mask_arith(x)
            else:
                x, where = max_pool_mask(x)
            saved.append(where)
            pooled.append(x)
        for i in reversed(range(len(self.decoder))):
            if self.trace_unpool_coupling:
                # Unpooling ties decoder channel c to encoder channel c through integer indices, which
                # carry no autograd edge; this zero-valued add shows the tie to a graph tracer so both
                # sides are pruned with the same channel indices.
                x = x + 0 * pooled[i]
            if self.unpool == "indices":
                x = F.max_unpool2d(x, saved[i], 2, 2)
            elif self.unpool == "arith":
                x = repeat_2x(x) * saved[i]
            else:
                x = mask_unpool(x, saved[i])
            x = self.decoder[i](x)
        return self.head(x)

    def with_unpool(self, unpool: UnpoolMode) -> SegNet:
        """A copy with the same weights (pruned channel counts included) and another unpooling form."""
        if unpool not in UNPOOL_MODES:
            raise ValueError(f"unpool must be one of {UNPOOL_MODES}, got {unpool!r}")
        twin = copy.deepcopy(self)
        twin.unpool = unpool
        twin.config = {**dict(getattr(self, "config", {})), "unpool": unpool}
        return twin

    def export_form(self) -> SegNet:
        """``compare`` unpooling for ONNX: identical outputs, the form TensorRT needs, and faster in ONNX
        Runtime than MaxPool-with-indices + ScatterND, which have no blocked or int8 kernels (measurements
        in docs/export.md)."""
        return self if self.unpool != "indices" else self.with_unpool("compare")


# ``unpool`` is spelled out in every variant's defaults so ``model.config`` always names the form.
@register_model("segnet", family="segnet", stride=32, unpool="indices",
                description="SegNet, VGG16-BN encoder (13 convs), index unpooling")
def segnet(*, num_classes: int, in_channels: int, **kwargs: Any) -> SegModel:
    """SegNet with a VGG16-BN encoder and a mirrored decoder."""
    return SegNet(num_classes, in_channels, **kwargs)


@register_model("segnet-lite", family="segnet", stride=16, widths=(16, 32, 64, 128), depths=(2, 2, 3, 3),
                separable=True, unpool="indices", description="SegNet, 4 stages 16-128, depthwise-separable convs")
def segnet_lite(*, num_classes: int, in_channels: int, **kwargs: Any) -> SegModel:
    """Edge SegNet: 4 narrow stages, depthwise-separable units after a full-conv stem."""
    return SegNet(num_classes, in_channels, **kwargs)


@register_model("segnet_test", family="segnet", stride=4, input_size=(32, 32), widths=(4, 8), depths=(1, 2),
                unpool="indices", description="Tiny SegNet for tests")
def segnet_test(*, num_classes: int, in_channels: int, **kwargs: Any) -> SegModel:
    """Tiny SegNet for tests."""
    return SegNet(num_classes, in_channels, **kwargs)
