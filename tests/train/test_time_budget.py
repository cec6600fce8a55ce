"""``train.time_budget`` / ``edgeseg train --time``: the schedule follows the clock, the run stops on time
with a valid model.pt, and ``--resume`` keeps the time already spent."""

from __future__ import annotations

import json

import pytest
import torch

from edgeseg.artifacts.checkpoint import load_checkpoint, read_checkpoint
from edgeseg.recipe import RecipeError, load_recipe, parse_duration, recipe_from_dict
from edgeseg.train import train
from edgeseg.train.budget import Clock
from edgeseg.train.loop import make_scheduler
from tests.conftest import tiny_recipe_dict


def _recipe(budget: str):
    d = tiny_recipe_dict("unet_test", num_classes=4)
    d["data"].update(image_size=32)
    d["data"]["synthetic"].update(num_train=8, num_val=2, size=32)
    # epochs is a large number the run never reaches: the time decides (warm-up: 1/10 of it)
    d["train"].update(epochs=10_000, warmup_epochs=1000, batch_size=4, time_budget=budget)
    return recipe_from_dict(d)


def test_durations_parse_and_bad_text_names_the_field():
    assert [parse_duration(t, "x") for t in ("90s", "20m", "2h", "1.5h", 45)] == [90, 1200, 7200, 5400, 45]
    for bad in ("soon", "-3m", "0s", "4x"):
        with pytest.raises(RecipeError) as err:
            load_recipe(None, [f"train.time_budget={bad}"])
        assert "train.time_budget" in str(err.value) and "\n" not in str(err.value)


def test_schedule_is_laid_over_the_time_not_the_steps():
    cfg = _recipe("100s").train
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    clock = Clock(100.0)
    sched = make_scheduler(opt, cfg, steps_per_epoch=1, clock=clock)
    rates = []
    for spent in (0.0, 5.0, 10.0, 55.0, 100.0, 150.0):  # the step count stays 1 per read: only time moves
        clock.offset_s = spent
        clock.tick()
        sched.step()
        rates.append(sched.get_last_lr()[0])
    assert rates[0] == pytest.approx(0.01) and rates[1] == pytest.approx(0.505)  # half-way through warm-up
    assert rates[2] == pytest.approx(1.0) and rates[3] == pytest.approx(0.505)  # peak; half-way down the cosine
    assert rates[4] == pytest.approx(0.01) and rates[5] == pytest.approx(0.01)  # the end, and past it


def test_stops_on_time_with_a_valid_checkpoint_and_resume_keeps_the_time(tmp_path):
    first = train(_recipe("2s"), tmp_path)
    figures = json.loads((tmp_path / "train.json").read_text())["figures"]
    assert figures["time_budget_s"] == 2.0 and figures["time_used_s"] >= 2.0
    assert 1 <= figures["epochs_done"] < 10_000 and figures["epochs"] == figures["epochs_done"]
    ckpt = load_checkpoint(tmp_path / "model.pt")  # the best validated model, loadable
    assert ckpt.state["metrics"]["miou"] == pytest.approx(first["metrics"]["miou"])
    spent = read_checkpoint(tmp_path / "last.pt", resume=True)["time_spent_s"]
    assert spent >= 2.0

    again = train(_recipe("2s"), tmp_path, resume=True)  # the time is spent: nothing to resume
    assert again["resumed"] == "already finished"

    longer = train(_recipe("4s"), tmp_path, resume=True)  # a larger budget continues the same clock
    figures = json.loads((tmp_path / "train.json").read_text())["figures"]
    assert longer["resumed"]["from_epoch"] == first["epochs_done"]
    assert figures["time_used_s"] >= 4.0 and figures["epochs_done"] > first["epochs_done"]
    assert read_checkpoint(tmp_path / "last.pt", resume=True)["time_spent_s"] >= 4.0
