"""Issue 18's "not yet tried" list: `edgeseg run` killed mid-stage and rerun, broken instance data, COCO
edge cases, a pruned model's exported files through eval/bench/predict, in-graph postprocess after pruning.

A kill is a ``KeyboardInterrupt`` raised inside the real stage after it wrote its files (what Ctrl-C there
does); pruning runs with ``measure_latency=False`` (no ONNX timing: what is tested is the run's bookkeeping).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.catalog import FILES, STAGES
from edgeseg.pipeline import run
from edgeseg.recipe import recipe_from_dict
from tests.conftest import tiny_recipe_dict


class Killed(KeyboardInterrupt):
    """Ctrl-C in the middle of a stage."""


def _run_recipe(root: Path | None = None, ratio: float = 0.5, quantize: bool = False):
    d = tiny_recipe_dict("unet_test", num_classes=2)
    d["data"]["synthetic"].update(num_train=8, num_val=4, size=32)
    d["data"]["image_size"] = 32
    if root is not None:
        d["data"] = {"kind": "folder", "root": str(root), "image_size": 32, "val_ratio": 0.34}
    d["prune"] = {"ratio": ratio, "round_to": 2}
    if quantize:
        d["quantize"] = {"calibration": {"images": 2}, "int8_policy": "always"}
    return recipe_from_dict(d)


@pytest.fixture
def prune_untimed(monkeypatch):
    """The real prune without ONNX timing; ``kill_after[0] = True`` interrupts it once it wrote its files."""
    import edgeseg.compress.prune as prune_mod

    real = prune_mod.prune
    kill_after = [False]

    def prune(*args, **kwargs):
        doc = real(*args, **{**kwargs, "measure_latency": False})
        if kill_after[0]:
            raise Killed()
        return doc

    monkeypatch.setattr(prune_mod, "prune", prune)
    return kill_after


def _status(summary) -> dict[str, str]:
    return {k: v["status"] for k, v in summary["stages"].items()}


def _kept_channels(path: Path) -> str:
    from edgeseg.artifacts.checkpoint import read_checkpoint

    return json.dumps(read_checkpoint(path)["layer_shapes"], sort_keys=True, default=str)


def test_run_killed_mid_prune_then_rerun_prunes_again(tmp_path, prune_untimed):
    out = tmp_path / "run"
    pruned = out / STAGES["prune"] / FILES.model
    assert _status(run(_run_recipe(ratio=0.5), out)) == {"train": "done", "prune": "done"}
    half = _kept_channels(pruned)
    prune_untimed[0] = True
    with pytest.raises(Killed):  # another ratio, killed after writing its model.pt but before stage.json
        run(_run_recipe(ratio=0.25), out)
    assert _kept_channels(pruned) != half
    prune_untimed[0] = False
    # the first recipe again: its stage.json must not vouch for the killed run's model.pt
    again = run(_run_recipe(ratio=0.5), out)
    assert _status(again) == {"train": "skipped", "prune": "done"} and _kept_channels(pruned) == half
    assert not (out / FILES.lock).exists() or _status(run(_run_recipe(ratio=0.5), out))["prune"] == "skipped"


def test_run_killed_mid_quantize_then_rerun_quantizes_again(tmp_path, prune_untimed, monkeypatch):
    import edgeseg.export as export_mod

    real = export_mod.export
    out = tmp_path / "run"
    assert _status(run(_run_recipe(quantize=True), out)) == {"train": "done", "prune": "done", "quantize": "done"}
    int8 = out / STAGES["quantize"] / "model.int8.onnx"
    good = int8.read_bytes()

    def killed_export(checkpoint, folder, **kwargs):
        Path(folder, "model.int8.onnx").write_bytes(b"half-written")
        raise Killed()

    monkeypatch.setattr(export_mod, "export", killed_export)
    with pytest.raises(Killed):
        run(_run_recipe(quantize=False).model_copy(update={"quantize": _run_recipe(quantize=True).quantize.model_copy(
            update={"int8_policy": "auto"})}), out)
    monkeypatch.setattr(export_mod, "export", real)
    again = run(_run_recipe(quantize=True), out)
    assert _status(again) == {"train": "skipped", "prune": "skipped", "quantize": "done"}
    onnx = pytest.importorskip("onnx")
    onnx.checker.check_model(onnx.load(str(int8)))
    assert len(int8.read_bytes()) == pytest.approx(len(good), rel=0.01)


def _folder_data(root: Path, n: int = 6) -> None:
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray((rng.random((32, 32)) > 0.5).astype(np.uint8)).save(root / "masks" / f"{i}.png")


def test_rerun_after_the_data_changed_prunes_again_and_force_retrains(tmp_path, prune_untimed):
    root, out = tmp_path / "data", tmp_path / "run"
    _folder_data(root)
    assert _status(run(_run_recipe(root), out)) == {"train": "done", "prune": "done"}
    assert _status(run(_run_recipe(root), out)) == {"train": "skipped", "prune": "skipped"}
    mask = root / "masks" / "1.png"
    Image.fromarray(np.ones((32, 32), np.uint8)).save(mask)
    st = mask.stat()
    os.utime(mask, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    train = out / STAGES["train"]
    # Training on the new data starts over: "resuming" the finished last.pt would train no epoch at all and
    # hand on the model of the old data. The same for --force. train.json is gone until a training writes it.
    (train / FILES.train_json).unlink()
    assert _status(run(_run_recipe(root), out)) == {"train": "done", "prune": "done"}
    assert "resumed" not in json.loads((train / FILES.train_json).read_text())["figures"]
    (train / FILES.train_json).unlink()
    assert _status(run(_run_recipe(root), out, force=True)) == {"train": "done", "prune": "done"}
    assert "resumed" not in json.loads((train / FILES.train_json).read_text())["figures"]
    assert len((train / FILES.train_log).read_text().strip().splitlines()) == 2  # header + the one epoch


def test_run_killed_mid_training_resumes_only_the_same_attempt(tmp_path, monkeypatch):
    import edgeseg.train.loop as loop

    real, calls = loop.checkpoint, []

    def checkpoint_then_die(run_, epoch, row):
        real(run_, epoch, row)
        calls.append(epoch)
        if epoch == 0:
            raise Killed()  # Ctrl-C right after epoch 1 of 2 was saved

    d = tiny_recipe_dict("unet_test", num_classes=2)
    d["data"]["synthetic"].update(num_train=4, num_val=2, size=32)
    d["data"]["image_size"] = 32
    d["train"]["epochs"] = 2
    out = tmp_path / "run"
    monkeypatch.setattr(loop, "checkpoint", checkpoint_then_die)
    with pytest.raises(Killed):
        run(recipe_from_dict(d), out)
    marker = json.loads((out / STAGES["train"] / FILES.stage_json).read_text())
    assert marker["status"] == "running"
    assert _status(run(recipe_from_dict(d), out)) == {"train": "done"}
    assert calls == [0, 1]  # the second run did epoch 2 only
    figures = json.loads((out / STAGES["train"] / FILES.train_json).read_text())["figures"]
    assert figures["resumed"]["from_epoch"] == 1
