"""Build the ModelMeta an artifact carries from a model and its recipe; check the recipe against the built
model and summarise the data it loaded."""

from __future__ import annotations

from typing import Any

from torch import nn

from edgeseg.artifacts import ModelMeta, edgeseg_version
from edgeseg.recipe import Recipe, RecipeError


def meta_for(model: nn.Module, recipe: Recipe, precision: str = "fp32") -> ModelMeta:
    """Metadata for ``model`` trained by ``recipe`` (classes, normalisation, sizes, recipe + hash).

    The stride and output names are the built model's (not the registry defaults); the input size is
    the recipe's.
    """
    from edgeseg.data import default_mean_std, resolve_classes
    from edgeseg.artifacts.checkpoint import unwrap
    from edgeseg.models import get_model_info
    from edgeseg.models.base import model_stride

    cfg = dict(unwrap(model).config)
    info = get_model_info(cfg["name"])
    mean, std = default_mean_std(recipe.data, cfg["in_channels"])
    args = {k: v for k, v in cfg.items() if k not in ("name", "num_classes", "in_channels")}
    return ModelMeta(model_name=cfg["name"], family=info.family, task=info.task,
                     num_classes=cfg["num_classes"], in_channels=cfg["in_channels"],
                     classes=resolve_classes(recipe.data, cfg["num_classes"]), mean=mean, std=std,
                     input_size=recipe.data.size_hw, stride=model_stride(model, info.stride), ignore_index=recipe.data.ignore_index,
                     model_args=args, recipe=recipe.to_dict(), recipe_hash=recipe.hash(), precision=precision,
                     edgeseg_version=edgeseg_version(), output_names=list(unwrap(model).output_names))


def check_image_size(recipe: Recipe, stride: int) -> None:
    """``data.image_size`` must be a multiple of the built model's stride (checked before anything is written)."""
    stride = max(1, int(stride))
    h, w = recipe.data.size_hw
    if h % stride or w % stride:
        def near(v: int) -> str:
            lo, hi = v // stride * stride, -(-v // stride) * stride
            return f"{lo} or {hi}" if lo else str(hi)

        raise RecipeError(f"recipe field data.image_size: {h}x{w} is not a multiple of {recipe.model.name}'s "
                          f"stride {stride} (use {near(h)}" + (f" by {near(w)}" if w != h else "") + ")")


def data_summary(recipe: Recipe, dataset: Any, split: str) -> dict[str, Any]:
    """What was loaded and how (kind, split, images; for semantic masks the encoding chosen), as recorded
    in checkpoints and train.json. Datasets without their own summary (instance data) get the basics."""
    own = getattr(dataset, "summary", None)
    if own:
        return dict(own)
    return {"kind": recipe.data.kind, "split": split, "images": len(getattr(dataset, "samples", dataset))}
