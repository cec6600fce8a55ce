"""Checkpoints: weights + everything needed to rebuild and use the model, written atomically."""

from __future__ import annotations

import io
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.artifacts import ArtifactError, ModelMeta, atomic_write_bytes
from edgeseg.errors import UserError
from edgeseg.models.shapes import ShapeMismatch, check_state_shapes, layer_shapes, reshape_layers

CHECKPOINT_FORMAT = "edgeseg-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (eval mode), its metadata and the raw training state."""

    model: nn.Module
    meta: ModelMeta
    state: dict[str, Any]
    path: Path

    @property
    def metrics(self) -> dict[str, Any]:
        return self.state.get("metrics", {})


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_checkpoint(path: str | Path, model: nn.Module, meta: ModelMeta, **state: Any) -> Path:
    """Atomically write ``model``'s weights, constructor config, ``meta`` and extra ``state``.

    ``state`` holds training state (epoch, optimizer, scheduler, scaler, rng, best metric, metrics).
    """
    model = unwrap(model)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": dict(model.config),
        # Plain ints (no pickled modules): a channel-pruned model rebuilds from the file alone.
        "layer_shapes": layer_shapes(model),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta.to_dict(),
        **state,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


# What a checkpoint holds, by field: (accepted types, what to say). Everything is tensors and plain
# data (str, int, float, bool, None, list, tuple, dict), so torch.load(weights_only=True) reads it
# without an allowlist of extra globals: no pickled class, function or module is ever constructed.
_NUMBER = (int, float)
REQUIRED_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "format": ((str,), f"the string '{CHECKPOINT_FORMAT}'"), "version": ((int,), "an integer"),
    "model_config": ((dict,), "the model's constructor arguments (a dict with 'name')"),
    "model_state": ((dict,), "the model's weights (parameter name -> tensor)"),
    "meta": ((dict,), "the model metadata (a dict)"),
}
OPTIONAL_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "epoch": ((int,), "an integer"), "best_metric": (_NUMBER, "a number"), "metrics": ((dict,), "a dict"),
    "best_metrics": ((dict,), "a dict"), "layer_shapes": ((dict,), "a dict of layer name -> channel counts"),
    "optimizer": ((dict,), "an optimizer state_dict"), "scheduler": ((dict,), "a scheduler state_dict"),
    "scaler": ((dict,), "a GradScaler state_dict"),
    "class_weights": ((dict,), "the class weights training used (method, weights, pixels, images)"),
    "data": ((dict,), "the datasets training read (kind, split, images, mask encoding) by split"),
}
RESUME_FIELDS = ("epoch", "best_metric", "optimizer", "scheduler", "scaler")
TRUST_OPTION = "--trust-checkpoint"


def _refusal(path: Path, exc: Exception) -> ArtifactError:
    """The one-line error for a file the safe loader refused, naming what it asked for and the way out."""
    text = str(exc)
    # torch words it "unsupported GLOBAL posix.system whose module posix is blocked" or "Unsupported
    # global: GLOBAL x.y was not an allowed global" or "Unsupported operand 149"; name what was asked for.
    match = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported operand \w+", text)
    what = (f"it asks for {match.group(1)}" if match and match.re.groups else match.group(0) if match
            else text.strip().splitlines()[0][:200])
    return ArtifactError(
        f"{path}: refused to load: the file holds Python objects a safe load does not build ({what}); edgeseg "
        f"checkpoints hold only tensors and plain data. If you made this file yourself (e.g. with an earlier "
        f"edgeseg), pass {TRUST_OPTION} to load it with full unpickling, which runs any code inside it")


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files: the error says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        with path.open("rb") as fh:
            head = fh.read(2)
        # A zip (torch.save) or a pickle (starts with PROTO) the restricted unpickler stopped: refused.
        # Anything else is just not a checkpoint (an ONNX file passed by mistake, say).
        if not trust and (head == b"PK" or head[:1] == b"\x80"):
            raise _refusal(path, exc) from None
        raise ArtifactError(f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0][:200]}); "
                            "expected a model.pt written by `edgeseg train`") from None
    except Exception as exc:  # noqa: BLE001  (zip/IO/format errors all mean "not our checkpoint")
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ArtifactError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {first}); "
                            "expected a model.pt written by `edgeseg train`") from None


def check_fields(path: str | Path, payload: dict[str, Any], *, resume: bool = False) -> None:
    """Raise ArtifactError naming the first missing or wrongly typed field of a checkpoint dict."""
    for name, (types, expected) in {**REQUIRED_FIELDS, **OPTIONAL_FIELDS}.items():
        if name not in payload:
            if name in REQUIRED_FIELDS:
                raise ArtifactError(f"{path}: checkpoint field '{name}' is missing (expected {expected})")
            continue
        value = payload[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ArtifactError(f"{path}: checkpoint field '{name}' is {type(value).__name__}, expected {expected}")
    lacking = [k for k in RESUME_FIELDS if k not in payload] if resume else []
    if lacking:
        raise ArtifactError(f"{path}: checkpoint fields {', '.join(lacking)} are missing: --resume needs the "
                            "training state a last.pt holds (a model.pt has only the weights)")
    if not isinstance(payload["model_config"].get("name"), str):
        raise ArtifactError(f"{path}: checkpoint field 'model_config.name' is missing or not a string "
                            "(expected a registered model name)")
    for key, value in payload["model_state"].items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ArtifactError(f"{path}: checkpoint field 'model_state' entry {key!r} is "
                                f"{type(value).__name__}, expected a tensor")


def read_checkpoint(path: str | Path, *, trust: bool = False, resume: bool = False) -> dict[str, Any]:
    """The checkpoint dict, loaded without running code from the file, with every field checked.

    Args:
        path: A ``model.pt`` / ``last.pt`` written by edgeseg.
        trust: Load with full unpickling (``weights_only=False``): only for files the user made himself,
            e.g. by an earlier edgeseg; a crafted file runs code this way.
        resume: Also require the training state ``--resume`` needs (optimizer, scheduler, ...).

    Raises:
        ArtifactError: missing file, refused or unreadable pickle, foreign format, newer version, or a
            missing / wrongly typed field (named).
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: checkpoint not found")
    payload = _torch_load(path, trust)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(f"{path}: not an edgeseg checkpoint (no format='{CHECKPOINT_FORMAT}' field); "
                            "expected a model.pt written by `edgeseg train`")
    version = payload.get("version", 0)
    if isinstance(version, int) and version > CHECKPOINT_VERSION:
        raise ArtifactError(f"{path}: checkpoint version {version} is newer than this edgeseg "
                            f"supports ({CHECKPOINT_VERSION}); upgrade edgeseg")
    check_fields(path, payload, resume=resume)
    return payload


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its saved constructor config (``model.config``)."""
    from edgeseg.models import create_model

    cfg = dict(config)
    name = cfg.pop("name")
    return create_model(name, **cfg)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", *, trust: bool = False) -> Checkpoint:
    """Rebuild the model of a checkpoint (pruned channel counts included), load its weights, eval mode.

    ``trust`` as in :func:`read_checkpoint` (off: the file cannot run code).
    """
    payload = read_checkpoint(path, trust=trust)
    config = payload["model_config"]
    try:
        model = build_from_config(config)
    except (TypeError, UserError) as exc:  # an unknown model name or an argument its constructor rejects
        raise ArtifactError(f"{path}: checkpoint field 'model_config' does not build model {config['name']!r}: "
                            f"{exc}") from None
    name = config.get("name")
    try:
        if payload.get("layer_shapes"):
            reshape_layers(model, payload["layer_shapes"])
        check_state_shapes(model, payload["model_state"])
        model.load_state_dict(payload["model_state"])
    except (ShapeMismatch, RuntimeError) as exc:
        raise ArtifactError(f"{path}: weights do not fit the model {name!r} (field layer_shapes / model_state): "
                            f"{str(exc).splitlines()[0]}") from None
    model.to(device).eval()
    try:
        meta = ModelMeta.from_dict(payload["meta"])
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: checkpoint field 'meta': {exc}") from None
    state = {k: v for k, v in payload.items() if k not in ("model_state",)}
    return Checkpoint(model=model, meta=meta, state=state, path=Path(path))
