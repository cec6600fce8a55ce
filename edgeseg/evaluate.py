"""Accuracy of any artifact through any backend, at the images' native resolution.

The inner loop (:func:`evaluate_arrays`) is numpy-only so the standalone bench runner can use it;
:func:`evaluate` adds artifact opening and dataset building.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.data.preprocess import pad_to_stride, resize_chw, resize_labels
from edgeseg.metrics.semantic import ConfusionMatrix
from edgeseg.runtime.base import Backend


def predict_labels(backend: Backend, image: np.ndarray, stride: int) -> np.ndarray:
    """Class-index map H x W for one normalised C x H x W image, at the image's own size.

    Dynamic-shape artifacts get the image padded to the stride; fixed-shape artifacts get it resized
    to their input size and the prediction resized back (nearest).
    """
    fixed = backend.inputs[0].fixed_hw
    h, w = image.shape[1:]
    if fixed is not None and fixed != (h, w):
        logits = backend(resize_chw(image, fixed)[None])[0]
        return resize_labels(logits[0].argmax(0), (h, w))
    padded, _ = pad_to_stride(image, stride)
    logits = backend(padded[None])[0]
    return logits[0, :, :h, :w].argmax(0)


def evaluate_arrays(backend: Backend, samples: Iterable[tuple[np.ndarray, np.ndarray]], *, num_classes: int,
                    ignore_index: int, stride: int, class_names: list[str] | None = None,
                    total: int | None = None, description: str = "eval") -> dict[str, Any]:
    """Metrics over (normalised C x H x W image, H x W mask) pairs; adds ``num_images``."""
    from edgeseg.progress import track

    cm = ConfusionMatrix(num_classes, ignore_index)
    count = 0
    for image, mask in track(samples, total=total, description=description):
        cm.update(predict_labels(backend, image, stride), mask)
        count += 1
    return {**cm.compute(class_names), "num_images": count}


def dataset_samples(dataset: Any) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """(image, mask) numpy pairs from a SegDataset in eval mode."""
    for i in range(len(dataset)):
        image, mask = dataset[i]
        yield image.numpy(), mask.numpy()


def evaluate(artifact: str | Path, *, recipe: str | Path | None = None, split: str = "val",
             backend: str | None = None, device: str = "cpu", threads: int | None = None,
             overrides: list[str] | None = None, trust_checkpoint: bool = False,
             custom_op_library: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint, ONNX/ORT file or engine on a split of its recipe's data.

    Args:
        artifact: model.pt, model.onnx, model.int8.onnx, model.ort, ...
        recipe: recipe describing the data; default: the recipe stored in the artifact.
        split: "train", "val" or "test"; the whole split is used.
        backend: runtime backend (default: by file suffix).
        device: "cpu" or "cuda".
        threads: intra-op threads.
        overrides: ``--set`` overrides applied to the recipe.
        trust_checkpoint: unpickle a checkpoint fully (only for files the user made himself).
        custom_op_library: native library for custom ONNX operators the user trusts.

    Returns:
        Metrics (miou, mean_dice, pixel_accuracy, per-class iou/dice) plus num_images, split, artifact.
    """
    from edgeseg import runtime
    from edgeseg.data import build_dataset
    from edgeseg.recipe import load_recipe, stored_recipe

    rt = runtime.open(artifact, backend=backend, device=device, threads=threads, trust_checkpoint=trust_checkpoint,
                      custom_op_library=custom_op_library)
    meta = rt.meta
    if recipe is not None:
        rcp = load_recipe(recipe, overrides)
    else:
        rcp = stored_recipe(meta.recipe, overrides, source=f"{artifact} (stored recipe)")
    dataset = build_dataset(rcp.data, split, in_channels=meta.in_channels, train=False,
                            num_classes=meta.num_classes)  # type: ignore[arg-type]
    result = evaluate_arrays(rt, dataset_samples(dataset), num_classes=meta.num_classes,
                             ignore_index=rcp.data.ignore_index, stride=meta.stride, class_names=meta.classes,
                             total=len(dataset), description=f"eval {split}")
    return {**result, "split": split, "artifact": str(artifact), "backend": rt.name,
            "precision": rt.precision}
