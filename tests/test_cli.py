"""The CLI end to end, as a user types it (subprocesses, so error handling is what users see)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY = ["--set", "model.name=unet_test", "--set", "train.epochs=1", "--set", "train.batch_size=4",
        "--set", "data.image_size=64", "--set", "data.synthetic.num_train=8", "--set", "data.synthetic.num_val=4",
        "--set", "data.synthetic.size=64"]


def edgeseg(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeseg", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={**__import__("os").environ, "EDGESEG_QUIET": "1"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("qs")
    proc = edgeseg("train", *TINY, "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mean" in proc.stdout
    return out


def test_models_table():
    proc = edgeseg("models")
    assert proc.returncode == 0, proc.stderr
    for name in ("unet", "unet-lite", "segnet", "segnet-lite", "fcn8s", "fcn-lite"):
        assert name in proc.stdout


def test_train_eval_predict(trained, tmp_path):
    assert (trained / "model.pt").is_file() and (trained / "metrics.json").is_file()
    proc = edgeseg("eval", trained / "model.pt", "--split", "val", "--json", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["num_images"] == 4 and 0 <= m["miou"] <= 1
    img = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(img)
    proc = edgeseg("predict", trained / "model.pt", img, "--out", tmp_path / "preds")
    assert proc.returncode == 0, proc.stderr[-2000:]
    mask = np.asarray(Image.open(tmp_path / "preds" / "img.mask.png"))
    assert mask.shape == (70, 90) and mask.max() < 4
    assert Image.open(tmp_path / "preds" / "img.overlay.png").size == (90, 70)


def test_resume_flag(trained):
    proc = edgeseg("train", *TINY, "--set", "train.epochs=2", "--out", trained, "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming" in proc.stdout


@pytest.mark.parametrize("args, expected", [
    (["train", "--set", "train.epocs=1"], "did you mean 'train.epochs'"),
    (["train", "--set", "model.name=unet-lyte"], "did you mean 'unet-lite'"),
    (["eval", "missing/model.pt"], "file not found"),
    (["train", "--set", "data.kind=folder", "--set", "data.root=/nonexistent"], "/nonexistent"),
])
def test_clear_errors_without_traceback(args, expected, tmp_path):
    proc = edgeseg(*args, "--out", tmp_path) if args[0] == "train" else edgeseg(*args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_report_of_a_missing_results_file_is_one_line(tmp_path):
    """(export -> bench -> report as printed in the README, with their figures: tests/test_readme.py)"""
    bad = edgeseg("report", tmp_path / "missing.jsonl", "--out", tmp_path / "rep2")
    assert bad.returncode == 2 and "results file not found" in bad.stderr
