"""What the CLI prints: rich markup never swallows text, and bench/run say what a user came for."""

from __future__ import annotations

import sys

import pytest


def _main(monkeypatch, *argv: str) -> int:
    from edgeseg.cli import main

    monkeypatch.setattr(sys, "argv", ["edgeseg", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code


def test_export_summary_keeps_shipped_in_brackets(monkeypatch, capsys, tmp_path):
    import edgeseg.export as export_mod

    doc = {"artifacts": [{"format": "onnx", "precision": "fp32", "path": "ex/model.onnx", "shipped": True},
                         {"format": "onnx", "precision": "int8", "path": "ex/model.int8.rejected.onnx",
                          "shipped": False, "reason": "not faster [0.81x]"}]}
    monkeypatch.setattr(export_mod, "export", lambda *a, **k: doc)
    assert _main(monkeypatch, "export", str(tmp_path / "model.pt"), "--out", str(tmp_path / "ex")) == 0
    out = capsys.readouterr().out
    assert "ex/model.onnx  [shipped]" in out and "[NOT shipped] not faster [0.81x]" in out


def test_bench_exits_non_zero_when_nothing_was_measured(monkeypatch, capsys, tmp_path):
    import edgeseg.bench as bench_mod

    rows = [{"artifact": {"name": "m.onnx"}, "backend": "onnxruntime", "threads": 1, "batch": 1,
             "error": "BackendError: m.onnx: onnxruntime cannot load it"}]
    monkeypatch.setattr(bench_mod, "benchmark", lambda *a, **k: rows)
    assert _main(monkeypatch, "bench", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "r.jsonl")) == 1
    assert "nothing was measured" in capsys.readouterr().err


def test_run_ends_with_best_artifact_latency_accuracy_and_reports(monkeypatch, capsys, tmp_path):
    import edgeseg.pipeline as pipeline

    summary = {"stages": {"report": {"status": "done", "summary": "x"}},
               "headline": {"artifact": "runs/q/4_export/model.int8.onnx", "backend": "onnxruntime", "threads": 2,
                            "batch": 1, "p50_ms": 0.81, "noisy": False, "metric": "mIoU", "score": 0.8123, "num_images": 128,
                            "split": "val"},
               "report": {"md": "runs/q/6_report/report.md", "html": "runs/q/6_report/report.html"}}
    monkeypatch.setattr(pipeline, "run", lambda *a, **k: summary)
    assert _main(monkeypatch, "run", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert ("best: runs/q/4_export/model.int8.onnx on onnxruntime (threads 2): p50 0.81 ms, mIoU 0.8123 on 128 "
            "val images") in out
    assert "report: runs/q/6_report/report.md" in out and "report: runs/q/6_report/report.html" in out
