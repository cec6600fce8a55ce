"""Shared fixtures: tiny recipes and checkpoints built without training."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def tiny_recipe_dict(model: str = "unet_test", num_classes: int = 4, in_channels: int = 3) -> dict:
    """A synthetic-data recipe small enough for unit tests."""
    return {
        "name": "tiny",
        "model": {"name": model, "num_classes": num_classes, "in_channels": in_channels},
        "data": {"kind": "synthetic", "image_size": 64,
                 "synthetic": {"num_train": 16, "num_val": 6, "size": 64, "seed": 0}},
        "train": {"epochs": 1, "batch_size": 4, "warmup_epochs": 0},
    }


def make_checkpoint(path: Path, model: str = "unet_test", num_classes: int = 4, in_channels: int = 3,
                    seed: int = 0, model_kwargs: dict | None = None) -> Path:
    """An untrained (seeded) checkpoint with full metadata, as `edgeseg train` would write it
    (``model_kwargs``: constructor arguments beyond the registry defaults, e.g. ``separable=True``)."""
    import torch

    from edgeseg.models import create_model
    from edgeseg.recipe import recipe_from_dict
    from edgeseg.train.meta import meta_for

    torch.manual_seed(seed)
    recipe = recipe_from_dict(tiny_recipe_dict(model, num_classes, in_channels))
    net = create_model(model, num_classes=num_classes, in_channels=in_channels, **(model_kwargs or {}))
    from edgeseg.artifacts.checkpoint import save_checkpoint

    return save_checkpoint(path, net, meta_for(net, recipe), epoch=0, metrics={})


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """Path of an untrained unet_test checkpoint (4 classes, RGB, synthetic-data recipe)."""
    return make_checkpoint(tmp_path / "model.pt")


@pytest.fixture
def hide_package(monkeypatch):
    """``hide_package("executorch")``: importing that package (or a submodule) raises ImportError."""
    import builtins

    real = builtins.__import__

    def hide(prefix: str) -> None:
        def guarded(name, *args, **kwargs):
            if name == prefix or name.startswith(prefix + "."):
                raise ImportError(name)
            return real(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", guarded)

    return hide
