"""Latency statistics and the noisy flag."""

from __future__ import annotations

import pytest

from edgeseg.bench.latency import NOISE_THRESHOLD, measure_latency, stats_from_times


def test_tight_timings_are_not_noisy():
    s = stats_from_times([0.010, 0.0101, 0.0099, 0.0100, 0.0102, 0.0100], batch=2)
    assert not s.noisy and s.p50_ms == pytest.approx(10.0, rel=0.02)
    assert s.throughput_ips == pytest.approx(2 / 0.01, rel=0.02)


def test_wide_spread_is_flagged_with_a_reason():
    times = [0.010] * 8 + [0.020] * 4
    s = stats_from_times(times)
    assert s.spread > NOISE_THRESHOLD and s.noisy and "p90" in s.noise_reason


def test_too_few_runs_are_flagged():
    s = stats_from_times([0.01, 0.01, 0.01])
    assert s.noisy and "only 3 runs" in s.noise_reason


class FakeClock:
    """perf_counter that only moves when the timed call 'takes' 2 ms: no test depends on an idle machine."""

    def __init__(self) -> None:
        self.t = 100.0

    def perf_counter(self) -> float:
        return self.t

    def call(self) -> None:
        self.t += 0.002


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    import edgeseg.bench.latency as latency

    fake = FakeClock()
    monkeypatch.setattr(latency, "time", fake)
    return fake


def test_min_runs_and_min_time_both_hold(clock):
    calls = []
    s = measure_latency(lambda: calls.append(clock.call()), warmup=2, min_runs=5, min_time_s=0.05, max_time_s=10)
    assert s.runs >= 5 and s.runs * 2 >= 50 - 2  # 0.05 s of 2 ms calls (the clock's float steps)
    assert len(calls) == s.runs + 2 and s.p50_ms == pytest.approx(2.0)


def test_empty_timings_raise():
    with pytest.raises(ValueError):
        stats_from_times([])


def test_a_time_cap_before_min_runs_is_flagged(clock):
    s = measure_latency(clock.call, warmup=0, min_runs=1000, min_time_s=0.0, max_time_s=0.03)
    assert 14 <= s.runs <= 16 and s.noisy and f"at {s.runs} of 1000 runs" in s.noise_reason


def test_noise_threshold_boundary():
    base = [0.010] * 10
    assert not stats_from_times(base[:-1] + [0.0114]).noisy  # p90 stays near p50
    wide = [0.010] * 7 + [0.0125] * 3  # p50 10 ms, p90 12.5 ms: 25% above
    assert stats_from_times(wide).noisy and not stats_from_times(wide, noise_threshold=0.3).noisy
