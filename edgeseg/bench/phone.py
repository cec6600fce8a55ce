"""Phone timings -> edgeseg result lines: ExecuTorch's minibench JSON, executor_runner logs, xcodebuild logs.

    python -m edgeseg.bench.phone model.pte results/model.minibench.json --device-label "Pixel 8" --out phone.jsonl

The log kind is told apart by content. The program's metadata (model, precision, input size) is read
from the .pte itself, so the line lands in the right report row; ``device_label`` names the phone,
so ``edgeseg report`` gives it its own table. Statistics come from what the log holds: per-run times
(executor_runner's ``Iteration i of N: x ms`` lines, XCTest's ``values: [...]``) give percentiles;
minibench gives only an average and a trimmed mean (middle 80% of runs), recorded as p50 and mean
with ``latency.statistic`` saying so.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from edgeseg.bench.latency import stats_from_times
from edgeseg.bench.rows import SCHEMA, append_rows
from edgeseg.errors import UserError

_RUNNER_ITER = re.compile(r"Iteration \d+ of \d+: ([0-9.]+) ms")
_RUNNER_TOTAL = re.compile(r"Model executed successfully (\d+) time\(s\) in ([0-9.]+) ms")
_RUNNER_THREADS = re.compile(r"num threads = (-?\d+)")
_XCTEST = re.compile(r"Test Case '-\[\S+ (test\S*forward\S*)\]' measured \[([^\]]+)\] average: ([0-9.]+).*?"
                     r"values: \[([0-9., ]+)\]")


class PhoneLogError(UserError, ValueError):
    """A phone log holds no timing edgeseg can read."""


def parse_minibench(doc: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency, load time, memory and device of minibench's ``benchmark_results.json``."""
    metrics = {m.get("metric"): m.get("actualValue") for m in doc if isinstance(m, dict)}
    if metrics.get("load_status", 0):
        raise PhoneLogError(f"minibench could not load the program (load_status {metrics['load_status']:.0f})")
    if "avg_inference_latency(ms)" not in metrics:
        raise PhoneLogError("minibench results hold no avg_inference_latency(ms)")
    info = next((m.get("deviceInfo") for m in doc if isinstance(m, dict) and m.get("deviceInfo")), {}) or {}
    avg, trim = metrics["avg_inference_latency(ms)"], metrics.get("trimmean_inference_latency(ms)")
    latency = {"runs": None, "warmup": None, "batch": 1, "p50_ms": trim or avg, "p90_ms": None, "p99_ms": None,
               "mean_ms": avg, "std_ms": None, "min_ms": None, "max_ms": None,
               "throughput_ips": 1e3 / avg if avg else None, "spread": None, "noisy": False, "noise_reason": "",
               "statistic": "minibench trimmed mean (middle 80% of runs) as p50; no percentiles in its output"}
    return {"source": "minibench", "latency": latency, "load_ms": metrics.get("model_load_time(ms)"),
            "memory_mb": metrics.get("ram_pss_usage(mb)"), "threads": None, "timer": "minibench System.nanoTime",
            "machine": {"device": info.get("device"), "model": info.get("arch"), "os": info.get("os")}}


def parse_runner(text: str) -> dict[str, Any]:
    """Per-iteration times of an executor_runner log (the first ``warmup`` iterations are dropped)."""
    times = [float(t) for t in _RUNNER_ITER.findall(text)]
    threads = _RUNNER_THREADS.search(text)
    if not times:
        total = _RUNNER_TOTAL.search(text)
        if not total:
            raise PhoneLogError("no 'Iteration i of N: x ms' or 'Model executed successfully' line in the runner log")
        times = [float(total.group(2)) / int(total.group(1))] * int(total.group(1))
        statistic = "executor_runner mean only (this runner version prints no per-iteration times)"
    else:
        statistic = "executor_runner per-iteration times"
    return {"source": "executor_runner", "times_ms": times, "statistic": statistic, "timer": "pal_current_ticks",
            "threads": int(threads.group(1)) if threads else None}


def parse_xctest(text: str) -> dict[str, Any]:
    """The ``forward`` performance test values of an ``xcodebuild test`` log (seconds -> ms)."""
    found = _XCTEST.findall(text)
    if not found:
        raise PhoneLogError("no \"Test Case '-[... test_forward...]' measured [...] values: [...]\" line "
                            "in the xcodebuild log")
    name, unit, _, values = found[0]
    scale = 1e3 if unit.rstrip().endswith("s") and not unit.rstrip().endswith("ms") else 1.0
    times = [float(v) * scale for v in values.split(",") if v.strip()]
    return {"source": "xctest", "times_ms": times, "statistic": f"XCTest {name} ({unit})", "timer": "XCTClockMetric",
            "threads": None}


def parse_log(path: Path, warmup: int = 0) -> dict[str, Any]:
    """Parse any of the three log kinds; returns latency (dict) and what else the log holds."""
    text = path.read_text(errors="replace")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, list):
        return parse_minibench(doc)
    parsed = parse_xctest(text) if "measured [" in text else parse_runner(text)
    times = parsed.pop("times_ms")[warmup:]
    if not times:
        raise PhoneLogError(f"{path}: no timed runs left after dropping {warmup} warm-up runs")
    stats = stats_from_times([t / 1e3 for t in times], warmup=warmup).to_dict()
    return {**parsed, "latency": {**stats, "statistic": parsed.pop("statistic")}}


def phone_row(pte: Path, log: Path, *, device_label: str, threads: int | None = None,
              warmup: int = 0) -> dict[str, Any]:
    """One ``edgeseg.bench/1`` line for ``pte`` timed on a phone, from ``log``."""
    from edgeseg.artifacts import edgeseg_version, file_sha256
    from edgeseg.runtime.executorch_rt import ExecuTorchBackend

    be = ExecuTorchBackend(pte)
    meta = be.meta
    try:
        parsed = parse_log(log, warmup=warmup)
    except PhoneLogError as exc:
        raise PhoneLogError(f"{log}: {exc}") from None
    shape = list(be.inputs[0].shape)
    recorded = parsed.get("threads")
    return {"schema": SCHEMA, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "edgeseg_version": edgeseg_version(),
            "artifact": {"path": str(pte), "name": pte.name, "sha256": file_sha256(pte),
                         "size_bytes": pte.stat().st_size, "format": "executorch", "precision": meta.precision},
            "model": {"name": meta.model_name, "family": meta.family, "task": meta.task,
                      "num_classes": meta.num_classes, "in_channels": meta.in_channels, "input_hw": shape[2:],
                      "recipe": (meta.recipe or {}).get("name"), "recipe_hash": meta.recipe_hash,
                      "model_args": meta.model_args, "params": None, "gmacs": None},
            "backend": "executorch", "provider": f"executorch-xnnpack ({parsed['source']})", "device": "cpu",
            "device_label": device_label, "threads": threads if threads is not None else
            (recorded if recorded and recorded > 0 else None), "batch": 1, "backend_options": {},
            "precision": meta.precision, "input_shape": shape, "timer": parsed["timer"], "load_avg_1m": None,
            "other_cpu_cores": None, "latency": parsed["latency"], "noisy": bool(parsed["latency"].get("noisy")),
            "memory": {"model_load_ms": parsed.get("load_ms"), "inference_peak_mb": parsed.get("memory_mb"),
                       "peak_rss_mb": None} if parsed["source"] == "minibench" else None,
            "accuracy": None, "log": str(log),
            "machine": {"hostname": device_label, "cpu": device_label, **(parsed.get("machine") or {})},
            "versions": {"edgeseg": edgeseg_version()}, "error": ""}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(prog="python -m edgeseg.bench.phone", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pte", type=Path, help="the .pte that was timed")
    ap.add_argument("log", type=Path, help="minibench benchmark_results.json, executor_runner log or xcodebuild log")
    ap.add_argument("--device-label", required=True, help="the phone, e.g. 'Pixel 8 (Tensor G3)'")
    ap.add_argument("--out", type=Path, default=Path("phone.jsonl"))
    ap.add_argument("--threads", type=int, default=None, help="threads the runtime used (when the log does not say)")
    ap.add_argument("--warmup", type=int, default=0, help="leading runs of a runner/XCTest log to drop")
    args = ap.parse_args(argv)
    for path in (args.pte, args.log):
        if not path.is_file():
            raise SystemExit(f"{path}: not found")
    try:
        row = phone_row(args.pte, args.log, device_label=args.device_label, threads=args.threads, warmup=args.warmup)
    except PhoneLogError as exc:
        raise SystemExit(str(exc)) from None
    append_rows(args.out, [row])
    print(f"{args.pte.name} on {args.device_label}: p50 {row['latency']['p50_ms']:.2f} ms -> {args.out}")
    return [row]


if __name__ == "__main__":
    main()
