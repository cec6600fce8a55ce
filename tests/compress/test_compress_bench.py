"""benchmarks/compress_bench.py on tiny models: one run gives the whole table; a re-run only times."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

import edgeseg.export as export_pkg
import edgeseg.export.onnx2int8 as onnx2int8
from tests.export.conftest import QUICK_LATENCY, fitted_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compress_bench.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compress_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # dataclasses resolve annotations through the module table
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _pruned(src: Path, out: Path, ratio: float) -> dict:
    from edgeseg.compress.prune import PruneConfig, prune

    return prune(src, out, PruneConfig(ratio=ratio, round_to=4, threads=1), measure_latency=False)


@pytest.mark.slow
def test_one_run_gives_every_row_and_a_rerun_only_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx2int8, "LATENCY_KW", QUICK_LATENCY)
    monkeypatch.setattr(onnx2int8, "LATENCY_ROUNDS", 1)
    runs, lite = tmp_path / "runs", tmp_path / "lite"
    big = fitted_checkpoint(tmp_path / "unet_test.pt", steps=60)
    doc = _pruned(big, runs / "unet_test-p50", 0.5)
    small = fitted_checkpoint(lite / "segnet_test" / "model.pt", model="segnet_test", steps=60)
    _pruned(small, lite / "segnet_test-p25", 0.25)
    (runs / "summary.json").write_text(json.dumps({
        "unet_test": {"val": {"mean_dice": 0.8, "miou": 0.7, "num_images": 6}},
        "unet_test-p50": {"figures": {"before": {"params": doc["figures"]["before"]["params"]}}}}))
    bench = _script()
    monkeypatch.setattr(bench, "LATENCY_KW", QUICK_LATENCY)
    argv = ["--runs", str(runs), "--lite", str(lite), "--out", str(tmp_path / "out"), "--results",
            str(tmp_path / "res"), "--big", "unet_test", "--qat-families", "unet_test", "--mixed-families",
            "unet_test", "--lite-models", "segnet_test", "--qat-epochs", "1", "--qat-repeats", "1",
            "--calibration", "4", "--size", "64", "--threads", "1", "--rounds", "1"]
    bench.main(argv)
    res = json.loads((tmp_path / "res" / "compress_bench.json").read_text())
    labels = list(res["rows"])
    assert labels == ["unet_test fp32", "unet_test-p50 fp32", "unet_test-p50 int8 ptq", "unet_test-p50 int8 qat",
                      "unet_test-p50 int8 mixed", "segnet_test fp32", "segnet_test int8 ptq",
                      "segnet_test int8 mixed", "segnet_test-p25 fp32", "segnet_test-p25 int8 ptq",
                      "segnet_test-p25 int8 mixed"]
    assert res["rows"]["unet_test fp32"]["source"].startswith("GPU run")
    assert res["rows"]["segnet_test fp32"]["speedup_vs_fp32"] == 1.0
    for row in res["rows"].values():
        assert row["latency_ms"] > 0 and row["speedup_vs_fp32"] > 0 and len(row["latency_rounds"]) == 1
    assert res["session_config"] == {"session.intra_op.allow_spinning": "0"}
    assert res["rows"]["unet_test-p50 fp32"]["source"] == "this CPU, ONNX Runtime"

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("the re-run exported again instead of reusing export.json")

    monkeypatch.setattr(export_pkg, "export", no_export)
    bench.main(argv)  # every export and accuracy figure is cached: only timing runs
    again = json.loads((tmp_path / "res" / "compress_bench.json").read_text())
    assert list(again["rows"]) == labels
