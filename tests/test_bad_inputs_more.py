"""Issue 18's "not yet tried" list: `edgeseg run` killed mid-stage and rerun, broken instance data, COCO
edge cases, a pruned model's exported files through eval/bench/predict, in-graph postprocess after pruning.

A kill is a ``KeyboardInterrupt`` raised inside the real stage after it wrote its files (what Ctrl-C there
does); pruning runs without ONNX timing and validation, quantization with a stand-in export (what is tested
is the run's bookkeeping; tests/test_pipeline.py runs the real stages end to end).
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
    d["data"]["synthetic"].update(num_train=4, num_val=2, size=32)
    d["data"]["image_size"] = 32
    if root is not None:
        d["data"] = {"kind": "folder", "root": str(root), "image_size": 32, "val_ratio": 0.34}
    d["prune"] = {"ratio": ratio, "round_to": 2}
    if quantize:
        d["quantize"] = {"calibration": {"images": 2}, "int8_policy": "always"}
    return recipe_from_dict(d)


@pytest.fixture
def prune_untimed(monkeypatch):
    """The real prune without ONNX timing or validation; ``kill_after[0] = True`` interrupts it once it wrote its
    files."""
    import edgeseg.compress.prune as prune_mod

    real = prune_mod.prune
    kill_after = [False]

    def prune(*args, **kwargs):
        doc = real(*args, **{**kwargs, "measure_latency": False, "measure_accuracy": False})
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
    """Export stands in by a function writing what it writes (the ONNX conversion is not what is tested)."""
    import edgeseg.export as export_mod

    def export(checkpoint, folder, *, precisions, cfg, **kwargs):
        if cfg.int8_policy == "auto":  # the second recipe: killed after its first file
            Path(folder, "model.int8.onnx").write_bytes(b"half-written")
            raise Killed()
        Path(folder, "model.int8.onnx").write_bytes(b"int8 of " + Path(checkpoint).read_bytes()[:16])
        doc = {"artifacts": [{"path": str(Path(folder, "model.int8.onnx")), "precision": "int8", "shipped": True}]}
        Path(folder, FILES.export_json).write_text(json.dumps(doc))
        return doc

    monkeypatch.setattr(export_mod, "export", export)
    out = tmp_path / "run"
    int8 = out / STAGES["quantize"] / "model.int8.onnx"
    assert _status(run(_run_recipe(quantize=True), out)) == {"train": "done", "prune": "done", "quantize": "done"}
    good = int8.read_bytes()
    other = _run_recipe(quantize=True)
    other.quantize.int8_policy = "auto"
    with pytest.raises(Killed):
        run(other, out)
    again = run(_run_recipe(quantize=True), out)
    assert _status(again) == {"train": "skipped", "prune": "skipped", "quantize": "done"}
    assert int8.read_bytes() == good


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


# --- instance data with broken files -------------------------------------------------------------------

def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _instance_data(kind: str, root: Path) -> tuple[Path, Path]:
    """Four noisy 24x32 images with two instances each; returns (a image, its mask)."""
    rng = np.random.default_rng(0)
    ids = np.zeros((24, 32), np.uint8)
    ids[2:8, 2:9], ids[12:20, 14:25] = 1, 2
    for i in range(4):
        image = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        if kind == "instance_folder":
            im, mask = root / "images" / f"im{i}.png", root / "masks" / f"im{i}.png"
        else:
            im, mask = root / "PNGImages" / f"Fudan{i}.png", root / "PedMasks" / f"Fudan{i}_mask.png"
        _png(im, image), _png(mask, ids)
    return (root / "images" / "im1.png", root / "masks" / "im1.png") if kind == "instance_folder" else \
        (root / "PNGImages" / "Fudan1.png", root / "PedMasks" / "Fudan1_mask.png")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _empty(folder: Path) -> None:
    for p in folder.iterdir():
        p.unlink()


BROKEN = {  # case -> (edit of (root, image, mask), the message naming the file and what was expected)
    "truncated image": (lambda root, im, mask: _truncate(im), r"{im}: unreadable image \(image file is truncated"),
    "zero-byte image": (lambda root, im, mask: im.write_bytes(b""), r"{im}: unreadable image"),
    "truncated mask": (lambda root, im, mask: _truncate(mask), r"{mask}: unreadable image"),
    "mask of another size": (lambda root, im, mask: _png(mask, np.zeros((20, 32), np.uint8)),
                             r"{mask}: mask is 32x20 but its image {im} is 32x24"),
    "RGB mask": (lambda root, im, mask: _png(mask, np.zeros((24, 32, 3), np.uint8)),
                 r"{mask}: instance-id mask must be single-channel"),
    "empty image folder": (lambda root, im, mask: _empty(im.parent), r"{images}: no images"),
    "empty mask folder": (lambda root, im, mask: _empty(mask.parent), r"image without mask"),
    "mask without image": (lambda root, im, mask: im.unlink(), r"{mask}: mask without image"),
}


@pytest.mark.parametrize("kind", ["instance_folder", "pennfudan"])
@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_instance_folders_are_one_line_errors_naming_the_file(tmp_path, kind, case):
    import re

    from edgeseg.data.base import DataError
    from edgeseg.data.instances import build_instance_dataset

    root = tmp_path / "data"
    im, mask = _instance_data(kind, root)
    edit, pattern = BROKEN[case]
    edit(root, im, mask)
    cfg = recipe_from_dict({"data": {"kind": kind, "root": str(root), "val_ratio": 0.0}}).data
    with pytest.raises(DataError) as err:
        build_instance_dataset(cfg, "train", in_channels=3, train=True, num_classes=1)
    message = str(err.value)
    assert "\n" not in message
    assert re.search(pattern.format(im=re.escape(str(im)), mask=re.escape(str(mask)),
                                    images=re.escape(str(im.parent))), message), message


def test_an_all_background_id_mask_is_an_image_without_instances(tmp_path):
    from edgeseg.data.instances import build_instance_dataset

    root = tmp_path / "data"
    _, mask = _instance_data("instance_folder", root)
    _png(mask, np.zeros((24, 32), np.uint8))
    cfg = recipe_from_dict({"data": {"kind": "instance_folder", "root": str(root), "val_ratio": 0.0,
                                     "image_size": 32}}).data
    ds = build_instance_dataset(cfg, "train", in_channels=3, train=True, num_classes=1)
    counts = sorted(len(ds[i][1]["labels"]) for i in range(len(ds)))
    assert counts[0] == 0 and ds[1][1]["masks"].shape == (0, 32, 32)


# --- COCO edge cases -----------------------------------------------------------------------------------

def _coco_doc(tmp_path: Path) -> tuple[Path, dict]:
    from tests.data.test_instances import _coco

    path, _ = _coco(tmp_path)
    return path, json.loads(path.read_text())


COCO_BAD = {  # case -> (edit, message)
    "empty annotation list": (lambda d: d.update(annotations=[]), r"field 'annotations' is empty"),
    "undeclared category id": (lambda d: d["annotations"][0].update(category_id=5),
                               r"annotation id 10: unknown category_id 5 \(categories: \[3, 7\]\)"),
    "no categories": (lambda d: d.update(categories=[]), r"field 'categories' is empty"),
    "category declared twice": (lambda d: d["categories"].append({"id": 7, "name": "again"}),
                                r"category id 7 is declared twice"),
    "image id twice": (lambda d: d["images"].append(dict(d["images"][0])), r"image id 1 appears twice"),
    "width wrong": (lambda d: d["images"][0].update(width=64),
                    r"image id 1: .*a.png is 48x32 but the json says 64x32 \(fields 'width', 'height'\)"),
    "height not a number": (lambda d: d["images"][0].update(height="32"),
                            r"image id 1: field 'height' is '32'; expected a positive integer"),
    "height zero": (lambda d: d["images"][1].update(height=0), r"image id 2: field 'height' is 0"),
    "2-point polygon": (lambda d: d["annotations"][0].update(segmentation=[[1, 1, 5, 5]]),
                        r"annotation id 10: polygon with 2 points"),
    "polygon of strings": (lambda d: d["annotations"][0].update(segmentation=[[1, "a", 5, 5, 6, 6]]),
                           r"annotation id 10: polygon .* not a number"),
    "bbox of 3 values": (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]),
                         r"annotation id 10: field 'bbox' is \[1, 2, 3\]; expected \[x, y, width, height\]"),
    "RLE counts wrong": (lambda d: d["annotations"][2]["segmentation"].update(counts=[5, 5]),
                         r"annotation id 12: RLE 'counts' do not decode to a 32x48 mask"),
    "annotation not an object": (lambda d: d["annotations"].append("x"), r"annotations\[4\] is str"),
}


@pytest.mark.parametrize("case", list(COCO_BAD))
def test_bad_coco_in_the_training_split_is_a_one_line_error(tmp_path, case):
    from edgeseg.data.base import DataError
    from edgeseg.data.instances import build_instance_dataset

    path, doc = _coco_doc(tmp_path)
    edit, pattern = COCO_BAD[case]
    edit(doc)
    path.write_text(json.dumps(doc))
    cfg = recipe_from_dict({"data": {"kind": "coco", "annotations": {"train": str(path), "val": str(path)},
                                     "root": str(tmp_path / "imgs"), "image_size": 32}}).data
    with pytest.raises(DataError, match=pattern) as err:
        build_instance_dataset(cfg, "train", in_channels=3, train=True)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_coco_image_without_instances_trains_and_evaluates(tmp_path):
    """An image whose objects are all gone (or crowd) is a valid background-only example, in training
    crops (the augmentation used to fail on an empty mask stack) and in the metric."""
    from edgeseg.evaluate import evaluate
    from edgeseg.train import train

    path, doc = _coco_doc(tmp_path)
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != 2 or a.get("iscrowd")]
    path.write_text(json.dumps(doc))
    recipe = recipe_from_dict({
        "name": "coco-empty", "model": {"name": "yolact_test", "num_classes": 2},
        "data": {"kind": "coco", "annotations": {"train": str(path), "val": str(path)},
                 "root": str(tmp_path / "imgs"), "image_size": 64},
        "train": {"epochs": 1, "batch_size": 2, "warmup_epochs": 0}})
    result = train(recipe, tmp_path / "t")
    assert np.isfinite(result["metrics"]["mask_ap"])
    metrics = evaluate(tmp_path / "t" / FILES.model, split="val")
    assert metrics["num_images"] == 2 and 0.0 <= metrics["mask_ap"] <= 1.0


# --- a pruned model's exported files in eval, bench and predict ------------------------------------------

SMALL_DATA = ["--set", "data.synthetic.num_train=4", "--set", "data.synthetic.num_val=2"]
QUICK_BENCH = ["--min-runs", "3", "--warmup", "1", "--min-time", "0", "--threads", "1"]


def _cli(monkeypatch, capsys, *argv: object) -> str:
    """``edgeseg ARGV`` in this process; returns stdout + stderr after asserting exit 0."""
    import sys

    from edgeseg.cli import main

    monkeypatch.setattr(sys, "argv", ["edgeseg", *map(str, argv)])
    with pytest.raises(SystemExit) as info:
        main()
    out = capsys.readouterr()
    assert info.value.code == 0, out.err
    return out.out + out.err


def _pruned(tmp_path: Path, model: str, num_classes: int) -> Path:
    """An untrained checkpoint pruned to half its channels (what `edgeseg prune --ratio 0.5` writes)."""
    from edgeseg.compress.prune import PruneConfig, prune
    from tests.conftest import make_checkpoint

    base = make_checkpoint(tmp_path / "base.pt", model=model, num_classes=num_classes)
    prune(base, tmp_path / "pruned", PruneConfig(ratio=0.5, round_to=2), measure_latency=False,
          measure_accuracy=False)
    return tmp_path / "pruned" / FILES.model


def _eval_bench_predict(monkeypatch, capsys, tmp_path: Path, files: list[Path], score: str) -> None:
    image = _png(tmp_path / "img.png", np.zeros((40, 40, 3), np.uint8))
    for f in files:
        assert "over 2 images" in _cli(monkeypatch, capsys, "eval", f, "--threads", "1")
        _cli(monkeypatch, capsys, "predict", f, image, "--out", tmp_path / f"pred-{f.suffix[1:]}", "--threads", "1")
        assert list((tmp_path / f"pred-{f.suffix[1:]}").glob("img.*.png"))
    results = tmp_path / "r.jsonl"
    _cli(monkeypatch, capsys, "bench", *files, "--out", results, *QUICK_BENCH)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == len(files) and all(not r.get("error") and r["latency"]["p50_ms"] > 0 for r in rows)
    assert all(r["accuracy"]["num_images"] == 2 and r["accuracy"][score] is not None for r in rows)


def test_pruned_model_onnx_and_ort_run_in_eval_bench_and_predict(tmp_path, monkeypatch, capsys):
    pruned = _pruned(tmp_path, "unet_test", 4)
    _cli(monkeypatch, capsys, "export", pruned, "--format", "onnx", "--format", "ort", "--out", tmp_path / "ex",
         *SMALL_DATA)
    _eval_bench_predict(monkeypatch, capsys, tmp_path, [tmp_path / "ex" / "model.onnx", tmp_path / "ex" / "model.ort"],
                        "miou")


@pytest.mark.slow  # the ExecuTorch lowering and its runtime's first load take over a minute here
def test_pruned_model_pte_runs_in_eval_bench_and_predict(tmp_path, monkeypatch, capsys):
    pytest.importorskip("executorch.runtime", reason="the executorch extra is not installed")
    pruned = _pruned(tmp_path, "unet_test", 4)
    _cli(monkeypatch, capsys, "export", pruned, "--format", "executorch", "--out", tmp_path / "et", *SMALL_DATA)
    _eval_bench_predict(monkeypatch, capsys, tmp_path, [tmp_path / "et" / "model.pte"], "miou")


@pytest.mark.slow  # YOLACT with its postprocess in the graph: the ONNX export alone takes about a minute here
def test_pruned_instance_model_with_postprocess_in_graph(tmp_path, monkeypatch, capsys):
    pruned = _pruned(tmp_path, "yolact_test", 2)
    out = _cli(monkeypatch, capsys, "export", pruned, "--postprocess-in-graph", "--format", "onnx", "--format", "ort",
               "--out", tmp_path / "ex", *SMALL_DATA)
    doc = json.loads((tmp_path / "ex" / FILES.export_json).read_text())
    assert all(a.get("shipped", True) for a in doc["artifacts"]), out
    files = [tmp_path / "ex" / "model.onnx", tmp_path / "ex" / "model.ort"]
    _eval_bench_predict(monkeypatch, capsys, tmp_path, files, "mask_ap")
    assert list((tmp_path / "pred-onnx").glob("img.detections.json"))
