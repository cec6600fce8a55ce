"""SegNet (Badrinarayanan et al., 2017): VGG16-BN encoder, decoder unpooling by stored max locations.

Two interchangeable unpooling forms share the same weights:

* ``indices``: ``max_pool2d(return_indices=True)`` + ``max_unpool2d`` (the paper's). PyTorch's dynamo
  exporter lowers it to MaxPool-with-indices + ScatterND, which ONNX Runtime runs but TensorRT cannot
  (no MaxUnpool, no MaxPool indices output).
* ``compare``: a mask of the max location built from ops every runtime has (MaxPool, Resize, Equal, Slice,
  Mul, DepthToSpace), then ``nearest_upsample(values) * mask``. Ties inside a 2x2 window (common: ReLU
  zeros) are broken like ``max_pool2d``'s indices, first maximum in row-major window order, so both forms
  give identical outputs for any non-NaN input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.base import SegModel
from edgeseg.models.blocks import ConvStack, init_weights, scale_width
from edgeseg.models.registry import register_model

UnpoolMode = Literal["indices", "compare"]
UNPOOL_MODES: tuple[str, ...] = get_args(UnpoolMode)


def max_pool_mask(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2/2 max-pool plus a 0/1 mask (same shape as ``x``) marking each window's max location.

    Only one position per window is marked even on ties: the first maximum in row-major order
    (top-left, top-right, bottom-left, bottom-right), which is the one ``max_pool2d``'s indices select.
    """
    pooled = F.max_pool2d(x, 2, 2)
    eq = (x == F.interpolate(pooled, scale_factor=2.0, mode="nearest")).to(x.dtype)
    e00, e01 = eq[..., 0::2, 0::2], eq[..., 0::2, 1::2]
    e10, e11 = eq[..., 1::2, 0::2], eq[..., 1::2, 1::2]
    k01 = e01 * (1 - e00)
    k10 = e10 * (1 - e00) * (1 - e01)
    k11 = e11 * (1 - e00) * (1 - e01) * (1 - e10)
    # Channel order c * 4 + (2 * row + col) is what pixel_shuffle (DepthToSpace) expects.
    mask = F.pixel_shuffle(torch.stack([e00, k01, k10, k11], dim=2).flatten(1, 2), 2)
    return pooled, mask


def mask_unpool(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Place ``values`` (N x C x h x w) at the max locations marked in ``mask`` (N x C x 2h x 2w)."""
    return F.interpolate(values, scale_factor=2.0, mode="nearest") * mask


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
        unpool: ``indices`` (max_unpool2d) or ``compare`` (TensorRT-friendly mask form, same result).
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
            x = F.max_unpool2d(x, saved[i], 2, 2) if self.unpool == "indices" else mask_unpool(x, saved[i])
            x = self.decoder[i](x)
        return self.head(x)


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
