"""What every converter shares during one export: the model, its data, the files written so far."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeseg.artifacts import ModelMeta
from edgeseg.data.preprocess import pad_to_stride, resize_chw, round_up_to_stride
from edgeseg.export.formats import ArtifactRecord
from edgeseg.recipe import ExportCfg, Recipe

PARITY_IMAGES = 4  # real validation images compared against PyTorch after every conversion
FP32_MAX_REL_ERR = 1e-3  # max |logit error| / max |logit|
FP32_MIN_AGREEMENT = 0.999  # argmax agreement


def _to_numpy(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


@dataclass
class ExportContext:
    """State of one ``export`` call; converters read it and add the files they wrote.

    Attributes:
        out: Output folder.
        model: The checkpoint's PyTorch model (eval, CPU): the reference for every parity check.
        meta: The checkpoint's metadata (precision fp32).
        recipe: Recipe whose data gives calibration (train split) and validation images.
        cfg: Export settings.
        precisions: Precisions asked for (fp32 always first).
        checkpoint: Path of the source checkpoint.
        onnx: ONNX files written so far, by role: fp32, fp16, int8 (shipped CPU INT8 only).
        artifacts: Records of everything written (shipped or not).
        notes: Things the user must know (fallbacks, skipped steps); printed and kept in export.json.
        shared: Results reused between converters (calibration ranges, accuracy of fp32).
    """

    out: Path
    model: torch.nn.Module
    meta: ModelMeta
    recipe: Recipe
    cfg: ExportCfg
    precisions: list[str]
    checkpoint: Path
    onnx: dict[str, Path] = field(default_factory=dict)
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    shared: dict[str, Any] = field(default_factory=dict)
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    _parity_inputs: list[np.ndarray] | None = None
    _val: Any = None

    def say(self, message: str, note: bool = False) -> None:
        """Print a progress line; ``note=True`` also keeps it in export.json's ``notes``."""
        print(f"export: {message}", flush=True)
        if note:
            self.notes.append(message)

    def add(self, record: ArtifactRecord) -> ArtifactRecord:
        self.artifacts.append(record)
        state = "shipped" if record.shipped else "NOT shipped"
        self.say(f"{record.format} {record.precision}: {record.path} [{state}]"
                 + (f" {record.reason}" if record.reason else ""))
        return record

    @property
    def input_hw(self) -> tuple[int, int]:
        """Export recipe's input size (``--set data.image_size=...`` applies) rounded up to the stride.

        Static exports get this size and the INT8 decision is timed at it.
        """
        return round_up_to_stride(self.recipe.data.size_hw, self.meta.stride)

    def val_dataset(self) -> Any:
        """The recipe's validation split at native resolution (built once)."""
        if self._val is None:
            from edgeseg.data import build_dataset

            self._val = build_dataset(self.recipe.data, "val", in_channels=self.meta.in_channels,
                                      train=False, num_classes=self.meta.num_classes)
        return self._val

    def parity_inputs(self) -> list[np.ndarray]:
        """A few real validation images, 1 x C x H x W, padded to the stride (resized for static exports)."""
        if self._parity_inputs is None:
            dataset = self.val_dataset()
            inputs = []
            for i in range(min(PARITY_IMAGES, len(dataset))):
                image = _to_numpy(dataset[i][0]).astype(np.float32)
                if self.cfg.dynamic:
                    image, _ = pad_to_stride(image, self.meta.stride)
                else:
                    image = resize_chw(image, self.input_hw)
                inputs.append(image[None])
            if not inputs:
                from edgeseg.export.formats import ExportError

                raise ExportError("the recipe's validation split is empty: parity needs real images; "
                                  "set data.val_ratio > 0 or pass --data RECIPE")
            self._parity_inputs = inputs
        return self._parity_inputs

    def reference_logits(self) -> list[np.ndarray]:
        """PyTorch FP32 logits of :meth:`parity_inputs` (computed once)."""
        if "reference_logits" not in self.shared:
            with torch.inference_mode():
                self.shared["reference_logits"] = [self.model(torch.from_numpy(x)).float().numpy()
                                                   for x in self.parity_inputs()]
        return self.shared["reference_logits"]

    def open(self, path: Path, **options: Any) -> Any:
        """An ONNX Runtime backend on ``path`` with this machine's cores (meta read from the file)."""
        from edgeseg.runtime.ort_rt import OrtBackend

        return OrtBackend(path, device="cpu", threads=self.threads, **options)

    def parity(self, backend: Any) -> dict[str, Any]:
        """Max abs / relative logit error and argmax agreement of ``backend`` against PyTorch."""
        return parity_figures(self.reference_logits(), [backend(x)[0] for x in self.parity_inputs()])

    def accuracy(self, backend: Any, label: str) -> dict[str, Any]:
        """mIoU, mean Dice, pixel accuracy over the whole validation split (native size)."""
        from edgeseg.evaluate import dataset_samples, evaluate_arrays

        dataset = self.val_dataset()
        m = evaluate_arrays(backend, dataset_samples(dataset), num_classes=self.meta.num_classes,
                            ignore_index=self.recipe.data.ignore_index, stride=self.meta.stride,
                            class_names=self.meta.classes, total=len(dataset), description=f"accuracy {label}")
        return {"split": "val", "num_images": m["num_images"], "miou": m["miou"], "mean_dice": m["mean_dice"],
                "pixel_accuracy": m["pixel_accuracy"]}


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
    return {"images": len(reference), "max_abs_err": max_abs, "max_rel_err": max_abs / max(scale, 1e-12),
            "argmax_agreement": agree / max(pixels, 1)}


def fp32_parity_ok(figures: dict[str, Any]) -> bool:
    """The bar every FP32 conversion must pass."""
    return figures["max_rel_err"] <= FP32_MAX_REL_ERR and figures["argmax_agreement"] >= FP32_MIN_AGREEMENT
