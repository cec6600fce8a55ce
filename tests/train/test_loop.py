"""Training: a tiny model must learn; resume is exact; NaN stops the run and keeps the last good state."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from edgeseg.recipe import recipe_from_dict
from edgeseg.train import train
from edgeseg.artifacts.checkpoint import load_checkpoint, read_checkpoint
from edgeseg.train.loop import TrainingDiverged
from tests.conftest import tiny_recipe_dict


def _recipe(**train_kw):
    d = tiny_recipe_dict("unet_test", num_classes=4)
    d["train"].update(train_kw)
    return recipe_from_dict(d)


def test_tiny_model_learns_synthetic_shapes(tmp_path):
    # Background vs discs: predicting all-background scores mIoU ~0.43 and an untrained net ~0.3;
    # 96 training steps of unet-lite reach ~0.70 here (about 12 s on 2 cores).
    d = tiny_recipe_dict("unet-lite", num_classes=2)
    d["data"]["synthetic"].update(num_train=96, num_val=16, size=64)
    d["train"].update(epochs=8, batch_size=8, lr=8e-3, warmup_epochs=0.5)
    result = train(recipe_from_dict(d), tmp_path)
    assert result["metrics"]["miou"] > 0.6, result["metrics"]
    assert result["metrics"]["iou"]["disc"] > 0.35, result["metrics"]
    for name in ("model.pt", "last.pt", "train_log.csv", "metrics.json", "recipe.yaml", "train.json"):
        assert (tmp_path / name).is_file(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"miou", "mean_dice", "pixel_accuracy", "iou", "dice"} <= set(metrics)
    assert metrics["num_images"] == 16
    rows = list(csv.DictReader((tmp_path / "train_log.csv").open()))
    assert len(rows) == 8 and float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    ckpt = load_checkpoint(tmp_path / "model.pt")
    assert ckpt.meta.classes == ["background", "disc"] and ckpt.meta.recipe["model"]["name"] == "unet-lite"
    assert ckpt.state["metrics"]["miou"] == pytest.approx(metrics["miou"])


def test_resume_continues_exactly(tmp_path):
    full = tmp_path / "full"
    train(_recipe(epochs=2), full)
    # interrupt a 2-epoch run after its first epoch, then resume it
    interrupted = tmp_path / "interrupted"
    r2 = _recipe(epochs=2)
    import edgeseg.train.loop as loop

    calls = {"n": 0}
    real_validate = loop._validate

    def crash_after_first_epoch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_validate(*a, **k)

    loop._validate = crash_after_first_epoch
    try:
        with pytest.raises(KeyboardInterrupt):
            train(r2, interrupted)
    finally:
        loop._validate = real_validate
    assert read_checkpoint(interrupted / "last.pt")["epoch"] == 0
    train(r2, interrupted, resume=True)
    a = read_checkpoint(full / "last.pt")["model_state"]
    b = read_checkpoint(interrupted / "last.pt")["model_state"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = list(csv.DictReader((interrupted / "train_log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # Training state is tensors and plain data: torch.load(weights_only=True) needs no extra globals.
    for name in ("model.pt", "last.pt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(interrupted / name) == [], name


def test_nan_loss_stops_and_keeps_last_good(tmp_path, monkeypatch):
    import edgeseg.train.losses as losses

    real = losses.SegLoss.forward
    seen = {"n": 0}

    def flaky(self, logits, target):
        seen["n"] += 1
        loss = real(self, logits, target)
        return loss * float("nan") if seen["n"] > 4 else loss  # 16 images / batch 4 = 4 steps per epoch

    monkeypatch.setattr(losses.SegLoss, "forward", flaky)
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(_recipe(epochs=3), tmp_path)
    state = read_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model_state"].values() if v.is_floating_point())
