"""`edgeseg optimize` on a tiny space (unet_test at two widths, 32 px synthetic shapes, 1 s fidelities):
latency first (the device runner's lines, set to known values, decide what is feasible: the over-budget
candidate never trains), a winner trained, exported, benched and reported, a budget nobody meets, a
device file that does not match the plan, and a resumed study that repeats no trial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeseg import catalog
from edgeseg.bench.runner import run as runner
from edgeseg.optimize import OptimizeError, optimize
from edgeseg.recipe import recipe_from_dict
from tests.conftest import tiny_recipe_dict

F = catalog.OPTIMIZE_FILES
SMALL, LARGE = "unet_test-w1-d2-p0-s32", "unet_test-w2-d2-p0-s32"


def tiny_optimize_recipe():
    d = tiny_recipe_dict("unet_test", num_classes=2)
    d["data"].update(image_size=32)
    d["data"]["synthetic"].update(num_train=8, num_val=2, size=32, max_shapes=2)
    d["train"].update(lr=0.01)
    d["bench"] = {"warmup": 1, "min_runs": 3, "min_time_s": 0}
    d["optimize"] = {"models": ["unet_test"], "widths": [1.0, 2.0], "prune_ratios": [0.0], "precisions": ["fp32"],
                     "proxy_time": "1s", "rungs": 2, "full_time": "1s"}
    return recipe_from_dict(d)


def target_defaults_recipe():
    """The tiny recipe with each target's default precisions (fp32/int8, fp16/int8 on TensorRT)."""
    rcp = tiny_optimize_recipe()
    rcp.optimize.precisions = None
    return rcp


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """A plan, timed by the device runner (torch-free, on the candidates folder), its p50 then set to
    1 ms (the small width) and 5 ms (the large one) so the budget decides deterministically."""
    out = tmp_path_factory.mktemp("opt")
    doc = optimize(tiny_optimize_recipe(), out, plan=True)
    assert "run_on_device.sh" in doc["summary"]
    runner([str(out / F.candidates), "--out", str(out / "device.jsonl"), "--threads", "1", "--warmup", "1",
            "--min-runs", "3", "--min-time", "0", "--no-memory"])
    rows = [json.loads(line) for line in (out / "device.jsonl").read_text().splitlines()]
    for r in rows:
        r["latency"]["p50_ms"] = 1.0 if r["artifact"]["name"].startswith(SMALL) else 5.0
    (out / "device.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_plan_writes_candidates_and_the_device_script(planned):
    plan = json.loads((planned / F.plan).read_text())
    assert sorted(plan["files"]) == [f"{SMALL}.fp32.onnx", f"{LARGE}.fp32.onnx"]
    assert sorted(p.name for p in (planned / F.candidates).iterdir()) == sorted(plan["files"])
    assert "python -m edgeseg.bench.runner candidates" in (planned / F.runner_script).read_text()
    assert not (planned / F.runs).exists()  # nothing trained by a plan


def test_budget_nobody_meets_names_the_fastest(planned):
    with pytest.raises(OptimizeError) as err:
        optimize(tiny_optimize_recipe(), planned, budget_ms=0.5, device_latency=planned / "device.jsonl")
    msg = str(err.value)
    assert "\n" not in msg and f"the fastest is {SMALL}.fp32 at 1.00 ms" in msg
    assert not (planned / F.runs).exists()


def test_device_file_must_match_the_plan(planned, tmp_path):
    lines = (planned / "device.jsonl").read_text().splitlines()
    partial = tmp_path / "partial.jsonl"
    partial.write_text(lines[0] + "\n")
    with pytest.raises(OptimizeError, match="do not match the plan") as err:
        optimize(tiny_optimize_recipe(), planned, budget_ms=3, device_latency=partial)
    assert "missing" in str(err.value) and "\n" not in str(err.value)


def test_device_latency_study_finds_the_winner_and_resumes_without_repeating(planned):
    doc = optimize(tiny_optimize_recipe(), planned, budget_ms=3, device_latency=planned / "device.jsonl")
    assert doc["feasible"] == 1 and doc["architectures"] == 2 and doc["candidate"] == SMALL
    runs = planned / F.runs / doc["study"]
    assert [p.name for p in runs.iterdir()] == [SMALL]  # the over-budget candidate never trained
    assert doc["predicted_latency_ms"] == 1.0 and doc["final_latency_ms"] > 0
    assert doc["summary"].startswith(f"chose {SMALL} (fp32)")
    trials = [json.loads(line) for line in (planned / F.trials).read_text().splitlines()]
    assert [(t["candidate"], t["state"], len(t["fidelities"])) for t in trials] == [(SMALL, "complete", 2)]
    assert trials[0]["latency_ms_by_precision"] == {"fp32": 1.0} and trials[0]["params"] > 0 and trials[0]["gmacs"] > 0
    # every fidelity keeps the task's other scalar metrics beside the headline (mean Dice for a Pareto by Dice)
    assert all({"miou", "mean_dice"} <= set(f) for f in trials[0]["fidelities"])
    for name in ("1_train/model.pt", "4_export/model.onnx", "5_bench/results.jsonl", "6_report/report.md"):
        assert (planned / F.winner / name).is_file(), name
    assert (planned / F.plot).is_file()

    mtime = (runs / SMALL / "last.pt").stat().st_mtime
    again = optimize(tiny_optimize_recipe(), planned, budget_ms=3, device_latency=planned / "device.jsonl")
    assert again["trials"] == 1 and again["candidate"] == SMALL  # the stored study: no trial repeated
    assert (runs / SMALL / "last.pt").stat().st_mtime == mtime  # and nothing trained again
    assert len(Path(planned / F.trials).read_text().splitlines()) == 1


def test_interrupted_study_resumes_the_interrupted_trial(planned, monkeypatch):
    import edgeseg.train.loop as loop

    real, calls = loop.train, []

    def interrupt_the_second_training(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train", interrupt_the_second_training)
    with pytest.raises(KeyboardInterrupt):  # both candidates fit 6 ms: the second trial is interrupted
        optimize(tiny_optimize_recipe(), planned, budget_ms=6, device_latency=planned / "device.jsonl")
    monkeypatch.setattr(loop, "train", real)
    doc = optimize(tiny_optimize_recipe(), planned, budget_ms=6, device_latency=planned / "device.jsonl")
    trials = [json.loads(line) for line in (planned / F.trials).read_text().splitlines()]
    done = sorted(t["candidate"] for t in trials if t["state"] in ("complete", "pruned") and t["fidelities"])
    assert done == [SMALL, LARGE] and doc["feasible"] == 2  # the interrupted candidate trained on the rerun
    assert any(t["state"] == "complete" for t in trials)  # (the other may be stopped by successive halving)
    assert [t["state"] for t in trials].count("fail") == 1 and len(trials) == 3


def test_the_winner_trains_at_least_as_long_as_its_trial():
    from edgeseg.optimize.output import longest_fidelity

    rcp = tiny_optimize_recipe()  # train.epochs: 1
    longer = {"fidelities": [{"epochs": 3, "time_budget_s": 1.0}, {"epochs": 9, "time_budget_s": 3.0}]}
    assert longest_fidelity(longer, rcp) == "3s"  # the trial ran 9 epochs: the winner gets its 3 s, not 1 epoch
    assert longest_fidelity({"fidelities": [{"epochs": 1, "time_budget_s": 3.0}]}, rcp) is None  # the recipe's
    assert longest_fidelity({"fidelities": []}, rcp) is None
