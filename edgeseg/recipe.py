"""Typed recipe schema: flat YAML, ``--set a.b=c`` overrides, clear errors with suggestions.

A recipe is validated by pydantic with ``extra="forbid"``: an unknown key is an error that names the
file, the dotted field and the closest valid key. Relative paths resolve against the recipe file.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from edgeseg import catalog
from edgeseg.artifacts import text_sha256
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
_BENCH = catalog.BENCH_DEFAULTS
_INSTANCE = catalog.INSTANCE_DEFAULTS


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


class Recipe(_Strict):
    """One experiment: model, data, training and the later pipeline stages."""

    name: str = "experiment"
    model: ModelCfg = Field(default_factory=ModelCfg)
    data: DataCfg = Field(default_factory=DataCfg)
    train: TrainCfg = Field(default_factory=TrainCfg)
    prune: PruneCfg | None = None
    quantize: QuantizeCfg | None = None
    export: ExportCfg | None = None
    bench: BenchCfg | None = None
    report: ReportCfg | None = None
    instance: InstanceCfg = Field(default_factory=InstanceCfg)

    @model_validator(mode="after")
    def _one_weight_per_class(self) -> Recipe:
        weights = self.train.class_weights
        if isinstance(weights, list) and len(weights) != self.model.num_classes:
            raise ValueError(f"train.class_weights has {len(weights)} values but model.num_classes is "
                             f"{self.model.num_classes}; give one weight per class")
        return self

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError("must be a plain folder name (no '/', not starting with '.')")
        return v

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (paths as strings)."""
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """Stable hash of the recipe's content (not of its file)."""
        return text_sha256(yaml.safe_dump(self.to_dict(), sort_keys=True))


def _valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        for cand in getattr(ann, "__args__", ()) or (ann,):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                keys.extend(_valid_keys(cand, prefix + name + "."))
    return keys


def _suggest(bad: str) -> str:
    close = difflib.get_close_matches(bad, _valid_keys(Recipe), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


_UNION_TAGS = ("int", "float", "str", "bool", "none")


def _field_path(loc: tuple[Any, ...]) -> str:
    """Dotted field path without pydantic's union-member tags (``literal[...]``, ``list[float]``, ``int``)."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in _UNION_TAGS)))


def _format_errors(err: ValidationError, source: str) -> str:
    lines: dict[str, str] = {}
    for e in err.errors():
        loc = _field_path(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.setdefault(loc, f"{source}: unknown key '{loc}'{_suggest(loc)}")
        elif not loc:  # a check across sections (its message names the fields)
            lines.setdefault(msg, f"{source}: {msg}")
        elif loc in lines:  # another member of a union: one line per field
            lines[loc] = lines[loc].replace(" (got ", f", or {msg[0].lower() + msg[1:]} (got ", 1)
        else:
            lines[loc] = f"{source}: field '{loc}': {msg} (got {e.get('input')!r})"
    return "\n".join(lines.values())


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=c`` into (["a", "b"], yaml-typed value)."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise RecipeError(f"--set {text!r}: value is not valid YAML: {exc}") from None
    return key.strip().split("."), value


def _apply_override(tree: dict[str, Any], path: list[str], value: Any, text: str) -> None:
    node = tree
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"--set {text!r}: '{'.'.join(path[:i + 1])}' is a value, not a section")
        node = child
    node[path[-1]] = value


def _resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    root = recipe.data.root
    if root is not None and not root.is_absolute():
        recipe.data.root = (base / root).resolve()
    ann = recipe.data.annotations
    if isinstance(ann, dict):
        recipe.data.annotations = {k: v if v.is_absolute() else (base / v).resolve() for k, v in ann.items()}
    elif ann is not None and not ann.is_absolute():
        recipe.data.annotations = (base / ann).resolve()
    return recipe


def recipe_from_dict(tree: dict[str, Any], source: str = "<recipe>", base_dir: Path | None = None) -> Recipe:
    """Validate a dict into a Recipe; relative paths resolve against ``base_dir``."""
    try:
        recipe = Recipe.model_validate(tree)
    except ValidationError as err:
        raise RecipeError(_format_errors(err, source)) from None
    return _resolve_paths(recipe, base_dir or Path.cwd())


def stored_recipe(tree: dict[str, Any], overrides: list[str] | None = None, source: str = "<stored recipe>") -> Recipe:
    """The recipe an artifact stores (a plain dict), with ``--set`` overrides applied."""
    tree = dict(tree)
    for text in overrides or []:
        keys, value = parse_override(text)
        _apply_override(tree, keys, value, text)
    return recipe_from_dict(tree, source=source)


def checkpoint_recipe(ckpt: Any, recipe: str | Path | None, overrides: list[str] | None) -> tuple[Recipe, str]:
    """The recipe a verb on a checkpoint works with: ``recipe`` if given, else the one the checkpoint stores.

    Returns the recipe and where it came from (the file, or "stored in checkpoint").
    """
    if recipe is not None:
        return load_recipe(recipe, overrides), str(recipe)
    if not ckpt.meta.recipe:
        raise RecipeError(f"{ckpt.path}: the checkpoint stores no recipe; pass recipe= (--data RECIPE) to say "
                          "where calibration and validation images come from")
    return stored_recipe(ckpt.meta.recipe, overrides, source=f"{ckpt.path} (stored recipe)"), "stored in checkpoint"


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Load a YAML recipe (``None``: the embedded quickstart) and apply ``--set`` overrides."""
    path = Path(path) if path is not None else quickstart_path()
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    if tree is None:  # silently training the defaults would hide a truncated or wrong file
        raise RecipeError(f"{path}: the recipe is empty; expected sections (name, model, data, train, ...); "
                          "run without a recipe for the built-in quickstart")
    if not isinstance(tree, dict):
        raise RecipeError(f"{path}: expected a mapping of sections (name, model, data, train, ...)")
    for text in overrides or []:
        keys, value = parse_override(text)
        _apply_override(tree, keys, value, text)
    return recipe_from_dict(tree, source=str(path), base_dir=path.parent.resolve())


def quickstart_path() -> Path:
    """The embedded default recipe shipped inside the package."""
    return Path(__file__).parent / "recipes" / "quickstart.yaml"


TRAINING_SECTIONS = ("model", "data", "train")


def _flat(tree: Any, prefix: str) -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}.{k}"))
        return out
    return {prefix: tree}


def recipe_differences(stored: dict[str, Any], current: dict[str, Any],
                       sections: tuple[str, ...] = TRAINING_SECTIONS) -> list[str]:
    """Every dotted field of ``sections`` whose value differs, as ``"train.lr: 0.001 -> 0.01"``.

    The one comparison behind `--resume` and the pipeline's resume of an interrupted training: both
    continue a run only when this list is empty. Values compare as JSON (tuples equal lists).
    """
    import json

    def norm(v: Any) -> str:
        return json.dumps(v, sort_keys=True, default=str)

    diffs = []
    for section in sections:
        old, new = _flat(stored.get(section), section), _flat(current.get(section), section)
        for key in sorted(set(old) | set(new)):
            if norm(old.get(key)) != norm(new.get(key)):
                diffs.append(f"{key}: {norm(old.get(key))} -> {norm(new.get(key))}")
    return diffs
