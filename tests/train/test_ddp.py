"""DDP with 2 CPU processes under torchrun trains the same recipe and writes one set of files."""

import json
import subprocess
import sys

import yaml

from tests.conftest import tiny_recipe_dict


def test_torchrun_two_cpu_processes(tmp_path):
    recipe = tmp_path / "r.yaml"
    d = tiny_recipe_dict("unet_test")
    d["train"].update(epochs=2, batch_size=4, device="cpu", threads=1)
    recipe.write_text(yaml.safe_dump(d))
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "edgeseg", "train", str(recipe), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0
    info = json.loads((out / "train.json").read_text())
    assert info["figures"]["world_size"] == 2
