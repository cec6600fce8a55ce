"""Accuracy of a loaded artifact on a whole split, through its own backend.

Two sources of evaluation data: a recipe (any dataset kind; needs torch, used by `edgeseg bench`) and
a folder ``ROOT/images`` + ``ROOT/masks`` read with numpy only (the standalone runner on a device).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.evaluate import evaluate_arrays


def _result(backend: Any, samples: Any, total: int, ignore_index: int, split: str, data: str) -> dict[str, Any]:
    meta = backend.meta
    res = evaluate_arrays(backend, samples, num_classes=meta.num_classes, ignore_index=ignore_index,
                          stride=meta.stride, class_names=meta.classes, total=total,
                          description=f"accuracy {split}")
    return {**res, "split": split, "data": data}


def recipe_accuracy(backend: Any, recipe: str | Path | None = None, split: str = "val") -> dict[str, Any]:
    """Metrics on ``split`` of ``recipe``'s data (default: the recipe stored in the artifact)."""
    from edgeseg.data import build_dataset
    from edgeseg.evaluate import dataset_samples
    from edgeseg.recipe import load_recipe, recipe_from_dict

    meta = backend.meta
    rcp = load_recipe(recipe) if recipe else recipe_from_dict(meta.recipe, source="the artifact's stored recipe")
    dataset = build_dataset(rcp.data, split, in_channels=meta.in_channels, num_classes=meta.num_classes)
    source = str(recipe) if recipe else f"stored recipe {rcp.name!r} ({rcp.data.kind})"
    return _result(backend, dataset_samples(dataset), len(dataset), rcp.data.ignore_index, split, source)


def folder_accuracy(backend: Any, root: str | Path, split: str = "val", *, mask_encoding: str = "auto",
                    val_ratio: float = 0.2, split_seed: int = 0) -> dict[str, Any]:
    """Metrics on a folder dataset's split, with numpy and PIL only (no torch)."""
    from edgeseg.data.base import normalize
    from edgeseg.data.folder import MaskDecoder, list_pairs, load_pairs

    meta = backend.meta
    ignore = int(meta.ignore_index)
    pairs = list_pairs(Path(root), split, val_ratio=val_ratio, test_ratio=0.0, split_seed=split_seed)
    decoder = MaskDecoder(mask_encoding, meta.num_classes, ignore, None, list(meta.classes))
    loaded = load_pairs(pairs, decoder, meta.in_channels)
    samples = ((normalize(image, meta.mean, meta.std), mask) for image, mask in loaded)
    return _result(backend, samples, len(loaded), ignore, split, str(root))
