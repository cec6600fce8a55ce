"""The Task interface: everything that differs between semantic and instance segmentation.

Stages never ask which model they hold; they look the task up from the artifact's metadata
(``ModelMeta.task``) with :func:`edgeseg.tasks.get_task` and call it. This module imports no torch:
the standalone bench runner decodes and scores outputs with the numpy half of a task; the methods
that need torch (loss, collation, torch decode, datasets) import it when called.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

Placement = Literal["pad", "resize"]


@dataclass(frozen=True)
class MetricColumn:
    """One accuracy figure a task reports: result key, short label, and whether higher is better."""

    key: str
    label: str
    fmt: str = ".4f"


class Metric(Protocol):
    """An accumulating accuracy metric over (prediction, target) pairs of whole images."""

    def update(self, image_id: int, prediction: Any, target: Any) -> None: ...

    def compute(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ParityBars:
    """Minimum agreement with the reference each kind of conversion must reach."""

    fp32_max_rel_err: float
    fp32_min_agreement: float
    fp16_min_agreement: float
    int8_min_agreement: float
    engine_min_agreement: float


class OutputsError(ValueError):
    """A backend's outputs lack a name the task needs (an artifact of another task or a foreign graph)."""


def output(outputs: dict[str, np.ndarray], name: str) -> Any:
    """``outputs[name]`` with an error naming what the artifact gives instead."""
    try:
        return outputs[name]
    except KeyError:
        raise OutputsError(f"the model has no output {name!r} (it has {sorted(outputs)}); is the artifact "
                           "of another task, or exported by something other than edgeseg?") from None


class Task(ABC):
    """What a task owns. Subclasses are stateless; :func:`edgeseg.tasks.get_task` returns one instance each."""

    name: ClassVar[str]
    output_names: ClassVar[tuple[str, ...]]
    headline: ClassVar[MetricColumn]  # the metric models are selected and Pareto-ranked by
    columns: ClassVar[tuple[MetricColumn, ...]]  # accuracy figures shown in logs and export.json
    report_columns: ClassVar[tuple[MetricColumn, ...]]  # accuracy columns of a report table
    parity_bars: ClassVar[ParityBars]
    has_postprocess: ClassVar[bool]  # True when decoding costs enough to bench end to end
    training_outputs: ClassVar[tuple[str, ...]] = ()  # outputs a model may add in training mode only
    # Questions callers ask instead of testing the task's name:
    supports_distillation: ClassVar[bool] = False   # logit distillation (prune fine-tuning, QAT) applies
    supports_class_weights: ClassVar[bool] = False  # per-class loss weights (train.class_weights) apply
    scores_class_masks: ClassVar[bool] = False      # scored against class-index masks (the runner's .npz)
    report_rank: ClassVar[int] = 0                  # where its table and Pareto panel come in a report
    executorch_int8_refusal: ClassVar[str] = ""     # why INT8 .pte programs are not offered ('' = they are)

    # --- graph -------------------------------------------------------------------------------------
    @abstractmethod
    def output_axes(self, name: str) -> dict[int, str]:
        """Dynamic axes (index -> symbolic name) of output ``name`` when exported with dynamic shapes."""

    def export_model(self, model: Any, recipe: Any, cfg: Any) -> Any:
        """The module to export under ``cfg`` (an ``ExportCfg``): the model itself unless the task adds to it."""
        return model

    def decode_options(self, meta: Any) -> dict[str, Any]:
        """Keyword arguments of :meth:`decode` stored with an artifact (its recipe's thresholds)."""
        return {}

    def int8_float_nodes(self, model: Any) -> dict[str, str]:
        """ONNX node name -> why it stays in float when quantizing ``model`` (an ``onnx.ModelProto``)."""
        return {}

    def int8_float_fx_nodes(self, graph_module: Any, output_names: tuple[str, ...]) -> dict[str, str]:
        """The same choice on an exported ATen graph (PT2E quantization for ExecuTorch): FX node name -> why."""
        return {}

    # --- decoding ----------------------------------------------------------------------------------
    @abstractmethod
    def decode(self, outputs: dict[str, np.ndarray], *, input_hw: tuple[int, int], image_hw: tuple[int, int],
               placement: Placement) -> list[Any]:
        """Numpy outputs of a batch -> one prediction per image at ``image_hw``.

        ``placement`` says how the image reached the network's ``input_hw``: ``pad`` (top-left, scale 1)
        or ``resize`` (stretched to ``input_hw``).
        """

    def decode_torch(self, outputs: dict[str, Any], *, input_hw: tuple[int, int]) -> Any:
        """Torch outputs of a batch -> predictions at the input size (``SegModel.predict``).

        Tasks whose decoding depends on the family (instance: each family's own postprocess) leave this
        to the model class, which overrides ``predict``.
        """
        raise NotImplementedError(f"the {self.name} task decodes in each family's predict()")

    def metrics_table(self, metrics: dict[str, Any]) -> tuple[list[str], list[list[Any]], str]:
        """``metrics`` as a table for people: header, rows and one closing line (``edgeseg eval``)."""
        row = [metrics.get(c.key) for c in self.columns]
        return [c.label for c in self.columns], [row], f"over {metrics.get('num_images', '?')} images"

    # --- data, loss, metric --------------------------------------------------------------------------
    @abstractmethod
    def build_dataset(self, data_cfg: Any, split: str, *, in_channels: int, train: bool,
                      num_classes: int | None) -> Any:
        """The torch dataset of a recipe's ``split`` (items: normalised image tensor, task target)."""

    def collate(self) -> Any:
        """``collate_fn`` for the DataLoader (None: torch's default stacking)."""
        return None

    @abstractmethod
    def loss(self, recipe: Any) -> tuple[str, dict[str, Any]]:
        """The task's loss as (name in ``edgeseg.train.losses.LOSSES``, constructor arguments from ``recipe``).

        Named rather than imported: losses live in the training layer, above the tasks. The built module is
        called ``criterion(outputs_by_name, targets) -> (loss tensor, {part: float})``.
        """

    @abstractmethod
    def folder_samples(self, root: Any, split: str, meta: Any, *, mask_encoding: str = "auto",
                       val_ratio: float = 0.2, split_seed: int = 0) -> tuple[Any, int, list[Any]]:
        """A folder dataset (``ROOT/images`` + ``ROOT/masks``) read with numpy and PIL only, for the device
        runner: (samples of (normalised image, target), count, the (image, mask) path pairs)."""

    @abstractmethod
    def targets_to(self, targets: Any, device: Any) -> Any:
        """A collated batch of targets moved to ``device``."""

    @abstractmethod
    def metric(self, *, num_classes: int, ignore_index: int, class_names: list[str] | None,
               options: dict[str, Any] | None = None) -> Metric:
        """A fresh accumulating metric (``options``: :meth:`decode_options`, e.g. the detections kept)."""

    def summary(self, metrics: dict[str, Any]) -> str:
        """One line of the main figures, e.g. for the pipeline log."""
        figures = ", ".join(f"{c.label} {format(metrics[c.key], c.fmt)}" for c in self.columns
                            if isinstance(metrics.get(c.key), (int, float)))
        return f"{figures} ({metrics.get('num_images', '?')} images)"

    # --- export checks ------------------------------------------------------------------------------
    @abstractmethod
    def parity(self, reference: list[dict[str, np.ndarray]], outputs: list[dict[str, np.ndarray]],
               inputs: list[np.ndarray]) -> dict[str, Any]:
        """Compare outputs of a conversion with the reference on the same inputs.

        Returns figures with at least ``max_abs_err``, ``max_rel_err`` and ``agreement`` (0..1: share of
        the decoded predictions that match).
        """

    def fp32_parity_ok(self, figures: dict[str, Any]) -> bool:
        """The bar every FP32 conversion must pass."""
        bars = self.parity_bars
        return figures["max_rel_err"] <= bars.fp32_max_rel_err and figures["agreement"] >= bars.fp32_min_agreement

    # --- predict ----------------------------------------------------------------------------------
    @abstractmethod
    def render(self, raw: np.ndarray, prediction: Any, meta: Any) -> dict[str, bytes]:
        """Files ``predict`` writes for one image: suffix (``mask.png``, ``overlay.png``, ...) -> bytes."""


def by_name(names: tuple[str, ...] | list[str], out: Any, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A model's forward result (tensor, or tuple in ``names`` order) as a dict keyed by output name.

    ``optional`` names the outputs that may follow (training-only heads, e.g. an auxiliary ``semantic``).
    """
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if not len(names) <= len(outs) <= len(names) + len(optional):
        raise OutputsError(f"the model returned {len(outs)} outputs but declares {len(names)} names {list(names)}")
    return dict(zip((*names, *optional), outs))
