"""Accuracy of a loaded artifact on a whole split, through its own backend.

Three sources of evaluation data: a recipe (any dataset kind; needs torch, used by `edgeseg bench`),
a folder ``ROOT/images`` + ``ROOT/masks`` read with numpy and PIL, and a ``.npz`` of pixels and masks
(both for the standalone runner on a device). Each result names its data with a ``dataset``
fingerprint, so a report compares mIoU only between results measured on the same images.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.evaluate import evaluate_arrays


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _pairs_fingerprint(name: str, pairs: list[tuple[Path, Path]], split: str) -> dict[str, str]:
    # The split's file names: the same folder read by `edgeseg bench` (recipe) and by the runner agrees.
    return {"name": name, "split": split, "hash": _digest([[p.name for p in pair] for pair in pairs])}


def _result(backend: Any, samples: Any, total: int, ignore_index: int, split: str, data: str,
            dataset: dict[str, str]) -> dict[str, Any]:
    meta = backend.meta
    res = evaluate_arrays(backend, samples, num_classes=meta.num_classes, ignore_index=ignore_index,
                          stride=meta.stride, class_names=meta.classes, total=total,
                          description=f"accuracy {split}")
    return {**res, "split": split, "data": data, "dataset": dataset}


def recipe_accuracy(backend: Any, recipe: str | Path | None = None, split: str = "val") -> dict[str, Any]:
    """Metrics on ``split`` of ``recipe``'s data (default: the recipe stored in the artifact)."""
    from edgeseg.evaluate import dataset_samples
    from edgeseg.recipe import load_recipe, recipe_from_dict
    from edgeseg.tasks import get_task

    meta = backend.meta
    rcp = load_recipe(recipe) if recipe else recipe_from_dict(meta.recipe, source="the artifact's stored recipe")
    dataset = get_task(meta.task).build_dataset(rcp.data, split, in_channels=meta.in_channels, train=False,
                                                num_classes=meta.num_classes)
    source = str(recipe) if recipe else f"stored recipe {rcp.name!r} ({rcp.data.kind})"
    d = rcp.data
    if d.kind == "folder" and d.root is not None:
        from edgeseg.data.folder import list_pairs

        pairs = list_pairs(Path(d.root), split, val_ratio=d.val_ratio, test_ratio=d.test_ratio,
                           split_seed=d.split_seed)
        fingerprint = _pairs_fingerprint(Path(d.root).name, pairs, split)
    else:
        where = [str(d.root)] if d.kind != "synthetic" and d.root is not None else []
        fingerprint = {"name": f"{d.kind} ({rcp.name})", "split": split,
                       "hash": _digest([d.kind, d.synthetic.model_dump(mode="json"), d.size_hw, split, *where])}
    return _result(backend, dataset_samples(dataset), len(dataset), d.ignore_index, split, source, fingerprint)


def _semantic_only(meta: Any, source: str) -> None:
    from edgeseg.tasks import get_task

    if not get_task(meta.task).scores_class_masks:
        raise ValueError(f"{source}: class-index masks score semantic models only; this artifact is a "
                         f"{meta.task} model: bench it with `edgeseg bench --data RECIPE` for its accuracy")


def folder_accuracy(backend: Any, root: str | Path, split: str = "val", *, mask_encoding: str = "auto",
                    val_ratio: float = 0.2, split_seed: int = 0) -> dict[str, Any]:
    """Metrics on a folder dataset's split, with numpy and PIL only (no torch).

    The artifact's task reads the masks: class-index masks for semantic artifacts, instance-id masks
    (0 = background, one value per instance, one class) for instance ones, e.g. ``dsb2018-nuclei``.
    """
    from edgeseg.tasks import get_task

    meta = backend.meta
    samples, count, pairs = get_task(meta.task).folder_samples(Path(root), split, meta, mask_encoding=mask_encoding,
                                                              val_ratio=val_ratio, split_seed=split_seed)
    return _result(backend, samples, count, int(meta.ignore_index), split, str(root),
                   _pairs_fingerprint(Path(root).name, pairs, split))


def npz_accuracy(backend: Any, path: str | Path) -> dict[str, Any]:
    """Metrics on a ``.npz`` holding ``images`` (N x H x W [x C] uint8) and ``masks`` (N x H x W ints)."""
    from edgeseg.data.preprocess import normalize

    path = Path(path)
    meta = backend.meta
    _semantic_only(meta, str(path))
    with np.load(path) as npz:
        missing = [k for k in ("images", "masks") if k not in npz.files]
        if missing:
            raise ValueError(f"{path}: lacks the array {missing[0]!r}; expected 'images' (N x H x W x C uint8) "
                             f"and 'masks' (N x H x W class indices), found {npz.files}")
        images, masks = npz["images"], npz["masks"]
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[-1] != meta.in_channels:
        raise ValueError(f"{path}: 'images' is {images.dtype} {images.shape}; expected uint8 N x H x W x "
                         f"{meta.in_channels} (the artifact's input channels)")
    if masks.shape != images.shape[:3]:
        raise ValueError(f"{path}: 'masks' is {masks.shape}; expected {images.shape[:3]} (one mask per image)")
    samples = ((normalize(img, meta.mean, meta.std), m.astype(np.int64)) for img, m in zip(images, masks))
    h = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return _result(backend, samples, len(images), int(meta.ignore_index), "npz", str(path),
                   {"name": path.stem, "split": "npz", "hash": h})
