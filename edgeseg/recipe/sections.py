"""The recipe's sections (model, data, train, export, prune, bench, optimize, report, instance) and its error.

Every choice list is a catalog table; every section forbids unknown keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from edgeseg import catalog
from edgeseg.errors import UserError


class RecipeError(UserError, ValueError):
    """A recipe file or override is invalid; the message names the file, field and expectation."""


# Choice lists come from the dispatch tables, so a new format, precision or backend is added once.
# Every choice list is a catalog table (Literal[tuple] keeps pydantic's "expected one of" messages).
ExportFormat = Literal[tuple(catalog.FORMATS)]  # type: ignore[valid-type]
Precision = Literal[tuple(catalog.PRECISIONS)]  # type: ignore[valid-type]
BackendName = Literal[catalog.backend_choices()]  # type: ignore[valid-type]
ReportFormat = Literal[tuple(catalog.REPORT_FORMATS)]  # type: ignore[valid-type]
DataKind = Literal[catalog.DATA_KINDS]  # type: ignore[valid-type]
MaskEncoding = Literal[catalog.MASK_ENCODINGS]  # type: ignore[valid-type]
SemanticLoss = Literal[catalog.SEMANTIC_LOSSES]  # type: ignore[valid-type]
ClassWeighting = Literal[catalog.CLASS_WEIGHTINGS]  # type: ignore[valid-type]
Optimizer = Literal[catalog.OPTIMIZERS]  # type: ignore[valid-type]
Scheduler = Literal[catalog.SCHEDULERS]  # type: ignore[valid-type]
TrainDevice = Literal[catalog.TRAIN_DEVICES]  # type: ignore[valid-type]
CalibrationMethod = Literal[catalog.CALIBRATION_METHODS]  # type: ignore[valid-type]
Int8Policy = Literal[catalog.INT8_POLICIES]  # type: ignore[valid-type]
FloatDepthwise = Literal[catalog.FLOAT_DEPTHWISE]  # type: ignore[valid-type]
DepthwiseScope = Literal[catalog.DEPTHWISE_SCOPES]  # type: ignore[valid-type]
PostprocessPlace = Literal[catalog.POSTPROCESS_PLACES]  # type: ignore[valid-type]
Importance = Literal[catalog.PRUNE_IMPORTANCES]  # type: ignore[valid-type]
OptimizePruner = Literal[catalog.OPTIMIZE_PRUNERS]  # type: ignore[valid-type]
_BENCH = catalog.BENCH_DEFAULTS
_INSTANCE = catalog.INSTANCE_DEFAULTS


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_EXAMPLE = "a positive number with s, m or h, e.g. 90s, 20m, 2h"


def parse_duration(text: Any, field: str) -> float:
    """``"90s"``, ``"20m"``, ``"2h"``, ``"1.5h"`` (or a bare number of seconds) -> seconds > 0.

    Raises a one-line error naming ``field`` (a recipe field or a CLI option) on anything else.
    """
    raw = str(text).strip().lower()
    unit = raw[-1:] if raw[-1:] in _DURATION_UNITS else "s"
    number = raw[:-1] if raw[-1:] in _DURATION_UNITS else raw
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf") or isinstance(text, bool):
        raise RecipeError(f"{field}: {text!r} is not a duration; expected {DURATION_EXAMPLE}")
    return seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelCfg(_Strict):
    """Which registered model to build and its constructor arguments."""

    name: str = "unet-lite"
    num_classes: int = Field(2, ge=1)
    in_channels: int = Field(3, ge=1)
    args: dict[str, Any] = Field(default_factory=dict,
                                 description="family-specific constructor arguments (width, upsample, ...)")


class SyntheticCfg(_Strict):
    """Procedural shapes dataset (needs no files)."""

    num_train: int = Field(256, ge=1)
    num_val: int = Field(64, ge=1)
    num_test: int = Field(0, ge=0)
    size: int = Field(128, ge=16, description="side of the generated square images")
    max_shapes: int = Field(6, ge=1)
    seed: int = 0


class DataCfg(_Strict):
    """Where images and masks come from and how they are augmented."""

    kind: DataKind = "synthetic"
    root: Path | None = None
    annotations: Path | dict[str, Path] | None = Field(
        None, description="COCO json for kind=coco: one file (split by val_ratio) or {train: ..., val: ...}")
    image_size: int | tuple[int, int] = 256
    classes: list[str] = Field(default_factory=list)
    ignore_index: int = 255
    mean: list[float] | None = None
    std: list[float] | None = None
    palette: dict[str, tuple[int, int, int]] | None = Field(
        None, description="class name -> RGB colour, for colour-coded masks")
    mask_encoding: MaskEncoding = "auto"
    val_ratio: float = Field(0.2, ge=0.0, lt=1.0)
    test_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    split_seed: int = 0
    train_repeats: int = Field(1, ge=1, description="passes over the training split per epoch")
    scale: tuple[float, float] = (0.75, 1.25)
    hflip: bool = True
    vflip: bool = False
    color_jitter: float = Field(0.2, ge=0.0)
    workers: int = Field(0, ge=0)
    synthetic: SyntheticCfg = Field(default_factory=SyntheticCfg)

    @property
    def size_hw(self) -> tuple[int, int]:
        s = self.image_size
        return (s, s) if isinstance(s, int) else (int(s[0]), int(s[1]))


class TrainCfg(_Strict):
    """Optimisation, schedule and checkpointing."""

    epochs: int = Field(40, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    loss: SemanticLoss = "ce+dice"
    class_weights: ClassWeighting | list[float] | None = Field(
        None, description="per-class loss weights: computed once from the training masks "
                          "(median_frequency: SegNet's balancing; inverse_sqrt: milder) or one number per class")
    focal_gamma: float = Field(2.0, ge=0, description="focusing exponent of the focal loss")
    optimizer: Optimizer = "adamw"
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = 0.9
    warmup_epochs: float = Field(1.0, ge=0)
    scheduler: Scheduler = "cosine"
    grad_clip: float | None = Field(1.0, description="max gradient norm; null disables clipping")
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    device: TrainDevice = "auto"
    seed: int = 0
    eval_every: int = Field(1, ge=1, description="validate every N epochs (and always at the end)")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads on CPU")
    time_budget: str | None = Field(
        None, description="train for this long (e.g. 90s, 20m, 2h) instead of train.epochs: warm-up and cosine "
                          "are laid over the time (warm-up: the warmup_epochs / epochs share of it)")

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if v is None:
            return v
        try:
            parse_duration(v, "train.time_budget")  # the text stays as written (it is in the recipe hash)
        except RecipeError:
            raise ValueError(f"not a duration; expected {DURATION_EXAMPLE}") from None
        return str(v)

    @property
    def time_budget_s(self) -> float | None:
        """``time_budget`` in seconds (None: train ``epochs``)."""
        return None if self.time_budget is None else parse_duration(self.time_budget, "train.time_budget")


class CalibrationCfg(_Strict):
    """INT8 calibration: images come from the training split only."""

    images: int = Field(64, ge=1)
    method: CalibrationMethod = "minmax"
    per_channel: bool = True


class QatCfg(_Strict):
    """Quantization-aware training for INT8 (NNCF fake quantizers, fine-tuned on the training split)."""

    epochs: int = Field(3, ge=1)
    lr: float | None = Field(None, gt=0, description="fine-tuning rate (default: train.lr / 100)")
    distill: bool = Field(True, description="semantic models: logit distillation from the FP32 model while "
                                            "fine-tuning")


class ExecuTorchCfg(_Strict):
    """ExecuTorch (``.pte``) export settings."""

    float_depthwise: FloatDepthwise = Field(
        "auto", description="INT8 .pte: keep depthwise convs in float. auto: build the all-INT8 and the "
                            "depthwise-float program and ship the one measured faster on this machine; always: "
                            "keep them float (CPUs whose INT8 depthwise is slow, e.g. x86); never: all INT8 "
                            "(phones whose INT8 depthwise kernels are fast, e.g. ARM)")
    depthwise_scope: DepthwiseScope = Field(
        "all", description="which depthwise convs float_depthwise keeps in float: all, or only those at the "
                           "largest spatial size")


class QuantizeCfg(_Strict):
    """The ``quantize`` stage (``OUT/3_quantize``): INT8 ONNX by PTQ, QAT (``qat``) or mixed precision
    (``max_drop``), written beside the FP32 exports of the ``export`` stage. ``export`` has the same fields."""

    calibration: CalibrationCfg = Field(default_factory=CalibrationCfg)
    int8_policy: Int8Policy = Field(
        "auto", description="auto: ship INT8 only where it is not slower than FP32 on this machine")
    qat: QatCfg | None = Field(None, description="INT8 by quantization-aware training instead of PTQ")
    max_drop: float | None = Field(None, ge=0, description="mixed precision: layers stay float until val mIoU "
                                                           "drops by at most this many points")


class ExportCfg(QuantizeCfg):
    """What `export` writes (the quantization fields are :class:`QuantizeCfg`'s)."""

    formats: list[ExportFormat] = Field(default_factory=lambda: ["onnx"])
    precisions: list[Precision] = Field(default_factory=lambda: ["fp32"])
    opset: int = Field(17, ge=11)
    dynamic: bool = Field(True, description="dynamic batch and spatial axes")
    simplify: bool = True
    executorch: ExecuTorchCfg = Field(default_factory=ExecuTorchCfg)
    postprocess: PostprocessPlace = Field(
        "runtime", description="instance models: 'runtime' exports the raw heads and decodes them with numpy "
                               "beside the runtime; 'graph' puts the postprocess inside the graph with a fixed "
                               "number of detection slots per image (the recipe's instance thresholds)")


class PruneCfg(_Strict):
    """How to prune (the ``prune`` stage, ``OUT/2_prune``, and `edgeseg prune`): the one definition.

    Exactly one target: ``ratio`` (a size target: the fraction of channels removed per layer group, one
    step), ``target_macs`` or ``target_latency_ms`` (iterative steps towards ``max_ratio``, stopping at
    the first that reaches it). ``edgeseg.compress.prune`` reads it as is.
    """

    ratio: float | None = Field(None, gt=0, lt=1, description="fraction of channels removed per layer group")
    target_macs: float | None = Field(None, gt=0, lt=1, description="keep at most this fraction of the MACs")
    target_latency_ms: float | None = Field(None, gt=0, description="ONNX Runtime CPU latency target here")
    importance: Importance = Field("l2", description="l1 | l2: group weight magnitude; bn: BatchNorm scale; "
                                                     "taylor: first-order, from training-loss gradients")
    global_pruning: bool = Field(False, description="rank channels across layers instead of per layer")
    round_to: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        None, description="kept widths are multiples of this; auto: ORT's CPU channel block here (16 with AVX-512, "
                          "else 8); default: auto for target_latency_ms, else 8")
    keep: list[str] = Field(default_factory=list, description="layer-name patterns left unpruned (with their group)")
    max_ratio: float = Field(0.9, gt=0, lt=1, description="most any layer group may lose (targets only)")
    steps: int = Field(18, ge=1, description="iterative steps towards max_ratio (targets only)")
    taylor_batches: int = Field(4, ge=1, description="training batches whose gradients feed taylor importance")
    finetune_epochs: int = Field(0, ge=0)
    finetune_lr: float | None = Field(None, gt=0, description="fine-tuning learning rate (default: train.lr)")
    distill: bool = Field(False, description="logit distillation from the unpruned model while fine-tuning")
    distill_weight: float = Field(0.5, ge=0, description="weight of the distillation term")
    distill_temperature: float = Field(2.0, gt=0, description="softmax temperature of the distillation term")
    threads: PositiveInt = Field(2, description="ONNX Runtime threads for latency figures")

    @field_validator("round_to", mode="before")
    @classmethod
    def _round_to_text(cls, v: Any) -> Any:
        text = v.strip().lower() if isinstance(v, str) else None
        if v is None or text == "auto":
            return text
        if (isinstance(v, bool) or not isinstance(v, (int, float, str)) or (text is not None and not text.isdigit())
                or (isinstance(v, float) and not v.is_integer()) or int(v) < 1):
            raise ValueError(f"expected a positive integer or 'auto', got {v!r}")
        return int(v)

    @field_validator("keep", mode="before")
    @classmethod
    def _patterns(cls, v: Any) -> Any:
        v = [v] if isinstance(v, str) else v
        for pattern in v or []:
            if not isinstance(pattern, str) or not pattern.strip():
                raise ValueError(f"expected layer-name patterns like decoder.0 or 'encoder.0.*', got {pattern!r}")
        return v

    @model_validator(mode="after")
    def _one_target(self) -> PruneCfg:
        given = [n for n in ("ratio", "target_macs", "target_latency_ms") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of ratio, target_macs, target_latency_ms (got {given or 'none'})")
        return self

    @property
    def mode(self) -> str:
        """``ratio``, ``macs`` or ``latency``: which target was given."""
        return "ratio" if self.ratio is not None else "macs" if self.target_macs is not None else "latency"


class BenchCfg(_Strict):
    """What `bench` measures."""

    backends: list[BackendName] = Field(default_factory=lambda: ["onnxruntime"])
    device: Literal["cpu", "cuda"] = "cpu"
    threads: list[PositiveInt] = Field(default_factory=lambda: [2])
    batch: list[PositiveInt] = Field(default_factory=lambda: [1])
    warmup: int = Field(_BENCH.warmup, ge=0)
    min_runs: int = Field(_BENCH.min_runs, ge=1)
    min_time_s: float = Field(_BENCH.min_time_s, ge=0)
    accuracy: bool = True


class OptimizeCfg(_Strict):
    """The search space and schedule of `edgeseg optimize` (unset lists: the task's defaults in the catalog)."""

    models: list[str] | None = Field(None, description="variants searched (default: the task's lite families)")
    widths: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: list(catalog.OPTIMIZE_WIDTHS),
                                                        description="multipliers of each variant's widths")
    depths: list[PositiveInt] | None = Field(None, description="encoder depths of families that have one "
                                                               "(U-Net; default: the variant's own)")
    prune_ratios: list[Annotated[float, Field(ge=0, lt=1)]] = Field(
        default_factory=lambda: list(catalog.OPTIMIZE_PRUNE_RATIOS), description="`prune --ratio` forms (0: unpruned)")
    precisions: list[Precision] | None = Field(None, description="timed forms of each architecture, the deployed "
                                                                 "one the first that fits (default per --backend: "
                                                                 "fp32, int8 on onnxruntime; fp16, int8 on tensorrt)")
    image_sizes: list[PositiveInt] | None = Field(None, description="input sides searched (default: only "
                                                                    "data.image_size)")
    proxy_time: str | None = Field(None, description="training time of the first fidelity (default: from "
                                                     "--time, else 1m); each later one is reduction_factor x longer")
    rungs: int = Field(3, ge=1, description="fidelities: proxy_time x reduction_factor^k, k < rungs")
    reduction_factor: int = Field(3, ge=2, description="successive halving: 1 in this many goes on")
    pruner: OptimizePruner = "successive_halving"
    latency_rounds: int = Field(catalog.OPTIMIZE_LATENCY_ROUNDS, ge=1,
                                description="times each candidate file is timed, in alternating order; its "
                                            "latency is the lowest p50 (other work only adds time)")
    full_time: str | None = Field(None, description="the winner's training time (default: the recipe's train "
                                                    "section as shipped, or its trial's longest fidelity where "
                                                    "that ran more epochs)")
    seed: int = 0

    @field_validator("proxy_time", "full_time", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if v is None:
            return v
        try:
            parse_duration(v, "optimize")
        except RecipeError:
            raise ValueError(f"not a duration; expected {DURATION_EXAMPLE}") from None
        return str(v)


class ReportCfg(_Strict):
    """What `report` renders."""

    formats: list[ReportFormat] = Field(default_factory=lambda: list(catalog.REPORT_FORMATS))


class InstanceCfg(_Strict):
    """Instance models: postprocess thresholds (eval, predict, bench, export) and loss settings."""

    score_thresh: float = Field(_INSTANCE.score_thresh, ge=0.0, lt=1.0)
    iou_thresh: float = Field(_INSTANCE.iou_thresh, gt=0.0, le=1.0)
    top_k: int = Field(_INSTANCE.top_k, ge=1, description="candidates per class before Fast NMS")
    max_dets: int = Field(_INSTANCE.max_dets, ge=1,
                          description="detections per image (also COCO maxDets of the metric)")
    mask_thresh: float = Field(_INSTANCE.mask_thresh, gt=0.0, lt=1.0)
    loss: dict[str, Any] = Field(default_factory=dict,
                                 description="edgeseg.train.losses_instance.YolactLoss keyword arguments")
