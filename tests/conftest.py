"""Shared fixtures: tiny recipes and checkpoints built without training."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
# The longest files start first, so that no worker begins one of them when the others are nearly done
# (pytest-xdist hands out whole files in collection order: --dist loadfile).
LONGEST_FIRST = ("tests/test_readme.py", "tests/export/test_executorch.py", "tests/test_pipeline.py",
                 "tests/optimize/test_readme_optimize.py")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (the README's test command runs one worker per core) every worker, and every
    command a test starts, computes with one torch/OpenMP thread: two workers of two threads each on two
    cores spin against each other (a tiny training took 3.5x its time)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def quick_decision_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The latency measurements behind a decision (INT8 shipped or not, each prune candidate) take a few
    runs instead of a second each: tests check the decision logic and the files (with the figures faked
    where a test needs a given verdict), the timing itself is the benchmarks' business."""
    from edgeseg.compress import prune_steps
    from edgeseg.export import onnx2int8  # (by import: the string path meets edgeseg.export, the function)

    quick = {"warmup": 1, "min_runs": 3, "min_time_s": 0.0, "max_time_s": 5.0}
    monkeypatch.setattr(onnx2int8, "LATENCY_KW", quick)
    monkeypatch.setattr(prune_steps, "LATENCY_KW", quick)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.path)).relative_to(root).as_posix(), len(rank)))


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
