"""Checkpoints: weights + everything needed to rebuild and use the model, written atomically."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.artifacts import ArtifactError, ModelMeta, atomic_write_bytes

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
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta.to_dict(),
        **state,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, with clear errors for missing files and foreign formats."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001  (any unpickling failure means "not our checkpoint")
        raise ArtifactError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}); "
                            "expected a model.pt written by `edgeseg train`") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(f"{path}: not an edgeseg checkpoint (no format='{CHECKPOINT_FORMAT}' field); "
                            "expected a model.pt written by `edgeseg train`")
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise ArtifactError(f"{path}: checkpoint version {payload['version']} is newer than this edgeseg "
                            f"supports ({CHECKPOINT_VERSION}); upgrade edgeseg")
    return payload


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its saved constructor config (``model.config``)."""
    from edgeseg.models import create_model

    cfg = dict(config)
    name = cfg.pop("name")
    return create_model(name, **cfg)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model of a checkpoint, load its weights and return it in eval mode."""
    payload = read_checkpoint(path)
    model = build_from_config(payload["model_config"])
    try:
        model.load_state_dict(payload["model_state"])
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: weights do not fit the model {payload['model_config'].get('name')!r}: "
                            f"{str(exc).splitlines()[0]}") from None
    model.to(device).eval()
    meta = ModelMeta.from_dict(payload["meta"])
    state = {k: v for k, v in payload.items() if k not in ("model_state",)}
    return Checkpoint(model=model, meta=meta, state=state, path=Path(path))
