"""Several `edgeseg optimize` processes on one storage share the study: every feasible candidate is
trained by exactly one trial, and the winner once; an interrupted trial is queued again on a rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from edgeseg import catalog
from edgeseg.bench.runner import run as runner
from edgeseg.optimize import optimize, study
from tests.optimize.test_optimize import tiny_optimize_recipe

F = catalog.OPTIMIZE_FILES
ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_share_one_study_without_duplicates(tmp_path):
    recipe = tiny_optimize_recipe()
    recipe.optimize.widths = [1.0, 1.5, 2.0]
    recipe.optimize.rungs = 1
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe.to_dict()))
    out = tmp_path / "opt"
    optimize(path, out, plan=True)
    runner([str(out / F.candidates), "--out", str(tmp_path / "device.jsonl"), "--threads", "1", "--warmup", "1",
            "--min-runs", "3", "--min-time", "0", "--no-memory"])
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    command = [sys.executable, "-m", "edgeseg", "optimize", str(path), "--budget", "100ms", "--device-latency",
               str(tmp_path / "device.jsonl"), "--storage", storage, "--out", str(out)]
    env = {**os.environ, "EDGESEG_QUIET": "1", "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = [json.loads(line) for line in (out / F.trials).read_text().splitlines()]
    trained = sorted(t["candidate"] for t in trials if t["state"] == "complete")
    assert len(trained) == 3 and len(set(trained)) == 3, trials  # N trials, no candidate twice
    runs = {run.name for study in (out / F.runs).iterdir() for run in study.iterdir()}
    assert len(runs) == 3
    assert sum("chose " in o for o in outputs) >= 1, outputs
    assert json.loads((out / F.winner / "winner.json").read_text())["candidate"] in trained


def test_sqlite_hands_a_queued_trial_to_one_process_only(tmp_path):
    """The race that ran one trial in two processes: process 1 has read the queued trial WAITING and is
    about to claim it; process 2's claim must wait for it and then find it RUNNING (before the fix it
    claimed the trial too, and the slower process died on "Trial#N has already finished")."""
    import optuna

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = study.rdb_storage(url), study.rdb_storage(url)
    st = optuna.create_study(storage=first, study_name="s", direction="maximize")
    st.enqueue_trial({"candidate": "a"})
    trial_id = st.get_trials()[0]._trial_id
    claimed: list[bool] = []
    with first.engine.connect() as conn:
        state = conn.exec_driver_sql("SELECT state FROM trials WHERE trial_id = ?", (trial_id,)).scalar()
        assert state == "WAITING"
        other = threading.Thread(target=lambda: claimed.append(
            second.set_trial_state_values(trial_id, optuna.trial.TrialState.RUNNING)))
        other.start()
        other.join(1.0)
        waited = other.is_alive()
        conn.exec_driver_sql("UPDATE trials SET state = 'RUNNING' WHERE trial_id = ?", (trial_id,))
        conn.commit()
    other.join(60)
    assert waited and claimed == [False]
