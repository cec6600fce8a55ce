"""Phone logs (minibench JSON, executor_runner, xcodebuild) -> result lines that `edgeseg report` merges."""

from __future__ import annotations

import json

import pytest

from edgeseg.bench.phone import PhoneLogError, parse_log

MINIBENCH = [
    {"benchmarkModel": {"name": "model", "backend": "", "quantization": ""}, "metric": "avg_inference_latency(ms)",
     "actualValue": 12.5, "targetValue": 0.0, "deviceInfo": {"device": "google", "arch": "Pixel 8", "os": "Android 15"}},
    {"benchmarkModel": {"name": "model"}, "metric": "trimmean_inference_latency(ms)", "actualValue": 11.9},
    {"benchmarkModel": {"name": "model"}, "metric": "model_load_time(ms)", "actualValue": 40.0},
    {"benchmarkModel": {"name": "model"}, "metric": "load_status", "actualValue": 0.0},
    {"benchmarkModel": {"name": "model"}, "metric": "ram_pss_usage(mb)", "actualValue": 21.0},
]
RUNNER = """I 00:00:00.001 executorch:executor_runner.cpp:150] Resetting threadpool with num threads = 4
I 00:00:00.120 executorch:executor_runner.cpp:300] Model loaded in 3.2 ms.
""" + "".join(f"I 00:00:01.000 executorch:executor_runner.cpp:420] Iteration {i + 1} of 12: {t} ms\n"
              for i, t in enumerate([30.0, 25.0] + [10.0 + 0.1 * k for k in range(10)])) + \
    "I 00:00:02.000 executorch:executor_runner.cpp:430] Model executed successfully 12 time(s) in 159.5 ms.\n"
XCTEST = ("Test Case '-[GenericTests test_load_model_iOS_18_iPhone15]' measured [Clock Monotonic Time, s] average: "
          "0.050, relative standard deviation: 1.0%, values: [0.05, 0.05, 0.05, 0.05, 0.05], performanceMetricID:x\n"
          "Test Case '-[GenericTests test_forward_model_iOS_18_iPhone15]' measured [Clock Monotonic Time, s] average: "
          "0.0081, relative standard deviation: 2.0%, values: [0.0080, 0.0082, 0.0081, 0.0079, 0.0083], "
          "performanceMetricID:com.apple.dt.XCTMetric_Clock.time.monotonic\n")


def test_minibench_json(tmp_path):
    log = tmp_path / "model.minibench.json"
    log.write_text(json.dumps(MINIBENCH))
    parsed = parse_log(log)
    assert parsed["source"] == "minibench" and parsed["latency"]["p50_ms"] == 11.9
    assert parsed["latency"]["mean_ms"] == 12.5 and "trimmed mean" in parsed["latency"]["statistic"]
    assert parsed["load_ms"] == 40.0 and parsed["memory_mb"] == 21.0 and parsed["machine"]["model"] == "Pixel 8"
    log.write_text(json.dumps([{"metric": "load_status", "actualValue": 34.0}]))
    with pytest.raises(PhoneLogError, match="could not load the program"):
        parse_log(log)


def test_runner_log_per_iteration_times_with_warmup_dropped(tmp_path):
    log = tmp_path / "model.runner.log"
    log.write_text(RUNNER)
    parsed = parse_log(log, warmup=2)
    assert parsed["threads"] == 4 and parsed["latency"]["runs"] == 10
    assert parsed["latency"]["max_ms"] == pytest.approx(10.9) and parsed["latency"]["p50_ms"] == pytest.approx(10.45)
    log.write_text("\n".join(line for line in RUNNER.splitlines() if "Iteration" not in line))
    total_only = parse_log(log)
    assert total_only["latency"]["mean_ms"] == pytest.approx(159.5 / 12) and "mean only" in total_only["latency"]["statistic"]
    log.write_text("Failed to parse model file model.pte\n")
    with pytest.raises(PhoneLogError, match="no 'Iteration i of N"):
        parse_log(log)


def test_xcodebuild_log_takes_the_forward_test(tmp_path):
    log = tmp_path / "ios.xcodebuild.log"
    log.write_text(XCTEST)
    parsed = parse_log(log)
    assert parsed["source"] == "xctest" and parsed["latency"]["runs"] == 5
    assert parsed["latency"]["p50_ms"] == pytest.approx(8.1) and "test_forward_model" in parsed["latency"]["statistic"]


def test_phone_lines_merge_into_a_report_beside_the_workstation(tmp_path):
    pytest.importorskip("executorch.runtime", reason="the executorch extra is not installed")
    from edgeseg.bench.phone import main
    from edgeseg.bench.rows import load_rows
    from edgeseg.report.table import to_entry
    from tests.runtime.test_executorch_rt import write_pte

    pte, _, meta = write_pte(tmp_path)
    (tmp_path / "m.json").write_text(json.dumps(MINIBENCH))
    (tmp_path / "r.log").write_text(RUNNER)
    out = tmp_path / "phone.jsonl"
    main([str(pte), str(tmp_path / "m.json"), "--device-label", "Pixel 8", "--out", str(out)])
    main([str(pte), str(tmp_path / "r.log"), "--device-label", "Pixel 8", "--out", str(out), "--warmup", "2"])
    rows = load_rows([out])
    assert [r["provider"] for r in rows] == ["executorch-xnnpack (minibench)", "executorch-xnnpack (executor_runner)"]
    entries = [to_entry(r) for r in rows]
    assert {e.device for e in entries} == {"Pixel 8"} and {e.model for e in entries} == {meta.model_name}
    assert entries[0].p50_ms == 11.9 and rows[1]["threads"] == 4 and rows[0]["artifact"]["format"] == "executorch"
    with pytest.raises(SystemExit, match="nothing.log: not found"):
        main([str(pte), str(tmp_path / "nothing.log"), "--device-label", "Pixel 8"])
