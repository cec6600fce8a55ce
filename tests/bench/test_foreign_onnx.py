"""Bring-your-own ONNX: a file without edgeseg metadata is benched from the file alone, evaluated with a recipe."""

from __future__ import annotations

import onnx
import pytest
import yaml

from edgeseg.bench import benchmark
from edgeseg.bench.core import BenchSettings
from edgeseg.foreign import ForeignModelError
from tests.conftest import tiny_recipe_dict

QUICK = BenchSettings(warmup=1, min_runs=3, min_time_s=0.0, memory_runs=1)


@pytest.fixture(scope="module")
def foreign(tiny_artifacts, tmp_path_factory):
    _, onnx_path = tiny_artifacts
    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]  # as a file from another toolkit would be
    path = tmp_path_factory.mktemp("foreign") / "theirs.onnx"
    onnx.save(model, str(path))
    return path


def _cfg(monkeypatch):
    import edgeseg.bench as bench_mod

    monkeypatch.setattr(bench_mod, "_settings", lambda cfg: QUICK)


def test_latency_and_memory_from_the_file_alone(foreign, tmp_path, monkeypatch, capsys):
    _cfg(monkeypatch)
    (row,) = benchmark([foreign], out=tmp_path / "r.jsonl", threads=[1], size=(48, 64))
    assert not row["error"] and row["latency"]["p50_ms"] > 0 and row["memory"]["peak_rss_mb"] > 0
    assert row["input_shape"] == [1, 3, 48, 64] and row["model"]["name"] == "theirs"
    assert "pass --data RECIPE" in row["accuracy"]["error"]
    assert capsys.readouterr().out.count("has no edgeseg metadata") == 1


def test_dynamic_axes_need_a_size(foreign, tmp_path):
    with pytest.raises(ForeignModelError, match="pass --size HxW"):
        benchmark([foreign], out=tmp_path / "r.jsonl", threads=[1], accuracy=False)


def test_with_a_recipe_it_is_evaluated_too(foreign, tmp_path, monkeypatch):
    _cfg(monkeypatch)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict("unet_test", num_classes=4)))
    (row,) = benchmark([foreign], out=tmp_path / "r.jsonl", threads=[1], data=recipe)
    assert not row["error"] and row["accuracy"]["num_images"] == 6 and 0 <= row["accuracy"]["miou"] <= 1
    assert row["input_shape"] == [1, 3, 64, 64]


def test_a_file_with_a_detectors_outputs_is_benched_for_latency_and_memory(tmp_path, monkeypatch, capsys):
    """A peer such as YOLOv8n-seg (boxes + prototypes, no metadata) used to be refused by bench outright;
    latency and memory need only its input. Evaluating it with a recipe is still a one-line error."""
    import torch

    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):
            y = self.body(x)
            return y.mean(dim=(2, 3)), y[:, :4]

    path = tmp_path / "peer.onnx"
    torch.onnx.export(TwoHeads().eval(), (torch.randn(1, 3, 32, 32),), str(path), dynamo=False,
                      input_names=["images"], output_names=["output0", "output1"])
    _cfg(monkeypatch)
    (row,) = benchmark([path], out=tmp_path / "r.jsonl", threads=[1])
    assert not row["error"] and row["latency"]["p50_ms"] > 0 and row["memory"]["peak_rss_mb"] > 0
    assert row["input_shape"] == [1, 3, 32, 32]
    assert "2 outputs ['output0', 'output1']: not one logits output" in capsys.readouterr().out
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict("unet_test", num_classes=4)))
    with pytest.raises(ForeignModelError, match="2 outputs .* without --data still times it"):
        benchmark([path], out=tmp_path / "r2.jsonl", threads=[1], data=recipe)
