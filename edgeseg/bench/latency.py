"""Latency measurement: warm-up, then repeated runs until a minimum count AND a minimum time.

Wall-clock with ``perf_counter`` around ``fn(); sync()``: the backend's ``synchronize`` makes GPU work
finish inside the timed region, so one timer serves every device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

NOISE_THRESHOLD = 0.15  # (p90 - p50) / p50 above this marks a result noisy


@dataclass
class LatencyStats:
    """Per-call latency statistics in milliseconds, plus throughput in images per second."""

    runs: int
    warmup: int
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput_ips: float
    spread: float
    noisy: bool
    noise_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stats_from_times(times_s: list[float] | np.ndarray, *, batch: int = 1, warmup: int = 0,
                     noise_threshold: float = NOISE_THRESHOLD, min_runs: int = 0) -> LatencyStats:
    """Summarise per-call times (seconds); flag the result noisy when the p90/p50 spread is wide, when
    there are fewer than 5 runs, or fewer than the ``min_runs`` asked for (a time cap stopped it)."""
    t = np.asarray(times_s, dtype=np.float64) * 1e3
    if t.size == 0:
        raise ValueError("no timings to summarise")
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    spread = float((p90 - p50) / p50) if p50 > 0 else 0.0
    reasons = []
    if spread > noise_threshold:
        reasons.append(f"p90 is {spread:.0%} above p50 (threshold {noise_threshold:.0%})")
    if t.size < 5:
        reasons.append(f"only {t.size} runs")
    elif t.size < min_runs:
        reasons.append(f"the time cap stopped it at {t.size} of {min_runs} runs")
    return LatencyStats(runs=int(t.size), warmup=warmup, batch=batch, p50_ms=float(p50), p90_ms=float(p90),
                        p99_ms=float(p99), mean_ms=float(t.mean()), std_ms=float(t.std()),
                        min_ms=float(t.min()), max_ms=float(t.max()),
                        throughput_ips=float(batch * 1e3 / t.mean()), spread=spread, noisy=bool(reasons),
                        noise_reason="; ".join(reasons))


def measure_latency(fn: Callable[[], Any], *, warmup: int, min_runs: int, min_time_s: float, max_time_s: float,
                    sync: Callable[[], None] | None = None, batch: int = 1, max_runs: int = 100_000,
                    noise_threshold: float = NOISE_THRESHOLD) -> LatencyStats:
    """Time ``fn`` (one inference call) after ``warmup`` calls.

    Runs until at least ``min_runs`` calls AND ``min_time_s`` seconds, capped by ``max_runs`` and
    ``max_time_s`` (a slow model still gets ``min_runs`` unless the cap is hit). The counts have no
    defaults here: the one set of defaults is :class:`edgeseg.bench.core.BenchSettings`.
    """
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if (len(times) >= min_runs and elapsed >= min_time_s) or len(times) >= max_runs or elapsed >= max_time_s:
            break
    return stats_from_times(times, batch=batch, warmup=warmup, noise_threshold=noise_threshold, min_runs=min_runs)


def measure_latency_cuda(fn: Callable[[], Any], *, warmup: int, min_runs: int, min_time_s: float, max_time_s: float,
                         batch: int = 1, max_runs: int = 100_000, noise_threshold: float = NOISE_THRESHOLD) -> LatencyStats:
    """Like :func:`measure_latency` for torch on CUDA: each call bracketed by CUDA events.

    Events time the GPU stream itself (no host-side launch jitter); each run synchronises on its end
    event before the next starts, so runs never overlap.
    """
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end) / 1e3)
        elapsed = time.perf_counter() - start
        if (len(times) >= min_runs and elapsed >= min_time_s) or len(times) >= max_runs or elapsed >= max_time_s:
            break
    return stats_from_times(times, batch=batch, warmup=warmup, noise_threshold=noise_threshold, min_runs=min_runs)
