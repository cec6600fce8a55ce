"""Training refuses what would give wrong or mixed results: bad sizes, changed resumes, shared folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import edgeseg.train.loop as loop
import edgeseg.train.resume as resume
from edgeseg.artifacts.checkpoint import read_checkpoint
from edgeseg.artifacts.outputs import OutputError, folder_lock
from edgeseg.recipe import RecipeError, recipe_from_dict
from edgeseg.train import train
from tests.conftest import tiny_recipe_dict


def _recipe(model: str = "unet_test", **train_kw):
    d = tiny_recipe_dict(model, num_classes=4)
    d["data"]["synthetic"].update(num_train=8, num_val=4)
    d["train"].update(train_kw)
    return recipe_from_dict(d)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(_recipe(epochs=1), out)
    return out


def test_image_size_not_a_stride_multiple_fails_before_writing(tmp_path):
    r = _recipe()
    r.data.image_size = 50
    with pytest.raises(RecipeError, match=r"data.image_size: 50x50 is not a multiple of unet_test's stride 4 "
                                          r"\(use 48 or 52\)"):
        train(r, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_resume_with_changed_settings_lists_them_and_rewrites_nothing(finished):
    before = (finished / "recipe.yaml").read_text()
    with pytest.raises(RecipeError) as info:
        train(_recipe(epochs=2, lr=0.01, batch_size=2), finished, resume=True)
    msg = str(info.value)
    assert "train.lr: 0.001 -> 0.01" in msg and "train.batch_size: 4 -> 2" in msg and "epochs" not in msg
    assert (finished / "recipe.yaml").read_text() == before
    other_model = recipe_from_dict(tiny_recipe_dict("fcn_test", num_classes=4))
    with pytest.raises(RecipeError, match=r"model.name: \"unet_test\" -> \"fcn_test\""):
        train(other_model, finished, resume=True)


def test_resume_of_a_finished_run_rewrites_nothing(finished, capsys):
    train_json = (finished / "train.json").read_text()
    result = train(_recipe(epochs=1), finished, resume=True)
    out = capsys.readouterr().out
    assert "already finished epoch 1/1" in out and "epoch 2/1" not in out and "-1.0000" not in out
    assert (finished / "train.json").read_text() == train_json
    assert result["metrics"]["miou"] == json.loads((finished / "metrics.json").read_text())["miou"]


def test_a_busy_output_folder_is_refused(finished):
    with folder_lock(finished, command="edgeseg train (other)"):
        with pytest.raises(OutputError, match="in use by process .*edgeseg train \\(other\\)"):
            train(_recipe(epochs=1), finished)


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is an existing file; expected a folder"):
        train(_recipe(epochs=1), tmp_path / "f")


def test_ctrl_c_says_where_the_checkpoint_is_and_how_to_resume(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = loop._validate

    def interrupt_in_second_epoch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop, "_validate", interrupt_in_second_epoch)
    monkeypatch.delenv("EDGESEG_QUIET", raising=False)
    with pytest.raises(KeyboardInterrupt):
        train(_recipe(epochs=2), tmp_path)
    err = capsys.readouterr().err
    assert f"interrupted: {tmp_path / 'last.pt'} holds epoch 1/2" in err and "--resume" in err
    # not on a terminal: one plain line per epoch, so a log never looks hung
    assert "epoch 1/2: loss" in err


def test_auto_mask_decoding_is_recorded_and_said_once(tmp_path, capsys):
    root = tmp_path / "data"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        mask = (rng.random((32, 32)) > 0.5).astype(np.uint8)
        if i == 2:
            mask[0, 0] = 5  # one stray value in a 0/1 dataset
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    r = recipe_from_dict({"model": {"name": "unet_test", "num_classes": 2},
                          "data": {"kind": "folder", "root": str(root), "image_size": 32, "val_ratio": 0.34},
                          "train": {"epochs": 1, "batch_size": 4}})
    train(r, tmp_path / "out")
    out = capsys.readouterr().out
    assert out.count("masks decoded as binary") == 1 and "{0, 1, 5}" in out
    for name in ("model.pt", "last.pt"):
        data = read_checkpoint(tmp_path / "out" / name)["data"]
        assert data["train"]["mask_encoding"] == data["val"]["mask_encoding"] == "binary"
        assert data["train"]["mask_encoding_requested"] == "auto"
    figures = json.loads((tmp_path / "out" / "train.json").read_text())["figures"]
    assert figures["data"]["train"]["mask_encoding"] == "binary"


def test_resume_that_extends_epochs_rebuilds_the_schedule_and_says_so(tmp_path):
    import csv

    extended, straight = tmp_path / "extended", tmp_path / "straight"
    train(_recipe(epochs=2), extended)
    train(_recipe(epochs=4), extended, resume=True)
    train(_recipe(epochs=4), straight)

    def lrs(out):
        return [float(r["lr"]) for r in csv.DictReader((out / "train_log.csv").open())]

    # Epochs 3-4 follow the 4-epoch schedule, not the end of the 2-epoch one (1% of train.lr).
    assert lrs(extended)[2:] == pytest.approx(lrs(straight)[2:])
    assert lrs(extended)[2] > 0.1 * 1e-3
    figures = json.loads((extended / "train.json").read_text())["figures"]
    assert figures["resumed"] == {"from_epoch": 2, "extended": {"from_epochs": 2, "to_epochs": 4}}
    assert figures["epochs"] == 4


def test_restart_schedule_replaces_the_stored_runs_last_rate():
    import torch

    net = torch.nn.Linear(2, 2)
    short, long_ = _recipe(epochs=2).train, _recipe(epochs=4).train
    opt = loop.make_optimizer(net, short)
    sched = loop.make_scheduler(opt, short, steps_per_epoch=3)
    for _ in range(6):  # the whole 2-epoch run: its rate ends at 1% of train.lr
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * short.lr)
    opt2 = loop.make_optimizer(net, long_)
    sched2 = loop.make_scheduler(opt2, long_, steps_per_epoch=3)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    resume.restart_schedule(sched2, opt2)
    halfway = 0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * 6 / 12))  # step 6 of 12 on the cosine
    assert opt2.param_groups[0]["lr"] == pytest.approx(long_.lr * halfway)
    assert sched2.get_last_lr()[0] == pytest.approx(long_.lr * halfway)
