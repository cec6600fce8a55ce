"""Accuracy of any artifact through any backend, at the images' native resolution.

The inner loop (:func:`evaluate_arrays`) is numpy-only so the standalone bench runner can use it;
:func:`evaluate` adds artifact opening and dataset building.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.data.preprocess import pad_to_stride, resize_chw
from edgeseg.runtime.base import Backend
from edgeseg.tasks import Task, get_task
from edgeseg.tasks.base import Placement


def run_network(backend: Backend, image: np.ndarray, stride: int
                ) -> tuple[dict[str, np.ndarray], tuple[int, int], Placement]:
    """Outputs by name of one normalised C x H x W image, the size the network saw, and how it got there.

    Dynamic-shape artifacts get the image padded to the stride; fixed-shape artifacts get it resized
    to their input size.
    """
    fixed = backend.inputs[0].fixed_hw
    h, w = image.shape[1:]
    if fixed is not None and fixed != (h, w):
        return backend(resize_chw(image, fixed)[None]), tuple(fixed), "resize"
    padded, _ = pad_to_stride(image, stride)
    return backend(padded[None]), (padded.shape[1], padded.shape[2]), "pad"


def predict_image(backend: Backend, image: np.ndarray, stride: int, task: Task | None = None) -> Any:
    """The task's prediction for one normalised C x H x W image, at the image's own size.

    Semantic: an H x W class-index map; instance: ``Detections`` (boxes, scores, labels, H x W masks).
    """
    task = task or get_task(backend.meta.task)
    outputs, input_hw, placement = run_network(backend, image, stride)
    return task.decode(outputs, input_hw=input_hw, image_hw=(image.shape[1], image.shape[2]), placement=placement,
                       **task.decode_options(backend.meta))[0]


def predict_labels(backend: Backend, image: np.ndarray, stride: int) -> np.ndarray:
    """Class-index map H x W of a semantic artifact for one normalised C x H x W image."""
    return predict_image(backend, image, stride, get_task("semantic"))


def evaluate_arrays(backend: Backend, samples: Iterable[tuple[np.ndarray, Any]], *, num_classes: int,
                    ignore_index: int, stride: int, class_names: list[str] | None = None,
                    total: int | None = None, description: str = "eval", task: Task | None = None
                    ) -> dict[str, Any]:
    """The task's metrics over (normalised C x H x W image, numpy target) pairs; adds ``num_images``.

    ``task`` defaults to the artifact's own (``backend.meta.task``).
    """
    from edgeseg.progress import track

    task = task or get_task(backend.meta.task)
    metric = task.metric(num_classes=num_classes, ignore_index=ignore_index, class_names=class_names,
                         options=task.decode_options(backend.meta))
    count = 0
    for image, target in track(samples, total=total, description=description):
        metric.update(count, predict_image(backend, image, stride, task), target)
        count += 1
    return {**metric.compute(), "num_images": count}


def _numpy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _numpy(v) for k, v in value.items()}
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def dataset_samples(dataset: Any) -> Iterable[tuple[np.ndarray, Any]]:
    """(image, target) numpy pairs from a dataset in eval mode (a mask array, or a dict of arrays)."""
    for i in range(len(dataset)):
        image, target = dataset[i]
        yield _numpy(image), _numpy(target)


def evaluate(artifact: str | Path, *, recipe: str | Path | None = None, split: str = "val",
             backend: str | None = None, device: str = "cpu", threads: int | None = None,
             overrides: list[str] | None = None, trust_checkpoint: bool = False,
             custom_op_library: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint, ONNX/ORT file or engine on a split of its recipe's data.

    Args:
        artifact: model.pt, model.onnx, model.int8.onnx, model.ort, ...
        recipe: recipe describing the data; default: the recipe stored in the artifact. An ONNX file
            without edgeseg metadata needs it (classes and normalisation come from it).
        split: "train", "val" or "test"; the whole split is used.
        backend: runtime backend (default: by file suffix).
        device: "cpu" or "cuda".
        threads: intra-op threads.
        overrides: ``--set`` overrides applied to the recipe.
        trust_checkpoint: unpickle a checkpoint fully (only for files the user made himself).
        custom_op_library: native library for custom ONNX operators the user trusts.

    Returns:
        The task's metrics (semantic: miou, mean_dice, pixel_accuracy, per-class iou/dice; instance:
        mask_ap, mask_ap50, mask_ap75, box_ap, ...) plus num_images, split, artifact.
    """
    from edgeseg.foreign import open_artifact
    from edgeseg.recipe import load_recipe, stored_recipe

    rt = open_artifact(artifact, recipe=recipe, overrides=overrides, command="eval", backend=backend, device=device,
                       threads=threads, trust_checkpoint=trust_checkpoint, custom_op_library=custom_op_library)
    meta = rt.meta
    if recipe is not None:
        rcp = load_recipe(recipe, overrides)
    else:
        rcp = stored_recipe(meta.recipe, overrides, source=f"{artifact} (stored recipe)")
    dataset = get_task(meta.task).build_dataset(rcp.data, split, in_channels=meta.in_channels, train=False,
                                                num_classes=meta.num_classes)
    result = evaluate_arrays(rt, dataset_samples(dataset), num_classes=meta.num_classes,
                             ignore_index=rcp.data.ignore_index, stride=meta.stride, class_names=meta.classes,
                             total=len(dataset), description=f"eval {split}")
    return {**result, "task": meta.task, "split": split, "artifact": str(artifact), "backend": rt.name,
            "precision": rt.precision}
