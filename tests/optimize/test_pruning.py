"""Multi-fidelity: the study's pruner (successive halving) stops the trials that are not among the best
at a fidelity, so they never train the longer fidelities (the training itself is replaced by scores)."""

from __future__ import annotations

import pytest

from edgeseg.optimize import study
from edgeseg.optimize.space import search_space
from tests.conftest import make_checkpoint
from tests.optimize.test_optimize import tiny_optimize_recipe


@pytest.mark.parametrize("pruner", ["successive_halving", "hyperband"])
def test_weak_trials_stop_after_the_first_fidelity(tmp_path, monkeypatch, pruner):
    import edgeseg.train.loop as loop

    recipe = tiny_optimize_recipe()
    recipe.optimize.widths = [1.0, 1.25, 1.5, 1.75, 2.0, 2.25]
    recipe.optimize.rungs, recipe.optimize.pruner = 2, pruner
    cands = {c.id: c for c in search_space(recipe)}
    ckpt = make_checkpoint(tmp_path / "init.pt", model="unet_test", num_classes=2)
    order = sorted(cands)  # queued in this order; each scores lower than the one before
    budgets: dict[str, list[str]] = {cid: [] for cid in cands}

    def fake_train(rcp, folder, **kwargs):
        cid = folder.name
        budgets[cid].append(rcp.train.time_budget)
        return {"metrics": {"task": "semantic", "miou": 1.0 - order.index(cid) / 10}, "epochs_done": 1}

    monkeypatch.setattr(loop, "train", fake_train)
    st = study.open_study(f"sqlite:///{tmp_path / 'study.db'}", "s", recipe.optimize)
    study.queue(st, order)
    trials = study.Trials(recipe=recipe, out=tmp_path, name="s", cfg=recipe.optimize, proxy_s=1.0, candidates=cands,
                          checkpoints={cid: ckpt for cid in cands}, records={cid: {} for cid in cands}, say=lambda m: None)
    study.run_queue(st, trials, None)
    assert budgets[order[0]] == ["1s", "3s"]  # the best goes on to the full fidelity
    stopped = [cid for cid in order if budgets[cid] == ["1s"]]
    assert len(stopped) >= 3, budgets  # most of the weaker ones stop after the proxy fidelity
