"""Bench settings out of range are refused before anything is measured, in the library and the CLI."""

from __future__ import annotations

import pytest

from edgeseg.bench import benchmark
from edgeseg.bench.backends import BenchOptionError
from edgeseg.bench.core import BenchSettings
from edgeseg.recipe import RecipeError, recipe_from_dict


@pytest.mark.parametrize("kw, field", [({"batch": [0]}, "batch"), ({"threads": [0]}, "threads"),
                                       ({"threads": [-1]}, "threads"), ({"batch": [1, 0]}, "batch")])
def test_benchmark_refuses_counts_below_one(tmp_path, kw, field):
    out = tmp_path / "r.jsonl"
    with pytest.raises(BenchOptionError, match=f"{field}: .* expected integers >= 1"):
        benchmark([tmp_path / "m.onnx"], out=out, **kw)
    assert not out.exists()


@pytest.mark.parametrize("kw", [{"min_runs": 0}, {"warmup": -1}, {"min_time_s": -0.5}])
def test_bench_settings_refuse_out_of_range(kw):
    with pytest.raises(BenchOptionError, match=next(iter(kw))):
        BenchSettings(**kw)


def test_recipe_bench_section_refuses_zero_batch_and_threads():
    with pytest.raises(RecipeError, match=r"bench\.batch\.0"):
        recipe_from_dict({"bench": {"batch": [0]}})
    with pytest.raises(RecipeError, match=r"bench\.threads\.0"):
        recipe_from_dict({"bench": {"threads": [0]}})


def test_results_file_that_is_a_folder_is_refused_before_measuring(tmp_path):
    from edgeseg.artifacts.outputs import OutputError

    with pytest.raises(OutputError, match="is a folder; expected a file"):
        benchmark([tmp_path / "m.onnx"], out=tmp_path, threads=[1])
