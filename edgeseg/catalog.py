"""Every name edgeseg knows, in one torch-free table at the bottom of the tree (it imports only ``errors``).

The recipe's choice lists, the CLI's help, the runtime's dispatch, bench's memory probe and skip hints,
export's format table and the report read these records; nobody types a choice list again. A new
runtime backend is one module under ``edgeseg/runtime/`` plus one :class:`BackendRecord` in
:data:`BACKENDS` (its file kinds and suffixes come with it); :func:`add_backend` does that at run time.

Out-of-tree backends come as plugins: ``EDGESEG_PLUGINS=mod1,mod2`` names modules imported the first
time a backend table is read, each of which calls :func:`add_backend`; subprocesses (the memory probe) inherit the variable,
so they know the same backends.

Everything that derives from a table (suffix -> kind, default backend of a kind, aliases) is computed
when asked, never copied at import, so a record added later is seen everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

from edgeseg.errors import UserError


# --- artifact files ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileNames:
    """The file names the stages write (one spelling each)."""

    model: str = "model.pt"            # best checkpoint: the deliverable of train/prune
    last: str = "last.pt"              # full training state for --resume
    train_json: str = "train.json"
    train_log: str = "train_log.csv"
    metrics_json: str = "metrics.json"
    prune_json: str = "prune.json"
    export_json: str = "export.json"
    stage_json: str = "stage.json"
    lock: str = ".edgeseg.lock"


FILES = FileNames()


# --- runtimes ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackendRecord:
    """One runtime backend: where its class lives, the file kinds it reads, what to tell a user.

    Attributes:
        name: the backend's name (``--backend``, the recipe's ``bench.backends``).
        backend_class: ``"module:Class"`` of its :class:`edgeseg.runtime.base.Backend` implementation.
        library: the Python module of the runtime itself (its import is baseline in the memory probe).
        loads: artifact kinds it reads; the first backend listing a kind is that kind's default.
        hint: what to do instead, for "skipped on BACKEND" messages.
        aliases: other names accepted for it.
        kinds: file kinds this backend introduces, kind -> suffixes (main suffix first).
    """

    name: str
    backend_class: str
    library: str
    loads: tuple[str, ...]
    hint: str
    aliases: tuple[str, ...] = ()
    kinds: dict[str, tuple[str, ...]] = field(default_factory=dict)


BACKENDS: dict[str, BackendRecord] = {r.name: r for r in (
    BackendRecord("torch", "edgeseg.runtime.torch_rt:TorchBackend", "torch", ("checkpoint",),
                  "only checkpoints (.pt) run on torch", aliases=("torch-cuda",),
                  kinds={"checkpoint": (".pt", ".pth")}),
    BackendRecord("onnxruntime", "edgeseg.runtime.ort_rt:OrtBackend", "onnxruntime", ("onnx", "ort"),
                  "export to ONNX with `edgeseg export` first", aliases=("ort",),
                  kinds={"onnx": (".onnx",), "ort": (".ort",)}),
    BackendRecord("tensorrt", "edgeseg.runtime.trt_rt:TensorRTBackend", "tensorrt", ("tensorrt",),
                  "build an engine on this machine with `edgeseg export --format tensorrt` and bench the .engine", aliases=("trt",),
                  kinds={"tensorrt": (".engine", ".plan")}),
    BackendRecord("openvino", "edgeseg.runtime.openvino_rt:OpenVINOBackend", "openvino", ("openvino", "onnx"),
                  "export with `edgeseg export --format openvino`, or bench the .onnx file", aliases=("ov",),
                  kinds={"openvino": (".xml",)}),
    BackendRecord("executorch", "edgeseg.runtime.executorch_rt:ExecuTorchBackend",
                  "executorch.runtime", ("executorch",),
                  "export with `edgeseg export --format executorch` and bench the .pte", aliases=("et",),
                  kinds={"executorch": (".pte",)}),
)}


_plugins_loaded = False


def _load_plugins() -> None:
    """Import the ``EDGESEG_PLUGINS`` modules once, on first use (a plugin imports edgeseg freely)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for name in filter(None, (m.strip() for m in os.environ.get("EDGESEG_PLUGINS", "").split(","))):
        try:
            import_module(name)
        except ImportError as e:
            raise UserError(f"EDGESEG_PLUGINS: cannot import plugin module {name!r} ({e})") from None


def backends() -> dict[str, BackendRecord]:
    """name -> record of every backend, plugins included."""
    _load_plugins()
    return BACKENDS


def add_backend(record: BackendRecord) -> None:
    """Register one more backend (a plugin or a test); its kinds and aliases are seen everywhere at once."""
    if record.name in BACKENDS or record.name in aliases():
        raise UserError(f"backend {record.name!r} is already known")
    BACKENDS[record.name] = record


def aliases() -> dict[str, str]:
    """alias -> backend name."""
    return {a: r.name for r in backends().values() for a in r.aliases}


def backend_choices() -> tuple[str, ...]:
    """Every name ``backend=`` accepts: the backends, then their aliases."""
    return (*backends(), *aliases())


def canonical_backend(name: str) -> str | None:
    """The backend a name or alias means (None if unknown)."""
    name = aliases().get(name, name)
    return name if name in backends() else None


def artifact_kinds() -> dict[str, str]:
    """suffix -> artifact kind, for every kind a backend introduces."""
    return {s: kind for r in backends().values() for kind, suffixes in r.kinds.items() for s in suffixes}


def artifact_kind(path: str | Path) -> str | None:
    """The kind of artifact ``path`` is by its suffix (None for an unknown suffix)."""
    return artifact_kinds().get(Path(path).suffix.lower())


def kind_suffixes(kind: str) -> tuple[str, ...]:
    """The suffixes of ``kind``, main one first (``tensorrt`` -> ``(".engine", ".plan")``)."""
    return next((s for r in backends().values() for k, s in r.kinds.items() if k == kind), ())


def default_backend(kind: str) -> str | None:
    """The backend that opens ``kind`` by default: the first one listing it."""
    return next((r.name for r in backends().values() if kind in r.loads), None)


# --- export --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FormatRecord:
    """One export target: whether it needs a GPU to build, whether it has INT8, its converter.

    ``converter`` is ``"module:function"``; the function takes the export context and returns the
    artifact records it produced (shipped or not). The file kind is the format's name.
    """

    name: str
    needs_gpu: bool
    supports_int8: bool
    converter: str
    description: str = ""

    @property
    def suffix(self) -> str:
        """Main file suffix of this format."""
        return kind_suffixes(self.name)[0]


# Order matters: every other format is converted from the ONNX files the "onnx" entry writes.
FORMATS: dict[str, FormatRecord] = {f.name: f for f in (
    FormatRecord("onnx", False, True, "edgeseg.export.formats:convert_onnx",
                 "ONNX (FP32 reference, FP16, INT8 QDQ) for ONNX Runtime and any ONNX consumer"),
    FormatRecord("ort", False, True, "edgeseg.export.onnx2ort:convert",
                 "ONNX Runtime mobile format + required_operators.config for minimal builds"),
    FormatRecord("tensorrt", True, True, "edgeseg.export.onnx2trt:convert",
                 "TensorRT engine where TensorRT + GPU exist; always a Jetson build kit"),
    FormatRecord("openvino", False, True, "edgeseg.export.onnx2openvino:convert",
                 "OpenVINO IR (.xml + .bin) where the openvino package is installed"),
    FormatRecord("executorch", False, True, "edgeseg.export.torch2executorch:convert",
                 "ExecuTorch program (XNNPACK) for Android/iOS + phone kit (executorch extra)"),
)}
# precision -> converter writing its ONNX file. Order matters: FP16 and INT8 are converted from FP32.
PRECISIONS: dict[str, str] = {
    "fp32": "edgeseg.export.torch2onnx:convert",
    "fp16": "edgeseg.export.onnx2fp16:convert",
    "int8": "edgeseg.export.onnx2int8:convert",
}
INT8_POLICIES = ("auto", "always")             # auto: ship INT8 only where it is faster than FP32 here
FLOAT_DEPTHWISE = ("auto", "always", "never")  # ExecuTorch INT8: depthwise convs kept in float
DEPTHWISE_SCOPES = ("all", "full_res")
POSTPROCESS_PLACES = ("runtime", "graph")      # instance postprocess beside the runtime or in the graph
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


# --- training, compression -----------------------------------------------------------------------------

TASKS: dict[str, str] = {  # task name -> "module:Class" of its edgeseg.tasks.base.Task
    "semantic": "edgeseg.tasks.semantic:SemanticTask",
    "instance": "edgeseg.tasks.instance:InstanceTask",
}
SEMANTIC_LOSSES = ("ce", "dice", "ce+dice", "focal", "focal+dice")
CLASS_WEIGHTINGS = ("median_frequency", "inverse_sqrt")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "constant")
TRAIN_DEVICES = ("auto", "cpu", "cuda")
PRUNE_IMPORTANCES = ("l1", "l2", "bn", "taylor")
DATA_KINDS = ("synthetic", "folder", "coco", "instance_folder", "pennfudan")
MASK_ENCODINGS = ("auto", "index", "binary", "palette")


@dataclass(frozen=True)
class InstanceThresholds:
    """Instance postprocess defaults: the recipe's ``instance`` section, the numpy and torch postprocess and
    the in-graph postprocess all start from these."""

    score_thresh: float = 0.05
    iou_thresh: float = 0.5
    top_k: int = 200        # candidates per class before Fast NMS
    max_dets: int = 100     # detections per image (also COCO maxDets of the metric)
    mask_thresh: float = 0.5


INSTANCE_DEFAULTS = InstanceThresholds()


# --- pipeline and report -------------------------------------------------------------------------------

# stage name -> its folder in a run (`edgeseg run`), in pipeline order
STAGES: dict[str, str] = {"train": "1_train", "prune": "2_prune", "quantize": "3_quantize",
                          "export": "4_export", "bench": "5_bench", "report": "6_report"}
REPORT_FORMATS: dict[str, str] = {"md": "report.md", "html": "report.html", "csv": "results.csv"}


@dataclass(frozen=True)
class BenchDefaults:
    """How long bench measures by default (recipe, CLI, device runner and ``BenchSettings`` read these)."""

    warmup: int = 5
    min_runs: int = 20
    min_time_s: float = 2.0
    max_time_s: float = 120.0
    memory: bool = True
    memory_runs: int = 3


BENCH_DEFAULTS = BenchDefaults()


# --- optimize: the per-task search space defaults and the files of a study -------------------------------

OPTIMIZE_FAMILIES = {"semantic": ("unet-lite", "segnet-lite", "fcn-lite"), "instance": ("yolact-lite",)}
OPTIMIZE_WIDTHS = (0.5, 0.75, 1.0)         # multipliers of each variant's own widths
OPTIMIZE_PRUNE_RATIOS = (0.0, 0.25)        # `prune --ratio` forms of each architecture (0: unpruned)
# targets, each with its timed forms of every architecture (the deployed one: the first that fits): ONNX
# Runtime times the ONNX files; TensorRT builds an engine from each on the device (FP16 before INT8 there);
# ExecuTorch times .pte programs (XNNPACK) here or on a phone
OPTIMIZE_PRECISIONS: dict[str, tuple[str, ...]] = {"onnxruntime": ("fp32", "int8"), "tensorrt": ("fp16", "int8"),
                                                   "executorch": ("fp32", "int8")}
OPTIMIZE_BACKENDS = tuple(OPTIMIZE_PRECISIONS)
# the timed file of each target (ExecuTorch: the XNNPACK program itself; TensorRT: the ONNX file its engine is
# built from on the device)
OPTIMIZE_SUFFIXES = {"onnxruntime": ".onnx", "tensorrt": ".onnx", "executorch": ".pte"}
OPTIMIZE_PRUNERS = ("successive_halving", "hyperband")
OPTIMIZE_LATENCY_ROUNDS = 3  # every file timed this many times, in alternating order; its latency the lowest p50


@dataclass(frozen=True)
class OptimizeFiles:
    """What `edgeseg optimize` writes into OUT (one spelling each)."""

    study: str = "study.db"              # the Optuna storage (SQLite) unless --storage names another
    trials: str = "trials.jsonl"         # one line per trial
    latency: str = "latency.jsonl"       # bench lines of every candidate file (before any training)
    final_latency: str = "final_latency.jsonl"  # the winner's final file, timed in alternation with references
    plan: str = "plan.json"              # the candidate files and their sha256 (--plan, --device-latency)
    candidates: str = "candidates"       # the ONNX files timed (one per architecture and precision)
    engines: str = "engines"             # TensorRT target: the engines built from them (on the device)
    checksums: str = "candidates.sha256"  # TensorRT target: what the device script checks before building
    arch: str = "arch"                   # per architecture: its untrained (pruned) checkpoint
    runs: str = "trials"                 # per trial: its training run folder
    runner_script: str = "run_on_device.sh"
    plot: str = "optimize.png"           # accuracy vs latency, budget line, Pareto front
    summary: str = "optimize.json"
    winner: str = "winner"               # the winner trained at full length: 1_train, 4_export, 5_bench, 6_report


OPTIMIZE_FILES = OptimizeFiles()
