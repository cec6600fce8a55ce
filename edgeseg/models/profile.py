"""Parameter and MAC counts, and the model table behind ``edgeseg models``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgeseg.models.registry import create_model, get_model_info, list_models


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: tuple[int, int] = (256, 256), in_channels: int | None = None,
               batch_size: int = 1) -> int:
    """Multiply-accumulates of one forward pass in eval mode (FLOPs // 2, convs and matmuls).

    The pass runs on the meta device (shapes only, no compute, the model's own tensors untouched) and
    falls back to a real ``no_grad`` pass on the model's device for ops lacking a meta kernel.

    Args:
        model: Module whose ``forward`` takes one ``N x C x H x W`` tensor.
        input_size: ``(H, W)`` of the input.
        in_channels: Input channels; defaults to ``model.in_channels``.
        batch_size: Batch size of the counted pass.
    """
    c = in_channels if in_channels is not None else getattr(model, "in_channels", None)
    if c is None:
        raise ValueError(f"{type(model).__name__} has no in_channels attribute; pass in_channels")
    shape = (batch_size, c, *input_size)
    was_training = model.training
    model.eval()
    try:
        try:
            tensors = {k: torch.empty_like(t, device="meta")
                       for k, t in [*model.named_parameters(), *model.named_buffers()]}
            return _macs(lambda: torch.func.functional_call(model, tensors, (torch.empty(shape, device="meta"),)))
        except (NotImplementedError, RuntimeError):
            # Meta tensors cannot be computed on by some ops; a real pass counts the same MACs.
            device = next(model.parameters(), torch.empty(0)).device
            if device.type == "meta":
                raise
            with torch.no_grad():
                return _macs(lambda: model(torch.zeros(shape, device=device)))
    finally:
        model.train(was_training)


def _macs(run: Any) -> int:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops() // 2


def model_table(size: tuple[int, int] = (256, 256), *, num_classes: int = 2, in_channels: int = 3,
                include_test: bool = False) -> list[dict[str, Any]]:
    """One row per registered model: name, family, task, stride, input_size, params, gmacs, description.

    Models are built on the meta device (no weight memory). ``size`` is rounded up to a multiple of each
    model's stride. ``num_classes`` only moves the counts through the last layers.
    """
    rows = []
    for name in list_models(include_test=include_test):
        info = get_model_info(name)
        hw = (-(-size[0] // info.stride) * info.stride, -(-size[1] // info.stride) * info.stride)
        try:
            with torch.device("meta"):
                model = create_model(name, num_classes=num_classes, in_channels=in_channels)
            macs = count_macs(model, hw, in_channels)
        except (NotImplementedError, RuntimeError):  # a family that cannot run on meta: count on CPU
            model = create_model(name, num_classes=num_classes, in_channels=in_channels)
            macs = count_macs(model, hw, in_channels)
        rows.append({"name": name, "family": info.family, "task": info.task, "stride": info.stride,
                     "input_size": hw, "params": count_params(model),
                     "gmacs": round(macs / 1e9, 3),
                     "description": info.description})
    return rows
