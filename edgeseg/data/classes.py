"""Class names of a recipe's data: the one rule every stage uses (no torch)."""

from __future__ import annotations

from typing import Any

from edgeseg.data.base import DataError
from edgeseg.data.synthetic import class_names


def resolve_classes(data_cfg: Any, num_classes: int) -> list[str]:
    """Class names: ``data.classes``, else the palette's names, else the synthetic shapes, else class<i>."""
    names = list(data_cfg.classes)
    if not names and data_cfg.palette:
        names = [n for n in data_cfg.palette if n != "ignore"]
    if not names and data_cfg.kind == "synthetic":
        names = class_names(num_classes)
    if not names:
        names = ["background", "foreground"] if num_classes == 2 else [f"class{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise DataError(f"recipe field data.classes: has {len(names)} names {names} but model.num_classes is "
                        f"{num_classes}; give one name per class")
    return names
