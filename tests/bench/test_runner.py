"""The standalone runner works where torch does not exist, and writes lines `report` accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BLOCKER = '''
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is hidden for this test")
sys.meta_path.insert(0, _NoTorch())
'''


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "images" / f"s{i}.png")
        Image.fromarray(rng.integers(0, 4, (48, 64), dtype=np.uint8)).save(root / "masks" / f"s{i}.png")
    return root


def test_runner_without_torch(tiny_artifacts, tmp_path):
    _, onnx_path = tiny_artifacts
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)  # applies to the memory probe's child too
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{repo}", "EDGESEG_QUIET": "1"}
    out = tmp_path / "device.jsonl"
    data = _folder(tmp_path / "ds")
    code = ("import sys; from edgeseg.bench.runner import run; "
            f"run([{str(onnx_path)!r}, '--out', {str(out)!r}, '--threads', '1', '--warmup', '1', "
            f"'--min-runs', '3', '--min-time', '0', '--data', {str(data)!r}]); "
            "assert 'torch' not in sys.modules, 'runner imported torch'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, env=env)
    assert check.returncode != 0, "the torch blocker did not work"
    row = json.loads(out.read_text().splitlines()[0])
    assert not row["error"] and row["latency"]["p50_ms"] > 0
    assert "error" not in row["memory"] and row["memory"]["peak_rss_mb"] > 0
    assert row["accuracy"]["num_images"] == 1  # 3 images, ratio split 0.2 -> 1 validation image
    assert row["model"]["params"] > 0 and row["model"]["gmacs"] > 0 and row["model"]["profile_source"] == "onnx graph"
    assert row["accuracy"]["dataset"]["name"] == "ds" and row["threads"] == 1

    from edgeseg.report import report

    paths = report([out], tmp_path / "rep")
    assert "unet_test" in paths["md"].read_text()


def test_npz_accuracy_matches_the_folder_reader(tiny_artifacts, tmp_path):
    from edgeseg import runtime
    from edgeseg.bench.accuracy import folder_accuracy, npz_accuracy

    _, onnx_path = tiny_artifacts
    data = _folder(tmp_path / "ds")
    names = sorted(p.stem for p in (data / "images").iterdir())
    images = np.stack([np.asarray(Image.open(data / "images" / f"{n}.png")) for n in names])
    masks = np.stack([np.asarray(Image.open(data / "masks" / f"{n}.png")) for n in names])
    np.savez(tmp_path / "val.npz", images=images, masks=masks)
    be = runtime.open(onnx_path, threads=1)
    res = npz_accuracy(be, tmp_path / "val.npz")
    assert res["num_images"] == 3 and res["split"] == "npz" and 0 <= res["miou"] <= 1
    (data / "splits").mkdir()
    (data / "splits" / "val.txt").write_text("\n".join(names))
    assert folder_accuracy(be, data)["miou"] == pytest.approx(res["miou"])
    np.savez(tmp_path / "bad.npz", images=images)
    with pytest.raises(ValueError, match="lacks the array 'masks'"):
        npz_accuracy(be, tmp_path / "bad.npz")


def test_runner_times_an_onnx_file_without_metadata(tmp_path, capsys):
    """Bring-your-own ONNX on a device: timed at --size from its graph alone; accuracy refused, in one line."""
    from tests.runtime.test_ort_rt import _toy_onnx

    from edgeseg.bench.runner import run

    path = _toy_onnx(tmp_path / "theirs.onnx", meta=None)
    out = tmp_path / "device.jsonl"
    rows = run([str(path), "--size", "24x32", "--out", str(out), "--threads", "1", "--warmup", "1",
                "--min-runs", "3", "--min-time", "0", "--no-memory", "--data", str(_folder(tmp_path / "ds"))])
    assert len(rows) == 1 and not rows[0]["error"] and rows[0]["latency"]["p50_ms"] > 0
    assert rows[0]["input_shape"] == [1, 3, 24, 32]
    assert "no edgeseg metadata" in rows[0]["accuracy"]["error"]
    assert "theirs.onnx has no edgeseg metadata" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's usage error for a bad size
        run([str(path), "--size", "0x32", "--out", str(out)])
