"""Mask R-CNN through the stages at tiny size: train on synthetic instances (the loss falls), eval,
predict, ONNX export with parity, the Jetson kit and the torch-free device runner, bench end to end and
report; a dynamic export is refused up front."""

from __future__ import annotations

import csv
import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.tasks.test_instance_stages import tiny_instance_recipe


def _recipe():
    return tiny_instance_recipe("maskrcnn_test", epochs=3, lr=0.01, export={"dynamic": False})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from edgeseg.train import train

    out = tmp_path_factory.mktemp("maskrcnn") / "train"
    return out, train(_recipe(), out)


def test_train_learns_synthetic_instances(trained):
    out, result = trained
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0]  # the four losses together fall
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "instance" and metrics["num_images"] == 4 and "best_mask_ap" in result
    for key in ("mask_ap", "mask_ap50", "mask_ap75", "box_ap"):
        assert 0.0 <= metrics[key] <= 1.0


def test_eval_predict_export_bench_report(trained, tmp_path):
    from edgeseg.bench import benchmark
    from edgeseg.evaluate import evaluate
    from edgeseg.export import export
    from edgeseg.predict import predict
    from edgeseg.recipe import BenchCfg
    from edgeseg.report import report

    out, result = trained
    m = evaluate(out / "model.pt", split="val")
    assert m["num_images"] == 4 and m["mask_ap"] == pytest.approx(result["metrics"]["mask_ap"])
    img = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(img)
    (row,) = predict(out / "model.pt", [img], tmp_path / "preds")
    assert Image.open(row["overlay"]).size == (70, 50)
    doc = export(out / "model.pt", tmp_path / "exp", formats=["onnx", "tensorrt"], precisions=["fp32"])
    art = next(a for a in doc["artifacts"] if a["format"] == "onnx")
    assert art["parity"]["passed"] and art["parity"]["agreement"] >= 0.95, art["parity"]
    onnx_file = tmp_path / "exp" / "model.onnx"
    # the Jetson kit of the whole two-stage graph: its ONNX file and a trtexec script that parses
    kit = next(a for a in doc["artifacts"] if a["format"] == "tensorrt" and a["precision"] == "kit")
    script = tmp_path / "exp" / "tensorrt" / "build_engine.sh"
    assert kit["shipped"] and (tmp_path / "exp" / "tensorrt" / "model.onnx").is_file() and script.is_file()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # the torch-free device runner times it end to end (network + the task's numpy decode)
    from edgeseg.bench.runner import run as runner

    runner([str(onnx_file), "--out", str(tmp_path / "device.jsonl"), "--threads", "1", "--warmup", "1",
            "--min-runs", "2", "--min-time", "0", "--no-memory"])
    (device_row,) = [json.loads(line) for line in (tmp_path / "device.jsonl").read_text().splitlines()]
    assert not device_row.get("error") and device_row["latency_end_to_end"]["p50_ms"] > 0, device_row
    rows = benchmark([onnx_file], out=tmp_path / "bench.jsonl", threads=[1],
                     cfg=BenchCfg(warmup=1, min_runs=2, min_time_s=0.0, threads=[1]))
    assert not rows[0]["error"] and rows[0]["latency_end_to_end"]["p50_ms"] > 0
    assert "mask AP" in report([tmp_path / "bench.jsonl"], tmp_path / "rep")["md"].read_text()


def test_dynamic_export_is_refused_in_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    """Its anchors are laid out for one input size when the graph is built: a dynamic ONNX file would
    run other sizes with the wrong anchors. The default (export.dynamic true) is refused up front, naming
    the way out; nothing is written."""
    import sys

    from edgeseg.cli import main
    from tests.conftest import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "model.pt", model="maskrcnn_test", num_classes=2)
    monkeypatch.setattr(sys, "argv", ["edgeseg", "export", str(ckpt), "--out", str(tmp_path / "ex")])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1, err
    assert "maskrcnn_test exports at one input size only" in err and "--static" in err
    assert not (tmp_path / "ex").exists()
