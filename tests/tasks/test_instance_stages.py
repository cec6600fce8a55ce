"""An instance model through every stage at tiny size: train, eval, predict, export (+ in-graph postprocess),
bench (network alone and end to end), report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgeseg.recipe import recipe_from_dict
from tests.export.conftest import QUICK_LATENCY


def tiny_instance_recipe(model: str = "yolact_test", epochs: int = 2, lr: float = 0.003, **extra: object):
    """A tiny synthetic two-class instance recipe (64 px, 16 training images) for ``model``."""
    return recipe_from_dict({
        "name": f"tiny-{model}",
        "model": {"name": model, "num_classes": 2, "in_channels": 3},
        "data": {"kind": "synthetic", "image_size": 64, "classes": ["disc", "box"],
                 "synthetic": {"num_train": 16, "num_val": 4, "size": 64, "max_shapes": 3, "seed": 0}},
        "train": {"epochs": epochs, "batch_size": 4, "lr": lr, "warmup_epochs": 0, "threads": 2},
        **extra})


_recipe = tiny_instance_recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from edgeseg.train import train

    out = tmp_path_factory.mktemp("inst") / "train"
    result = train(_recipe(), out)
    return out, result


def test_train_writes_instance_metrics(trained):
    out, result = trained
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "instance" and metrics["num_images"] == 4
    for key in ("mask_ap", "mask_ap50", "mask_ap75", "box_ap"):
        assert key in metrics and (np.isnan(metrics[key]) or 0.0 <= metrics[key] <= 1.0)
    header = (out / "train_log.csv").read_text().splitlines()[0].split(",")
    assert header[-4:] == ["val_mask_ap", "val_mask_ap50", "val_mask_ap75", "val_box_ap"]
    assert "best_mask_ap" in result


def test_eval_and_predict(trained, tmp_path):
    from edgeseg.evaluate import evaluate
    from edgeseg.predict import predict

    out, result = trained
    m = evaluate(out / "model.pt", split="val")
    assert m["task"] == "instance" and m["num_images"] == 4
    assert m["mask_ap"] == pytest.approx(result["metrics"]["mask_ap"], nan_ok=True)
    img = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(img)
    (row,) = predict(out / "model.pt", [img], tmp_path / "preds")
    assert set(row) == {"image", "overlay", "instances", "detections"}
    assert Image.open(row["overlay"]).size == (70, 50)
    ids = np.asarray(Image.open(row["instances"]))
    dets = json.loads(open(row["detections"]).read())
    assert ids.shape == (50, 70) and int(ids.max()) <= len(dets)
    assert all(d["class"] in ("disc", "box") and 0 <= d["score"] <= 1 for d in dets)


def test_export_matches_pytorch_and_benches_end_to_end(trained, tmp_path, monkeypatch):
    from edgeseg.bench import benchmark
    from edgeseg.export import export
    from edgeseg.recipe import BenchCfg, ExportCfg
    from edgeseg.report import report

    monkeypatch.setattr("edgeseg.export.onnx2int8.LATENCY_KW", QUICK_LATENCY)
    monkeypatch.setattr("edgeseg.export.onnx2int8.LATENCY_ROUNDS", 1)
    out, _ = trained
    doc = export(out / "model.pt", tmp_path / "exp", precisions=["fp32", "int8"],
                 cfg=ExportCfg(calibration={"images": 4}))
    by = {(a["format"], a["precision"]): a for a in doc["artifacts"]}
    fp32 = by[("onnx", "fp32")]["parity"]
    assert fp32["passed"] and fp32["max_rel_err"] < 1e-3 and fp32["agreement"] >= 0.95
    int8 = by[("onnx", "int8")]
    assert int8["accuracy"]["int8"]["num_images"] == 4 and "mask_ap_drop_points" in int8["accuracy"]
    assert any("instance heads stay in float" in why for why in int8["quantization"]["excluded"].values())
    graph = export(out / "model.pt", tmp_path / "graph", cfg=ExportCfg(postprocess="graph"))
    g = next(a for a in graph["artifacts"] if a["precision"] == "fp32")
    assert g["parity"]["passed"] and g["parity"]["detections"] >= 0
    files = [tmp_path / "exp" / "model.onnx", tmp_path / "graph" / "model.onnx"]
    rows = benchmark(files, out=tmp_path / "bench.jsonl", threads=[1],
                     cfg=BenchCfg(warmup=1, min_runs=2, min_time_s=0.0, threads=[1]))
    assert all(not r["error"] for r in rows), rows
    assert rows[0]["latency_end_to_end"]["p50_ms"] > 0 and rows[0]["latency"]["p50_ms"] > 0  # both measured
    assert rows[1]["accuracy"]["mask_ap"] == pytest.approx(rows[0]["accuracy"]["mask_ap"], abs=0.05, nan_ok=True)
    md = report([tmp_path / "bench.jsonl"], tmp_path / "rep")["md"].read_text()
    assert "mask AP" in md and "p50 + postprocess (ms)" in md
    # the torch-free runner scores an instance artifact on an instance-id folder
    from edgeseg import runtime
    from edgeseg.bench.accuracy import folder_accuracy
    from edgeseg.data.synthetic import generate

    folder = tmp_path / "idfolder"
    for sub in ("images", "masks", "splits"):
        (folder / sub).mkdir(parents=True)
    for i in range(3):
        s = generate(0, "val", i, size=64, num_classes=2, max_shapes=3)
        ids = np.zeros(s.mask.shape, np.uint16)
        for j, m in enumerate(s.instance_masks):
            ids[m] = j + 1
        Image.fromarray(s.image).save(folder / "images" / f"{i}.png")
        Image.fromarray(ids).save(folder / "masks" / f"{i}.png")
    (folder / "splits" / "val.txt").write_text("0\n1\n2\n")
    acc = folder_accuracy(runtime.open(files[0], threads=1), folder, "val")
    assert acc["num_images"] == 3 and "mask_ap" in acc and acc["dataset"]["split"] == "val"
