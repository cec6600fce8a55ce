"""The SegModel contract shared by every segmentation family."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class SegModel(nn.Module):
    """Base class owning the forward contract.

    ``forward(x)`` takes ``N x C x H x W`` float input whose sides are multiples of ``stride`` and
    returns its outputs in ``output_names`` order (a tensor or a tuple, never a dict: dicts break
    export); semantic families return logits ``N x num_classes x H x W``. ``predict(x)`` adds the
    task's postprocess (argmax for semantic). Shape checks use ``torch._check``-free Python only on
    concrete shapes, so tracing and dynamo export stay clean.
    """

    # Class default; families with a configurable depth set ``self.stride`` per instance.
    stride: int = 1
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    # Training hooks of families that need more than ``forward(x)`` (two-stage: RoIs sampled from the targets)
    takes_targets: ClassVar[bool] = False  # training calls forward(x, targets), which returns the loss inputs
    loss_name: ClassVar[str | None] = None  # the model's own loss (edgeseg.train.losses.LOSSES), else the task's
    # Why structured pruning cannot be applied to this family ("" = it can); prune refuses with it up front.
    prune_refusal: ClassVar[str] = ""
    # Why the family exports at one input size only ("" = dynamic axes work); export refuses dynamic with it.
    dynamic_export_refusal: ClassVar[str] = ""
    config: dict[str, Any]

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}")
        self.num_classes = num_classes
        self.in_channels = in_channels

    def check_input(self, x: torch.Tensor) -> None:
        """Clear error for a wrong rank, channel count or a side not divisible by the stride."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
            return
        if x.dim() != 4:
            raise ValueError(f"{type(self).__name__}: expected N x C x H x W input, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: expected {self.in_channels} input channels, "
                             f"got {x.shape[1]}")
        h, w = int(x.shape[2]), int(x.shape[3])
        if h % self.stride or w % self.stride:
            raise ValueError(f"{type(self).__name__}: input sides must be multiples of {self.stride}, "
                             f"got {h}x{w} (pad to {-(-h // self.stride) * self.stride}x"
                             f"{-(-w // self.stride) * self.stride})")

    def export_form(self) -> SegModel:
        """The module ONNX export writes: the model itself, unless the family has a faster graph with the
        same weights and outputs (SegNet: mask unpooling instead of pool indices)."""
        return self

    def unwrapped_parameters(self) -> list[tuple[nn.Parameter, int | None]]:
        """Parameters outside standard layers, each with its channel axis (None: it has none, never pruned).

        Structured pruning (``edgeseg.compress.prune_graph``) cannot tell what such a parameter's axes mean.
        """
        return []

    def with_postprocess(self, **thresholds: Any) -> nn.Module:
        """The module that exports the model with its postprocess inside the graph (instance families:
        fixed detection slots). A family without one says so."""
        raise NotImplementedError(f"{type(self).__name__} has no in-graph postprocess")

    @property
    def task(self) -> str:
        """The registry's task of this variant (``semantic`` for an unregistered subclass)."""
        from edgeseg.models.registry import get_model_info

        name = getattr(self, "config", {}).get("name")
        return get_model_info(name).task if name else "semantic"

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> Any:
        """The task's decoded predictions: semantic, a class-index map ``N x H x W`` (int64)."""
        from edgeseg.tasks import by_name, get_task

        outputs = by_name(self.output_names, self(x))
        return get_task(self.task).decode_torch(outputs, input_hw=(int(x.shape[-2]), int(x.shape[-1])))


def model_stride(model: nn.Module, default: int = 1) -> int:
    """Output stride of a BUILT model (its ``stride``, set per instance where the depth is configurable).

    Artifacts record this, not the registry's per-variant default: ``model.args.depth=5`` on a
    stride-16 variant builds a stride-32 network.
    """
    model = getattr(model, "module", model)  # DDP
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return int(getattr(model, "stride", default))
