"""Latency on a drifting machine: every candidate file timed in rounds of alternating order (lowest p50,
resumed from the lines already written), a budget relative to the recipe's own model, and the winner's final
file timed in alternation beside its untrained candidate and the recipe's own model's file."""

from __future__ import annotations

import json

import pytest

from edgeseg import catalog
from edgeseg.optimize import OptimizeError, optimize
from edgeseg.optimize.latency import measure_here
from tests.optimize.test_optimize import LARGE, SMALL, tiny_optimize_recipe

F = catalog.OPTIMIZE_FILES


def one_width(width: float):
    rcp = tiny_optimize_recipe()
    rcp.optimize.widths = [width]
    return rcp


def test_files_are_timed_in_alternating_rounds_and_resumed(tmp_path):
    rcp = tiny_optimize_recipe()
    optimize(rcp, tmp_path, plan=True)
    plan = json.loads((tmp_path / F.plan).read_text())
    p50 = measure_here(tmp_path, plan, rcp.bench, lambda _: None, rounds=3)
    lines = [json.loads(x) for x in (tmp_path / F.latency).read_text().splitlines()]
    a, b = f"{SMALL}.fp32.onnx", f"{LARGE}.fp32.onnx"
    assert [r["artifact"]["name"] for r in lines] == [a, b, b, a, a, b]  # forward, backward, forward
    assert not any(r.get("memory") or r.get("accuracy") for r in lines)  # latency only: no probe per round
    for name in (a, b):
        assert p50[name] == pytest.approx(min([r["latency"]["p50_ms"] for r in lines
                                                     if r["artifact"]["name"] == name]))
    assert measure_here(tmp_path, plan, rcp.bench, lambda _: None, rounds=3) == p50  # resumed: nothing timed again
    assert len((tmp_path / F.latency).read_text().splitlines()) == 6
    measure_here(tmp_path, plan, rcp.bench, lambda _: None, rounds=4)  # one more round: one more line per file
    assert len((tmp_path / F.latency).read_text().splitlines()) == 8


def test_relative_budget_and_the_paired_final_timing(tmp_path):
    said: list[str] = []
    doc = optimize(one_width(1.0), tmp_path, budget_ratio=1.5, say=said.append)
    own = f"{SMALL}.fp32.onnx"
    lines = [json.loads(x) for x in (tmp_path / F.latency).read_text().splitlines()]
    ref = min(r["latency"]["p50_ms"] for r in lines if r["artifact"]["name"] == own)
    assert doc["budget_ratio"] == 1.5 and doc["budget_ms"] == pytest.approx(1.5 * ref)
    assert any(s.startswith(f"budget 1.5x the recipe's own {SMALL}") for s in said)
    assert "-1.5x-onnxruntime-" in doc["study"]  # hosts sharing a storage share the study, each timing its own
    timing = doc["final_timing"]
    assert timing["own"] == SMALL and timing["ratio_to_own"] == pytest.approx(timing["winner_final_ms"] / timing["own_ms"])
    assert doc["final_latency_ms"] == timing["winner_final_ms"]
    assert doc["budget_met"] == (timing["ratio_to_own"] <= 1.5)
    # the winner is the recipe's own model here: its final file and the one untrained file, 3 rounds each
    final = [json.loads(x) for x in (tmp_path / F.final_latency).read_text().splitlines()]
    assert sorted(r["artifact"]["name"] for r in final) == sorted(["model.onnx"] * 3 + [own] * 3)
    assert "x the recipe's own model timed in alternation: budget 1.5x" in doc["summary"]


def test_relative_budget_needs_the_recipes_own_model_in_the_space(tmp_path):
    with pytest.raises(OptimizeError, match="needs that model in the search space") as err:
        optimize(one_width(2.0), tmp_path, budget_ratio=0.5)
    assert "\n" not in str(err.value) and not (tmp_path / F.runs).exists()


def test_budget_is_given_once(tmp_path):
    with pytest.raises(OptimizeError, match="required once"):
        optimize(tiny_optimize_recipe(), tmp_path, budget_ms=4, budget_ratio=0.5)
