"""Semantic segmentation: one ``logits`` output (N x K x H x W), argmax decode, confusion-matrix metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeseg.data.preprocess import resize_labels
from edgeseg.tasks.base import MetricColumn, ParityBars, Placement, Task, output


def logits_of(outputs: dict[str, Any]) -> Any:
    """The ``logits`` output; a foreign single-output graph (e.g. a user's own ONNX file) is a logits map too."""
    return outputs[next(iter(outputs))] if len(outputs) == 1 else output(outputs, "logits")


class _SemanticMetric:
    def __init__(self, num_classes: int, ignore_index: int, class_names: list[str] | None) -> None:
        from edgeseg.metrics.semantic import ConfusionMatrix

        self.cm = ConfusionMatrix(num_classes, ignore_index)
        self.class_names = class_names

    def update(self, image_id: int, prediction: np.ndarray, target: np.ndarray) -> None:
        self.cm.update(prediction, target)

    def compute(self) -> dict[str, Any]:
        return self.cm.compute(self.class_names)


def parity_figures(reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, Any]:
    """Compare logits lists (N x K x H x W each): errors, and argmax agreement over all pixels."""
    max_abs, scale, agree, pixels = 0.0, 0.0, 0, 0
    for ref, out in zip(reference, outputs):
        out = np.asarray(out, dtype=np.float32)
        if out.shape != ref.shape:
            raise ValueError(f"output shape {out.shape} differs from PyTorch's {ref.shape}")
        max_abs = max(max_abs, float(np.abs(out - ref).max()))
        scale = max(scale, float(np.abs(ref).max()))
        agree += int((out.argmax(1) == ref.argmax(1)).sum())
        pixels += ref.shape[0] * ref.shape[2] * ref.shape[3]
    agreement = agree / max(pixels, 1)
    return {"images": len(reference), "max_abs_err": max_abs, "max_rel_err": max_abs / max(scale, 1e-12),
            "argmax_agreement": agreement, "agreement": agreement}


class SemanticTask(Task):
    """Per-pixel classes: U-Net, SegNet, FCN."""

    supports_distillation: ClassVar[bool] = True
    supports_class_weights: ClassVar[bool] = True
    scores_class_masks: ClassVar[bool] = True

    name: ClassVar[str] = "semantic"
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    headline: ClassVar[MetricColumn] = MetricColumn("miou", "mIoU")
    columns: ClassVar[tuple[MetricColumn, ...]] = (MetricColumn("miou", "mIoU"), MetricColumn("mean_dice", "mean Dice"),
                                                   MetricColumn("pixel_accuracy", "pixel accuracy"))
    report_columns: ClassVar[tuple[MetricColumn, ...]] = (MetricColumn("miou", "mIoU"),
                                                          MetricColumn("mean_dice", "mean Dice"))
    parity_bars: ClassVar[ParityBars] = ParityBars(fp32_max_rel_err=1e-3, fp32_min_agreement=0.999,
                                                   fp16_min_agreement=0.99, int8_min_agreement=0.90,
                                                   engine_min_agreement=0.98)
    has_postprocess: ClassVar[bool] = False

    def output_axes(self, name: str) -> dict[int, str]:
        return {0: "batch", 2: "height", 3: "width"}

    def decode(self, outputs: dict[str, np.ndarray], *, input_hw: tuple[int, int], image_hw: tuple[int, int],
               placement: Placement) -> list[np.ndarray]:
        logits = np.asarray(logits_of(outputs))
        h, w = image_hw
        if placement == "resize" and tuple(input_hw) != (h, w):
            return [resize_labels(one.argmax(0), (h, w)) for one in logits]
        return [one[:, :h, :w].argmax(0) for one in logits]

    def decode_torch(self, outputs: dict[str, Any], *, input_hw: tuple[int, int]) -> Any:
        return logits_of(outputs).argmax(1)

    def metrics_table(self, metrics: dict[str, Any]) -> tuple[list[str], list[list[Any]], str]:
        rows = [[name, iou, metrics["dice"].get(name)] for name, iou in metrics.get("iou", {}).items()]
        rows.append(["mean", metrics.get("miou"), metrics.get("mean_dice")])
        return (["class", "IoU", "Dice"], rows,
                f"pixel accuracy {_four(metrics.get('pixel_accuracy'))} over {metrics.get('num_images', '?')} images")

    def folder_samples(self, root: Any, split: str, meta: Any, *, mask_encoding: str = "auto",
                       val_ratio: float = 0.2, split_seed: int = 0) -> tuple[Any, int, list[Any]]:
        from edgeseg.data.folder import MaskDecoder, list_pairs, load_pairs
        from edgeseg.data.preprocess import normalize

        pairs = list_pairs(Path(root), split, val_ratio=val_ratio, test_ratio=0.0, split_seed=split_seed)
        decoder = MaskDecoder(mask_encoding, meta.num_classes, int(meta.ignore_index), None, list(meta.classes))
        loaded = load_pairs(pairs, decoder, meta.in_channels)
        return ((normalize(image, meta.mean, meta.std), mask) for image, mask in loaded), len(loaded), pairs

    def build_dataset(self, data_cfg: Any, split: str, *, in_channels: int, train: bool,
                      num_classes: int | None) -> Any:
        from edgeseg.data import build_dataset

        return build_dataset(data_cfg, split, in_channels=in_channels, train=train, num_classes=num_classes)

    def loss(self, recipe: Any) -> tuple[str, dict[str, Any]]:
        return "segmentation", {"kind": recipe.train.loss, "ignore_index": recipe.data.ignore_index,
                                "class_weights": recipe.train.class_weights, "focal_gamma": recipe.train.focal_gamma}

    def targets_to(self, targets: Any, device: Any) -> Any:
        return targets.to(device, non_blocking=True)

    def metric(self, *, num_classes: int, ignore_index: int, class_names: list[str] | None,
               options: dict[str, Any] | None = None) -> _SemanticMetric:
        return _SemanticMetric(num_classes, ignore_index, class_names)

    def parity(self, reference: list[dict[str, np.ndarray]], outputs: list[dict[str, np.ndarray]],
               inputs: list[np.ndarray]) -> dict[str, Any]:
        return parity_figures([logits_of(r) for r in reference], [logits_of(o) for o in outputs])

    def render(self, raw: np.ndarray, prediction: np.ndarray, meta: Any) -> dict[str, bytes]:
        from edgeseg.tasks.render import class_colours, overlay, png_bytes

        palette_cfg = (meta.recipe.get("data") or {}).get("palette")
        colours = class_colours(meta.num_classes, palette_cfg, meta.classes)
        labels = prediction.astype(np.uint8)
        return {"mask.png": png_bytes(labels, colours), "overlay.png": png_bytes(overlay(raw, labels, colours))}


def _four(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)
