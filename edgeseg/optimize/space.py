"""The search space of `edgeseg optimize`: architectures (variant, width, depth, pruning ratio, input size)
from a recipe's ``optimize:`` section, with the task's defaults from the catalog, and their timed forms
(one per precision)."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

from edgeseg import catalog
from edgeseg.errors import UserError
from edgeseg.recipe import OptimizeCfg, Recipe


class OptimizeError(UserError, ValueError):
    """`edgeseg optimize` cannot go on: the message names the option or file and what was expected."""


@dataclass(frozen=True)
class Candidate:
    """One architecture of the space; its forms are this architecture in each searched precision."""

    model: str
    width: float
    depth: int | None
    prune_ratio: float
    image_size: int
    args: tuple[tuple[str, Any], ...]  # model.args of the built model (sorted pairs: hashable)

    @property
    def id(self) -> str:
        depth = f"-d{self.depth}" if self.depth is not None else ""
        return f"{self.model}-w{self.width:g}{depth}-p{self.prune_ratio:g}-s{self.image_size}"

    def form(self, precision: str, suffix: str = ".onnx") -> str:
        """The name of this architecture's file in ``precision`` (what latency rows are matched by);
        ``suffix``: the target's file kind (``catalog.OPTIMIZE_SUFFIXES``)."""
        return f"{self.id}.{precision}{suffix}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "id": self.id, "args": dict(self.args)}

    def recipe(self, base: Recipe) -> Recipe:
        """``base`` with this architecture's model and input size (everything else as the user wrote it)."""
        rcp = base.model_copy(deep=True)
        rcp.model.name, rcp.model.args = self.model, dict(self.args)
        rcp.data.image_size = self.image_size
        return rcp


def _round(value: float, multiple: int = 4) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def scaled_args(name: str, base_args: dict[str, Any], width: float, depth: int | None) -> dict[str, Any]:
    """``model.args`` of variant ``name`` with its widths times ``width`` (and ``depth`` where the family
    has one). Families say how they are widened: U-Net by its base width, SegNet and FCN by their width
    multiplier, YOLACT by its FPN and prototype widths."""
    from edgeseg.models import get_model_info

    info = get_model_info(name)
    own = {**info.defaults, **base_args}
    args = dict(base_args)
    if info.family == "unet":
        args["base_width"] = _round(own.get("base_width", 64) * width)
        if depth is not None:
            args["depth"] = depth
    elif info.family in ("segnet", "fcn"):
        args["width_mult"] = round(own.get("width_mult", 1.0) * width, 4)
    elif info.family == "yolact":
        args["fpn_width"] = _round(own["fpn_width"] * width, 8)
        args["proto_width"] = _round(own["proto_width"] * width, 8)
    elif width != 1.0:
        raise OptimizeError(f"optimize.widths: model {name!r} (family {info.family}) has no width to scale; "
                            "use widths: [1.0] for it")
    return args


def _models(recipe: Recipe, cfg: OptimizeCfg) -> list[str]:
    from edgeseg.models import get_model_info

    task = get_model_info(recipe.model.name).task
    names = list(cfg.models) if cfg.models is not None else [recipe.model.name] + [
        n for n in catalog.OPTIMIZE_FAMILIES.get(task, ()) if n != recipe.model.name]
    for n in names:
        if get_model_info(n).task != task:  # also: an unknown name fails here, with a suggestion
            raise OptimizeError(f"optimize.models: {n!r} is an {get_model_info(n).task} model; the recipe's "
                                f"{recipe.model.name} is {task}")
    return names


def search_space(recipe: Recipe) -> list[Candidate]:
    """Every architecture of ``recipe.optimize`` (defaults where unset), the recipe's own model first."""
    from edgeseg.models import get_model_info

    cfg = recipe.optimize or OptimizeCfg()
    sizes = cfg.image_sizes or [recipe.data.size_hw[0]]
    found: dict[str, Candidate] = {}
    for name in _models(recipe, cfg):
        base = dict(recipe.model.args) if name == recipe.model.name else {}
        has_depth = get_model_info(name).family == "unet"
        depths = (cfg.depths or [None]) if has_depth else [None]
        for width, depth, ratio, size in itertools.product(cfg.widths, depths, cfg.prune_ratios, sizes):
            args = scaled_args(name, base, width, depth)
            cand = Candidate(model=name, width=width, depth=_depth(name, args), prune_ratio=ratio, image_size=size,
                             args=tuple(sorted(args.items())))
            found.setdefault(cand.id, cand)
    if not found or cfg.precisions == []:
        raise OptimizeError("optimize: the search space is empty (optimize.models, widths, prune_ratios and "
                            "precisions must each list at least one value)")
    return list(found.values())


def _depth(name: str, args: dict[str, Any]) -> int | None:
    """The encoder depth of a U-Net built with ``args`` (None: the family has no depth)."""
    from edgeseg.models import get_model_info

    info = get_model_info(name)
    return int({**info.defaults, **args}.get("depth", 4)) if info.family == "unet" else None


def precisions_for(cfg: OptimizeCfg, backend: str) -> list[str]:
    """The timed forms: ``optimize.precisions`` (duplicates dropped), else the target's defaults."""
    found = list(dict.fromkeys(cfg.precisions or catalog.OPTIMIZE_PRECISIONS[backend]))
    if backend == "executorch" and "fp16" in found:
        raise OptimizeError("optimize.precisions: fp16 is not a form of the executorch target (XNNPACK programs "
                            f"are fp32 or int8); expected {', '.join(catalog.OPTIMIZE_PRECISIONS[backend])}")
    return found


def own_candidate(recipe: Recipe, space: list[Candidate]) -> Candidate | None:
    """The recipe's own model as shipped (width 1, unpruned, its input size), when the space holds it."""
    own = (recipe.model.name, 1.0, _depth(recipe.model.name, dict(recipe.model.args)), 0.0, recipe.data.size_hw[0])
    return next((c for c in space if (c.model, c.width, c.depth, c.prune_ratio, c.image_size) == own), None)


__all__ = ["Candidate", "OptimizeError", "own_candidate", "precisions_for", "scaled_args", "search_space"]
