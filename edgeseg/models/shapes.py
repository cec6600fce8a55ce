"""Layer channel counts as plain data, so a checkpoint rebuilds a channel-pruned model from ints alone.

A pruned model differs from the one its constructor config builds only in the channel counts (and
depthwise group counts) of its convolutions and batch norms. :func:`layer_shapes` records those counts
as ``{module name: {field: int}}`` (no pickled modules, so ``torch.load(weights_only=True)`` can read
it); :func:`reshape_layers` rebuilds the constructor's model with them.
"""

from __future__ import annotations

from typing import Any

from torch import nn

CONV_FIELDS = ("in_channels", "out_channels", "groups")
NORM_FIELDS = ("num_features",)


class ShapeMismatch(ValueError):
    """Stored layer shapes do not fit the model the checkpoint's config builds."""


def _fields(module: nn.Module) -> tuple[str, ...] | None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return CONV_FIELDS
    if isinstance(module, nn.BatchNorm2d):
        return NORM_FIELDS
    return None


def layer_shapes(model: nn.Module) -> dict[str, dict[str, int]]:
    """``{module name: {in_channels, out_channels, groups} | {num_features}}`` for every conv and batch norm."""
    out = {}
    for name, module in model.named_modules():
        fields = _fields(module)
        if fields is not None:
            out[name] = {f: int(getattr(module, f)) for f in fields}
    return out


def _rebuilt(module: nn.Module, shape: dict[str, int]) -> nn.Module:
    """A fresh module like ``module`` with the channel counts of ``shape`` (weights are loaded after)."""
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(shape["num_features"], eps=module.eps, momentum=module.momentum, affine=module.affine,
                              track_running_stats=module.track_running_stats)
    kw = dict(kernel_size=module.kernel_size, stride=module.stride, padding=module.padding, dilation=module.dilation,
              groups=shape["groups"], bias=module.bias is not None, padding_mode=module.padding_mode)
    if isinstance(module, nn.ConvTranspose2d):
        return nn.ConvTranspose2d(shape["in_channels"], shape["out_channels"], output_padding=module.output_padding,
                                  **kw)
    return nn.Conv2d(shape["in_channels"], shape["out_channels"], **kw)


def reshape_layers(model: nn.Module, shapes: dict[str, dict[str, Any]]) -> list[str]:
    """Give ``model``'s convs and batch norms the channel counts in ``shapes``; returns the names changed.

    Raises:
        ShapeMismatch: a name in ``shapes`` is not a conv/batch norm of ``model``, or a count is not a
            positive int.
    """
    modules = dict(model.named_modules())
    changed = []
    for name, shape in shapes.items():
        module = modules.get(name)
        fields = _fields(module) if module is not None else None
        if fields is None:
            raise ShapeMismatch(f"layer '{name}' is not a convolution or batch norm of {type(model).__name__}")
        if set(shape) != set(fields) or not all(isinstance(v, int) and v > 0 for v in shape.values()):
            raise ShapeMismatch(f"layer '{name}': expected positive ints for {', '.join(fields)}, got {shape}")
        if all(getattr(module, f) == shape[f] for f in fields):
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, attr, _rebuilt(module, shape))
        changed.append(name)
    return changed


def check_state_shapes(model: nn.Module, state: dict[str, Any]) -> None:
    """Raise :class:`ShapeMismatch` naming the first tensor whose shape differs from ``model``'s."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ShapeMismatch(f"weights missing for {missing[:3]}" if missing else f"unexpected weights {extra[:3]}")
    for key, tensor in state.items():
        if tuple(own[key].shape) != tuple(tensor.shape):
            raise ShapeMismatch(f"'{key}' has shape {tuple(tensor.shape)} but the model expects "
                                f"{tuple(own[key].shape)}")
