"""Model registry: name -> factory, filled by decorators in each family module.

Family modules are imported by name in :mod:`edgeseg.models` (no ``import *``); registering a name
twice raises. Each entry carries the defaults that export and bench read (input size, stride,
normalisation, output names), so nobody hand-writes dummy inputs.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from edgeseg.catalog import TASKS
from edgeseg.errors import UserError

Task = Literal[tuple(TASKS)]  # type: ignore[valid-type]


class UnknownModelError(UserError, KeyError):
    """A model name that is not registered; the message suggests the closest valid name."""


class ModelArgsError(UserError, ValueError):
    """Constructor arguments (``model.args``) the model family does not take."""


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a variant without building it."""

    name: str
    family: str
    task: Task
    factory: Callable[..., nn.Module]
    stride: int
    input_size: tuple[int, int] = (256, 256)
    output_names: tuple[str, ...] = ("logits",)
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, family: str, task: Task = "semantic", stride: int,
                   input_size: tuple[int, int] = (256, 256), output_names: tuple[str, ...] = ("logits",),
                   description: str = "", **defaults: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``factory`` under ``name``; ``defaults`` are its default keyword arguments."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].factory.__module__})")
        _REGISTRY[name] = ModelInfo(name=name, family=family, task=task, factory=factory, stride=stride,
                                    input_size=input_size, output_names=output_names,
                                    description=description or (factory.__doc__ or "").strip().split("\n")[0],
                                    defaults=dict(defaults))
        return factory

    return deco


def get_model_info(name: str) -> ModelInfo:
    """Registry entry for ``name``; unknown names get the closest valid name suggested."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}{hint} (available: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]


def list_models(task: Task | None = None, include_test: bool = False) -> list[str]:
    """Registered names, optionally only one task; ``*_test`` variants only when asked for."""
    return sorted(n for n, info in _REGISTRY.items()
                  if (task is None or info.task == task) and (include_test or not n.endswith("_test")))


def create_model(name: str, *, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``kwargs`` override the variant's defaults.

    The resulting module stores its full constructor arguments in ``model.config`` (name included),
    so a checkpoint can rebuild it, pruned shapes included.
    """
    info = get_model_info(name)
    args = {**info.defaults, **kwargs}
    try:
        model = info.factory(num_classes=num_classes, in_channels=in_channels, **args)
    except (TypeError, ValueError) as exc:  # an unknown keyword or a value the family rejects
        raise ModelArgsError(f"model {name!r}: bad constructor arguments (model.args / num_classes / in_channels) "
                             f"{sorted(kwargs)}: {exc}") from exc
    model.config = {"name": name, "num_classes": num_classes, "in_channels": in_channels, **args}
    return model
