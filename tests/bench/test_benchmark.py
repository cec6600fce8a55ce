"""`benchmark`: a tiny model on torch and onnxruntime, every field present and sane."""

from __future__ import annotations

import json

import pytest

from edgeseg.artifacts import file_sha256
from edgeseg.bench import SCHEMA, benchmark, load_rows
from edgeseg.recipe import BenchCfg

QUICK = BenchCfg(warmup=1, min_runs=3, min_time_s=0.0)


@pytest.fixture(scope="module")
def rows(tiny_artifacts, tmp_path_factory):
    pt, onnx_path = tiny_artifacts
    out = tmp_path_factory.mktemp("rows") / "results.jsonl"
    written = benchmark([pt, onnx_path], out=out, threads=[1], batch=[1, 2], cfg=QUICK)
    return written, out


def test_one_row_per_configuration_appended_as_json_lines(rows):
    written, out = rows
    assert [(r["artifact"]["name"], r["backend"], r["batch"]) for r in written] == [
        ("model.pt", "torch", 1), ("model.pt", "torch", 2), ("model.onnx", "onnxruntime", 1),
        ("model.onnx", "onnxruntime", 2)]
    assert load_rows([out]) and len(out.read_text().splitlines()) == 4
    assert all(json.loads(line)["schema"] == SCHEMA for line in out.read_text().splitlines())


def test_fields_are_present_and_sane(rows, tiny_artifacts):
    written, _ = rows
    for r in written:
        assert not r["error"], r["error"]
        lat = r["latency"]
        assert lat["runs"] >= 3 and 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        assert lat["throughput_ips"] > 0 and isinstance(r["noisy"], bool)
        mem = r["memory"]
        assert "error" not in mem, mem
        assert 0 < mem["rss_baseline_mb"] <= mem["rss_loaded_mb"] <= mem["peak_rss_mb"] < 4096
        acc = r["accuracy"]
        assert acc["num_images"] == 6 and acc["split"] == "val" and 0 <= acc["miou"] <= 1
        assert r["machine"]["cpu"] and r["machine"]["cores"] >= 1 and "numpy" in r["versions"]
        assert r["threads"] == 1 and r["input_shape"] == [r["batch"], 3, 64, 64]
        assert r["model"]["name"] == "unet_test" and r["model"]["params"] > 0 and r["model"]["gmacs"] > 0
        assert r["artifact"]["sha256"] == file_sha256(r["artifact"]["path"]) and r["artifact"]["size_bytes"] > 0
        assert r["precision"] == "fp32" and r["device"] == "cpu" and r["timer"] == "perf_counter+sync"
        assert r["schema"] == SCHEMA and r["timestamp"] and r["load_avg_1m"] is not None
        assert r["model"]["recipe"] and r["model"]["recipe_hash"]
        assert acc["dataset"]["hash"] and acc["dataset"]["split"] == "val"


def test_model_figures_come_from_the_artifact_itself(rows, tiny_artifacts):
    from edgeseg.models.profile import count_params
    from edgeseg.artifacts.checkpoint import load_checkpoint

    written, _ = rows
    by = {r["backend"]: r["model"] for r in written}
    assert by["torch"]["profile_source"] == "checkpoint model"
    assert by["torch"]["params"] == count_params(load_checkpoint(tiny_artifacts[0]).model)
    assert by["onnxruntime"]["profile_source"] == "onnx graph"
    # BatchNorm is folded into the convolutions in ONNX: a few parameters fewer, the same MACs
    assert 0.9 * by["torch"]["params"] <= by["onnxruntime"]["params"] <= by["torch"]["params"]
    assert by["onnxruntime"]["gmacs"] == pytest.approx(by["torch"]["gmacs"], rel=0.02)


def test_same_weights_same_accuracy_across_backends(rows):
    written, _ = rows
    mious = {r["backend"]: r["accuracy"]["miou"] for r in written}
    assert mious["torch"] == pytest.approx(mious["onnxruntime"], abs=0.01)


def test_incompatible_pairs_are_skipped_and_failures_are_error_rows(tiny_artifacts, tmp_path, capsys):
    pt, onnx_path = tiny_artifacts
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    written = benchmark([pt, broken], out=tmp_path / "r.jsonl", backends=["onnxruntime"], threads=[1], batch=[1],
                        cfg=QUICK, accuracy=False)
    printed = capsys.readouterr().out
    assert printed.count("not applicable") == 1 and "model.pt on onnxruntime" in printed
    assert len(written) == 1 and written[0]["artifact"]["name"] == "broken.onnx"
    assert "onnxruntime cannot load it" in written[0]["error"]
    assert load_rows([tmp_path / "r.jsonl"])[0]["error"]


def test_torch_cuda_alias_is_a_cuda_row(tiny_artifacts, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this checks the row of a machine without a GPU")
    pt, _ = tiny_artifacts
    (row,) = benchmark([pt], out=tmp_path / "r.jsonl", backends=["torch-cuda"], threads=[1], batch=[1], cfg=QUICK)
    assert row["device"] == "cuda" and row["backend"] == "torch" and "no CUDA GPU" in row["error"]


def test_default_threads_are_pinned_to_the_usable_cores(tiny_artifacts, tmp_path):
    from edgeseg.bench.core import usable_cores

    _, onnx_path = tiny_artifacts
    (row,) = benchmark([onnx_path], out=tmp_path / "r.jsonl", batch=[1],
                       cfg=BenchCfg(warmup=1, min_runs=3, min_time_s=0.0, threads=[]), accuracy=False)
    assert row["threads"] == usable_cores() >= 1 and not row["error"]


def test_torch_options_are_applied_and_recorded(tiny_artifacts, tmp_path):
    pt, _ = tiny_artifacts
    (row,) = benchmark([pt], out=tmp_path / "r.jsonl", threads=[1], batch=[1], cfg=QUICK, accuracy=False,
                       torch_options={"channels_last": True})
    assert not row["error"] and row["backend_options"] == {"channels_last": True}
    assert "error" not in row["memory"] and row["accuracy"] is None


def test_onnx_file_on_openvino_reads_its_metadata_from_the_file(tiny_artifacts, tmp_path):
    pytest.importorskip("openvino")
    _, onnx_path = tiny_artifacts
    rows = benchmark([onnx_path], out=tmp_path / "r.jsonl", backends=["onnxruntime", "openvino"], threads=[1],
                     batch=[1], cfg=QUICK)
    by = {r["backend"]: r for r in rows}
    assert set(by) == {"onnxruntime", "openvino"} and not by["openvino"]["error"], by["openvino"]["error"]
    assert "error" not in by["openvino"]["memory"], by["openvino"]["memory"]
    assert by["openvino"]["accuracy"]["miou"] == pytest.approx(by["onnxruntime"]["accuracy"]["miou"], abs=0.01)


def test_unknown_backend_is_a_clear_error(tiny_artifacts, tmp_path):
    from edgeseg.runtime import BackendError

    with pytest.raises(BackendError, match="unknown backend 'tensorflow'"):
        benchmark([tiny_artifacts[1]], out=tmp_path / "r.jsonl", backends=["tensorflow"], cfg=QUICK)
    assert not (tmp_path / "r.jsonl").exists()


def test_accuracy_failure_keeps_latency_and_is_reported(tiny_artifacts, tmp_path):
    from edgeseg.report import report

    _, onnx_path = tiny_artifacts
    (row,) = benchmark([onnx_path], out=tmp_path / "r.jsonl", threads=[1], batch=[1], cfg=QUICK,
                       data=tmp_path / "missing.yaml")
    assert not row["error"] and row["latency"]["p50_ms"] > 0
    assert "missing.yaml" in row["accuracy"]["error"]
    md = report([tmp_path / "r.jsonl"], tmp_path / "rep")["md"].read_text()
    assert "Accuracy failed: model.onnx on onnxruntime" in md
