"""INT8-vs-FP32 decisions on a busy machine: keep measuring (bounded) until the interval excludes 1."""

from __future__ import annotations

import itertools

import pytest

from edgeseg.export.int8_timing import MAX_ROUNDS, RatioSamples, busy_decision, sample_ratios, t975


def _rounds(ratios, busy="other processes used 1.1 cores"):
    it = itertools.cycle(ratios)
    calls = []

    def one_round(i):
        calls.append(i)
        return next(it) * 1.0, 1.0, busy  # fp32 ms, int8 ms -> ratio

    return one_round, calls


def test_quiet_machine_stops_after_the_minimum_rounds():
    fn, calls = _rounds([0.8, 1.4], busy="")
    samples = sample_ratios(fn, min_rounds=2)
    assert len(calls) == 2 and not samples.busy


def test_busy_machine_with_a_swinging_ratio_is_undecided_and_not_shipped():
    # The case: quiet the ratio is 0.81x, a competing process made one round look 1.37x.
    fn, calls = _rounds([1.37, 0.81, 1.2, 0.85])
    samples = sample_ratios(fn, min_rounds=2)
    assert len(calls) == MAX_ROUNDS  # bounded
    ship, reason, record = busy_decision(samples, "INT8 0.96 ms vs FP32 1.31 ms (1.37x)")
    assert not ship and "undecided on a busy machine" in reason
    assert record["certainty"] == "undecided" and record["rounds"] == MAX_ROUNDS
    lo, hi = record["ratio_ci95"]
    assert lo < 1 < hi


def test_busy_machine_with_a_steady_speedup_stops_early_and_ships():
    fn, calls = _rounds([1.52, 1.48, 1.50, 1.55])
    samples = sample_ratios(fn, min_rounds=2)
    assert len(calls) < MAX_ROUNDS and samples.excludes_one()
    ship, reason, record = busy_decision(samples, "figures")
    assert ship and record["certainty"] == "95% interval above 1" and record["ratio_ci95"][0] > 1


def test_busy_decision_leads_with_the_paired_ratio_not_a_contradicting_best_of_rounds():
    # Seen: "faster than FP32 ...: best INT8 56.04 ms vs FP32 54.55 ms (0.97x); ratio 95% CI 1.01-1.34":
    # best-of-rounds p50s said slower while the paired rounds it shipped on said faster.
    fn, _ = _rounds([1.10, 1.20, 1.15, 1.25])
    samples = sample_ratios(fn, min_rounds=2)
    ship, reason, _ = busy_decision(samples, "INT8 56.04 ms vs FP32 54.55 ms")
    assert ship and reason.startswith(f"faster than FP32 on this machine: speed-up {samples.geomean():.2f}x")
    assert "0.97x" not in reason and "best of rounds INT8 56.04 ms vs FP32 54.55 ms" in reason


def test_busy_machine_with_a_steady_slowdown_is_rejected_with_confidence():
    fn, _ = _rounds([0.80, 0.82, 0.79])
    ship, reason, record = busy_decision(sample_ratios(fn, min_rounds=2), "figures")
    assert not ship and record["certainty"] == "95% interval below 1" and "undecided" not in reason
    assert "model.int8.rejected.onnx" in reason


def test_executorch_programs_get_the_same_decision_under_their_own_name():
    from types import SimpleNamespace

    from edgeseg.export.onnx2int8 import decide_int8

    fn, _ = _rounds([1.0, 1.3, 0.7, 1.2])  # a busy machine whose ratio swings around 1
    samples = sample_ratios(fn, min_rounds=2)
    notes = []
    ctx = SimpleNamespace(cfg=SimpleNamespace(int8_policy="auto"), say=lambda msg, note=False: notes.append(msg))
    latency = {"fp32": {"p50_ms": 10.0}, "int8": {"p50_ms": 8.0}}  # best-of-rounds alone would ship it
    ship, reason, record = decide_int8(ctx, latency, samples, rejected_name="model.int8.rejected.pte")
    assert not ship and record["certainty"] == "undecided" and "kept as model.int8.rejected.pte" in reason
    assert notes and "busy machine" in notes[0]


def test_interval_and_t_quantiles():
    assert RatioSamples([1.2]).ci95() is None
    assert t975(1) == pytest.approx(12.71) and t975(11) == pytest.approx(2.23) and t975(100) == 1.96
    lo, hi = RatioSamples([1.0, 1.0, 1.0]).ci95()
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
