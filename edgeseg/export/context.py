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
from edgeseg.tasks import Task, by_name, get_task
from edgeseg.tasks.semantic import parity_figures  # noqa: F401  (re-exported: converters compare logits)

PARITY_IMAGES = 4  # real validation images compared against PyTorch after every conversion


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

    @property
    def task(self) -> Task:
        """The artifact's task: what parity and accuracy mean for it."""
        return get_task(self.meta.task)

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
            self._val = self.task.build_dataset(self.recipe.data, "val", in_channels=self.meta.in_channels,
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

    def reference_outputs(self) -> list[dict[str, np.ndarray]]:
        """PyTorch FP32 outputs by name of :meth:`parity_inputs` (computed once)."""
        if "reference_outputs" not in self.shared:
            names = list(getattr(self.model, "output_names", self.task.output_names))
            with torch.inference_mode():
                self.shared["reference_outputs"] = [
                    {k: v.float().numpy() for k, v in by_name(names, self.model(torch.from_numpy(x))).items()}
                    for x in self.parity_inputs()]
        return self.shared["reference_outputs"]

    def open(self, path: Path, **options: Any) -> Any:
        """An ONNX Runtime backend on ``path`` with this machine's cores (meta read from the file).

        Spinning is off: export keeps FP32 and INT8 sessions open together and times them in turn.
        """
        from edgeseg.runtime.ort_rt import OrtBackend

        return OrtBackend(path, device="cpu", threads=self.threads, **{"spinning": False, **options})

    def compare(self, backend: Any, reference: Any = None) -> dict[str, Any]:
        """The task's parity figures of ``backend`` against ``reference`` (a backend; default PyTorch)."""
        inputs = self.parity_inputs()
        ref = self.reference_outputs() if reference is None else [reference(x) for x in inputs]
        return self.task.parity(ref, [backend(x) for x in inputs], inputs)

    def parity(self, backend: Any) -> dict[str, Any]:
        """Output errors and decoded agreement of ``backend`` against PyTorch (semantic: argmax agreement)."""
        return self.compare(backend)

    def parity_ok(self, figures: dict[str, Any]) -> bool:
        """The task's FP32 bar."""
        return self.task.fp32_parity_ok(figures)

    def accuracy(self, backend: Any, label: str) -> dict[str, Any]:
        """The task's headline figures over the whole validation split (native size): mIoU, mean Dice and
        pixel accuracy, or mask AP (AP, AP50, AP75) and box AP."""
        from edgeseg.evaluate import dataset_samples, evaluate_arrays

        dataset = self.val_dataset()
        m = evaluate_arrays(backend, dataset_samples(dataset), num_classes=self.meta.num_classes,
                            ignore_index=self.recipe.data.ignore_index, stride=self.meta.stride,
                            class_names=self.meta.classes, total=len(dataset), description=f"accuracy {label}",
                            task=self.task)
        return {"split": "val", "num_images": m["num_images"], **{c.key: m.get(c.key) for c in self.task.columns}}

