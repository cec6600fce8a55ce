"""Reports from fixture result lines: files, table rows, speed-ups, Pareto marks, valid PNGs."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from edgeseg.bench.rows import SCHEMA, ResultsError
from edgeseg.report import report
from edgeseg.report.render import speedup_text
from edgeseg.report.table import build_entries


def _row(model, precision, p50, miou, device="cpu", label="Test CPU (2 cores)", size=4_000_000, noisy=False,
         batch=1, recipe="r1", dataset="d1", backend="onnxruntime"):
    return {"schema": SCHEMA, "artifact": {"name": f"{model}.{precision}.onnx", "path": "x", "size_bytes": size,
                                           "sha256": f"{model}{precision}"},
            "model": {"name": model, "params": 1_000_000, "gmacs": 1.5, "recipe": recipe, "recipe_hash": recipe,
                      "model_args": {}}, "backend": backend,
            "device": device, "device_label": label, "threads": 2, "batch": batch, "precision": precision,
            "latency": {"p50_ms": p50, "p90_ms": p50 * (1.5 if noisy else 1.05), "throughput_ips": 1000 / p50,
                        "noise_reason": "p90 is 50% above p50" if noisy else ""},
            "memory": {"peak_rss_mb": 100.0}, "noisy": noisy,
            "accuracy": {"miou": miou, "mean_dice": miou + 0.05, "num_images": 64, "split": "val", "data": "d",
                         "dataset": {"name": dataset, "split": "val", "hash": dataset}},
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
    assert by[("Test CPU (2 cores)", "unet", "int8")].score_delta_points == pytest.approx(-0.2)
    assert by[("Test CPU (2 cores)", "unet-lite", "int8")].speedup == pytest.approx(10 / 12)
    pareto = {k for k, e in by.items() if e.pareto}
    # CPU: lite fp32 (fastest), unet int8 (faster than unet fp32, more accurate than lite), unet fp32 (best mIoU).
    assert pareto == {("Test CPU (2 cores)", "unet-lite", "fp32"), ("Test CPU (2 cores)", "unet", "int8"),
                      ("Test CPU (2 cores)", "unet", "fp32"), ("Jetson Orin (cuda)", "unet", "fp32"),
                      ("Jetson Orin (cuda)", "unet", "int8")}


def _tables(md: str) -> dict[str, list[list[str]]]:
    """Markdown section title -> the data rows of its table (cells stripped)."""
    tables: dict[str, list[list[str]]] = {}
    section = ""
    for line in md.splitlines():
        if line.startswith("## "):
            section = line[3:]
        elif line.startswith("| ") and section:
            tables.setdefault(section, []).append([c.strip() for c in line.strip("|").split("|")])
    return {k: rows[1:] for k, rows in tables.items()}  # drop the header row (the |---| line has no "| ")


def test_report_files_tables_and_plots(results, tmp_path):
    paths = report(results, tmp_path / "out", title="fixture report")
    assert set(paths) == {"md", "html", "csv", "pareto", "size_accuracy"}
    md = paths["md"].read_text()
    tables = _tables(md)
    cpu, jetson = tables["Test CPU (2 cores)"], tables["Jetson Orin (cuda)"]
    # one table row per measured line, with its artifact, precision and p50
    assert sorted((r[1], r[2], r[9]) for r in cpu) == sorted(
        (f"{r['model']['name']}.{r['precision']}.onnx", r["precision"],
         ("~" if r["noisy"] else "") + f"{r['latency']['p50_ms']:.2f}") for r in ROWS[:4])
    assert len(jetson) == 2
    unet_int8 = next(r for r in cpu if r[1] == "unet.int8.onnx")
    assert unet_int8[16] == "2.50x" and unet_int8[17] == "-0.20" and unet_int8[18] == "★"
    assert unet_int8[15] == "64" and unet_int8[13] == "0.7980"
    # devices side by side: one row per artifact, a column per device
    side = tables["Devices side by side"]
    assert len(side) == 4 and next(r for r in side if r[1] == "unet.fp32.onnx")[4:] == [
        "100.00 (2, 1) / 0.8000", "30.00 (2, 1) / 0.8000"]
    assert "TensorRT is not installed" in md.split("## Not measured")[1]
    with paths["csv"].open() as fh:
        assert len(list(csv.DictReader(fh))) == 6
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 2 and html.count("<table>") == 3
    for key in ("pareto", "size_accuracy"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(paths[key]) as im:
            im.verify()
            assert im.format == "PNG" and im.width > 300 and im.height > 200
    with Image.open(paths["pareto"]) as im:
        assert im.width > 1.6 * im.height  # two device panels side by side


def test_baselines_and_pareto_stay_within_one_model_and_one_dataset():
    rows = [_row("unet", "fp32", 100.0, 0.80, recipe="shapes", dataset="shapes-val"),
            _row("unet", "int8", 50.0, 0.79, recipe="shapes", dataset="shapes-val"),
            _row("unet", "fp32", 200.0, 0.60, recipe="cells", dataset="cells-val"),
            _row("unet", "int8", 80.0, 0.59, recipe="cells", dataset="cells-val"),
            _row("unet", "fp32", 400.0, 0.80, recipe="shapes", dataset="shapes-val", backend="torch")]
    entries, _ = build_entries(rows)
    by = {(e.model, e.precision, e.backend): e for e in entries}
    # same architecture, two recipes: each INT8 against its own FP32, labelled apart
    assert by[("unet [cells]", "int8", "onnxruntime")].speedup == pytest.approx(2.5)
    assert by[("unet [shapes]", "int8", "onnxruntime")].speedup == pytest.approx(2.0)
    # the cells model is slower and less accurate than the shapes INT8, but on other images: still Pareto
    assert by[("unet [cells]", "int8", "onnxruntime")].pareto and by[("unet [cells]", "fp32", "onnxruntime")].pareto
    assert not by[("unet [shapes]", "fp32", "torch")].pareto


def test_cross_backend_baseline_is_named():
    rows = [_row("unet", "fp32", 100.0, 0.80, backend="torch"), _row("unet", "int8", 40.0, 0.79)]
    entries, _ = build_entries(rows)
    int8 = next(e for e in entries if e.precision == "int8")
    assert int8.speedup == pytest.approx(2.5) and int8.baseline_backend == "torch"
    assert speedup_text(int8) == "2.50x (vs torch)"


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


def _instance_row(precision, p50, mask_ap, e2e):
    row = _row("yolact-lite", precision, p50, 0.0, dataset="inst")
    row["model"]["task"] = "instance"
    row["latency_end_to_end"] = {"p50_ms": e2e}
    row["accuracy"] = {"mask_ap": mask_ap, "mask_ap50": mask_ap + 0.3, "mask_ap75": mask_ap - 0.1, "box_ap": 0.5,
                       "num_images": 13, "split": "val", "data": "n", "dataset": {"name": "inst", "hash": "inst"}}
    return row


def test_semantic_and_instance_rows_side_by_side_with_their_own_metric(tmp_path):
    rows = ROWS[:2] + [_instance_row("fp32", 20.0, 0.40, 23.0), _instance_row("int8", 12.0, 0.395, 15.5)]
    entries, _ = build_entries([dict(r) for r in rows])
    inst = {e.precision: e for e in entries if e.task == "instance"}
    assert inst["int8"].score == 0.395 and inst["int8"].score_delta_points == pytest.approx(-0.5)
    assert inst["int8"].pareto and inst["fp32"].pareto
    results = tmp_path / "mixed.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = report([results], tmp_path / "out")
    md = paths["md"].read_text()
    assert "Semantic segmentation (mIoU):" in md and "Instance segmentation (mask AP):" in md
    assert "| AP50 | AP75 | box AP |" in md and "p50 + postprocess (ms)" in md and "Δmask AP (pts)" in md
    table = _tables(md)["Test CPU (2 cores)"]
    int8 = next(r for r in table if r[1] == "yolact-lite.int8.onnx")
    assert int8[11] == "15.50" and int8[14:18] == ["0.3950", "0.6950", "0.2950", "0.5000"] and int8[20] == "-0.50"
    with paths["csv"].open() as fh:
        got = {r["artifact"]: r for r in csv.DictReader(fh)}
    assert got["yolact-lite.int8.onnx"]["metric"] == "mask_ap" and got["unet.int8.onnx"]["metric"] == "miou"
    assert float(got["yolact-lite.int8.onnx"]["score"]) == 0.395 and got["yolact-lite.int8.onnx"]["miou"] == ""
    with Image.open(paths["pareto"]) as im:
        assert im.width > 1.6 * im.height  # a semantic and an instance panel
