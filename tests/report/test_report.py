"""Reports from fixture result lines: files, table rows, speed-ups, Pareto marks, valid PNGs."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from edgeseg.bench.rows import SCHEMA, ResultsError
from edgeseg.report import report
from edgeseg.report.table import build_entries


def _row(model, precision, p50, miou, device="cpu", label="Test CPU (2 cores)", size=4_000_000, noisy=False,
         batch=1):
    return {"schema": SCHEMA, "artifact": {"name": f"{model}.{precision}.onnx", "path": "x", "size_bytes": size,
                                           "sha256": f"{model}{precision}"},
            "model": {"name": model, "params": 1_000_000, "gmacs": 1.5}, "backend": "onnxruntime",
            "device": device, "device_label": label, "threads": 2, "batch": batch, "precision": precision,
            "latency": {"p50_ms": p50, "p90_ms": p50 * (1.5 if noisy else 1.05), "throughput_ips": 1000 / p50,
                        "noise_reason": "p90 is 50% above p50" if noisy else ""},
            "memory": {"peak_rss_mb": 100.0}, "noisy": noisy,
            "accuracy": {"miou": miou, "mean_dice": miou + 0.05, "num_images": 64, "split": "val", "data": "d"},
            "machine": {"cpu": label, "cores": 2, "gpus": []}, "versions": {"python": "3.11"}, "error": ""}


ROWS = [
    _row("unet", "fp32", 100.0, 0.80),
    _row("unet", "int8", 40.0, 0.798),
    _row("unet-lite", "fp32", 10.0, 0.78, noisy=True),
    _row("unet-lite", "int8", 12.0, 0.775),
    _row("unet", "fp32", 30.0, 0.80, device="cuda", label="Jetson Orin (cuda)"),
    _row("unet", "int8", 15.0, 0.79, device="cuda", label="Jetson Orin (cuda)"),
    {"schema": SCHEMA, "artifact": {"name": "unet.engine", "path": "y"}, "backend": "tensorrt", "device": "cuda",
     "threads": None, "batch": 1, "error": "TensorRT is not installed"},
]


@pytest.fixture
def results(tmp_path):
    a, b = tmp_path / "cpu.jsonl", tmp_path / "jetson.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:4]))
    b.write_text("".join(json.dumps(r) + "\n" for r in ROWS[4:]))
    return [a, b]


def test_speedups_deltas_and_pareto():
    entries, failed = build_entries([dict(r) for r in ROWS])
    by = {(e.device, e.model, e.precision): e for e in entries}
    assert len(failed) == 1
    assert by[("Test CPU (2 cores)", "unet", "int8")].speedup == pytest.approx(2.5)
    assert by[("Test CPU (2 cores)", "unet", "int8")].miou_delta_points == pytest.approx(-0.2)
    assert by[("Test CPU (2 cores)", "unet-lite", "int8")].speedup == pytest.approx(10 / 12)
    pareto = {k for k, e in by.items() if e.pareto}
    # CPU: lite fp32 (fastest), unet int8 (faster than unet fp32, more accurate than lite), unet fp32 (best mIoU).
    assert pareto == {("Test CPU (2 cores)", "unet-lite", "fp32"), ("Test CPU (2 cores)", "unet", "int8"),
                      ("Test CPU (2 cores)", "unet", "fp32"), ("Jetson Orin (cuda)", "unet", "fp32"),
                      ("Jetson Orin (cuda)", "unet", "int8")}


def test_report_files_tables_and_plots(results, tmp_path):
    paths = report(results, tmp_path / "out", title="fixture report")
    assert set(paths) == {"md", "html", "csv", "pareto", "size_accuracy"}
    md = paths["md"].read_text()
    assert md.count("\n| unet") == 6  # one table row per measured line
    assert "## Test CPU (2 cores)" in md and "## Jetson Orin (cuda)" in md
    assert "2.50x" in md and "-0.20" in md and "★" in md and "~10.00" in md
    assert "## Not measured" in md and "TensorRT is not installed" in md
    with paths["csv"].open() as fh:
        assert len(list(csv.DictReader(fh))) == 6
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 2 and "<table>" in html
    for key in ("pareto", "size_accuracy"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(paths[key]) as im:
            assert im.width > 300 and im.height > 200


def test_bad_results_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\nnot json\n")
    with pytest.raises(ResultsError, match=r"bad.jsonl:2: not JSON"):
        report([bad], tmp_path / "o")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"hello": 1}) + "\n")
    with pytest.raises(ResultsError, match="other.jsonl:1: not an edgeseg result line"):
        report([other], tmp_path / "o")
    with pytest.raises(ResultsError, match="results file not found"):
        report([tmp_path / "missing.jsonl"], tmp_path / "o")
