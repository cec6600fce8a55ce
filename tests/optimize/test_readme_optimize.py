"""Every `edgeseg optimize`, device-runner and `train --time` command README.md prints, run exactly as
printed (in a scratch folder holding the repository's recipes) with tiny data and a one-candidate space
given by appended ``--set`` options."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from typer.testing import CliRunner

from edgeseg import catalog
from edgeseg.bench.runner import run as runner
from edgeseg.cli import app

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.kind=synthetic", "data.root=null", "data.image_size=32", "data.synthetic.size=32",
        "data.synthetic.num_train=8", "data.synthetic.num_val=2", "data.train_repeats=1", "train.batch_size=4",
        "bench.warmup=1", "bench.min_runs=3", "bench.min_time_s=0", "export.calibration.images=2",
        "optimize.widths=[1.0]", "optimize.prune_ratios=[0.0]", "optimize.precisions=[fp32]",
        "optimize.proxy_time=1s", "optimize.rungs=1", "optimize.full_time=1s"]
MODEL = {"membrane_unet_lite": ["model.name=unet_test", "optimize.models=[unet_test]"],
         "nuclei_yolact_lite": ["model.name=yolact_test", "optimize.models=[yolact_test]", "data.image_size=64",
                                "data.synthetic.size=64", "data.classes=[]", "model.num_classes=2"]}


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines = [line.split("  #")[0].strip() for line in text.splitlines()]
    return [line for line in lines if line.startswith(("edgeseg optimize ", "python -m edgeseg.bench.runner "))
            or (line.startswith("edgeseg train ") and " --time " in line)]


def test_readme_optimize_commands(tmp_path, monkeypatch):
    commands = readme_commands()
    assert len(commands) == 10, commands
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    for command in commands:
        args = shlex.split(command)
        if args[0] == "python":  # the device runner (torch-free), quick settings appended
            runner(args[3:] + ["--threads", "1", "--warmup", "1", "--min-runs", "3", "--min-time", "0", "--no-memory"])
            continue
        recipe = Path(args[2]).stem
        tiny = (["train.time_budget=2s", "data.synthetic.num_train=8", "data.synthetic.num_val=2"]
                if args[1] == "train" else TINY + MODEL[recipe])
        result = CliRunner().invoke(app, args[1:] + [a for t in tiny for a in ("--set", t)])
        assert result.exit_code == 0, (command, result.output, result.exception)
        if "--plan" in args:
            assert "run_on_device.sh" in result.output
        elif args[1] == "optimize":
            assert "chose " in result.output, result.output
    assert json.loads((tmp_path / "runs/qs-20m/train.json").read_text())["figures"]["time_budget_s"] == 2.0
    summary = json.loads((tmp_path / "runs/opt" / catalog.OPTIMIZE_FILES.summary).read_text())
    assert summary["trials"] == 1 and summary["storage"].endswith("study.db")  # --storage: the same study again
