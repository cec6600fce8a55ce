"""Which candidate prune writes (issue #18): never a slower model for a latency target, never a worse
fine-tuning epoch than the pruned model. (A ratio without fine-tuning, the path that ended in
``KeyError: 'latency_ms'``, is README's first prune command: tests/compress/test_prune_readme.py.)"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import torch

from edgeseg.compress.prune import Probe, PruneConfig, PruneError, prune, prune_model, speed_phrase
from edgeseg.compress.prune_select import check_shippable
from edgeseg.models import create_model
from edgeseg.models.profile import count_params
from tests.conftest import make_checkpoint

WRONG_SPEED = re.compile(r"\b0\.\d+x faster")  # a ratio below 1 called faster: the "0.82x faster"


def _cli(*argv: object) -> tuple[int, str]:
    from typer.testing import CliRunner

    from edgeseg.cli import app

    res = CliRunner().invoke(app, [str(a) for a in argv])
    return res.exit_code, res.output


def _fake_latency(monkeypatch: pytest.MonkeyPatch, start_params: int, fewer_is_faster: bool) -> None:
    """ONNX Runtime timing replaced by a figure of the model's size: 2 ms for the start."""
    def latency(model: torch.nn.Module, meta: object, hw: object, threads: int = 2) -> float:
        share = count_params(model) / start_params
        return 2.0 * share if fewer_is_faster else 1.0 + 1.0 / share

    monkeypatch.setattr("edgeseg.compress.prune.onnx_latency_ms", latency)


def test_a_slower_ratio_candidate_is_written_and_said_slower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_checkpoint(tmp_path / "model.pt")
    _fake_latency(monkeypatch, count_params(_model(src)), fewer_is_faster=False)
    code, output = _cli("prune", src, "--ratio", "0.5", "--round-to", "2", "--out", tmp_path / "slow")
    assert code == 0, output
    fig = json.loads((tmp_path / "slow" / "prune.json").read_text())["figures"]
    assert fig["faster"] is False and fig["speedup"] < 1 and fig["speed"].endswith("x slower")
    assert "x slower than the start" in output and not WRONG_SPEED.search(output)


def _model(path: Path) -> torch.nn.Module:
    from edgeseg.artifacts.checkpoint import load_checkpoint

    return load_checkpoint(path).model


def test_a_latency_target_the_start_meets_writes_the_start_unchanged(tmp_path: Path) -> None:
    src = make_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "met"
    code, output = _cli("prune", src, "--target-latency", "1s", "--threads", "1", "--out", out)  # measured here
    assert code == 0, output
    assert (out / "model.pt").read_bytes() == src.read_bytes()
    doc = json.loads((out / "prune.json").read_text())
    assert "already met by the start" in doc["figures"]["decision"] and doc["figures"]["speed"] == "unchanged"
    assert [c["name"] for c in doc["candidates"]] == ["start"] and doc["candidates"][0]["chosen"]
    assert "already met by the start" in output and "faster" not in output and "slower" not in output


def test_a_latency_target_refuses_a_slower_or_missing_candidate_in_one_line(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = PruneConfig(target_latency_ms=5.0)
    start, slower = {"latency_ms": 0.72, "macs": 10}, {"latency_ms": 0.87, "macs": 5}
    with pytest.raises(PruneError, match=r"0\.87 ms against 0\.72 ms unpruned \(1\.21x slower\), target 5 ms"):
        check_shippable(cfg, slower, start)
    assert speed_phrase(0.72, 0.87) == "1.21x slower" and speed_phrase(0.87, 0.72) == "1.21x faster"
    # End to end: every pruned step measures slower than the target allows -> refused, nothing written.
    src = make_checkpoint(tmp_path / "model.pt")
    _fake_latency(monkeypatch, count_params(_model(src)), fewer_is_faster=False)
    with pytest.raises(PruneError, match=r"target 1 ms not reached at max_ratio 0.5 .*ms against 2.00 ms unpruned"):
        prune(src, tmp_path / "pr" / "ytd", PruneConfig(target_latency_ms=1.0, steps=2, max_ratio=0.5, round_to=2),
              measure_accuracy=False)
    assert not (tmp_path / "pr").exists()


def _fake_val(score: float) -> dict[str, float]:
    return {"miou": score, "mean_dice": score, "pixel_accuracy": score, "num_images": 6}


@pytest.mark.parametrize("scores, chosen", [((0.5, 0.2), 0), ((0.2, 0.5), 1)], ids=["finetuning-hurts", "helps"])
def test_the_most_accurate_of_pruned_and_finetuned_is_written(scores: tuple[float, float], chosen: int,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_checkpoint(tmp_path / "model.pt")
    cfg = {"ratio": 0.5, "round_to": 2, "threads": 1}
    prune(src, tmp_path / "plain", PruneConfig(**cfg), measure_latency=False, measure_accuracy=False)
    given = iter(scores)  # the training loop's validations: the pruned model before epoch 1, then epoch 1
    monkeypatch.setattr("edgeseg.train.loop._validate", lambda *a, **k: _fake_val(next(given)))
    doc = prune(src, tmp_path / "ft", PruneConfig(**cfg, finetune_epochs=1), measure_latency=False)
    assert doc["finetune"]["chosen_epoch"] == chosen
    rows = {c["name"]: c for c in doc["candidates"]}
    assert rows["epoch 1"]["val"]["miou"] == scores[1] and rows["epoch 1"]["chosen"] == bool(chosen)
    assert rows["pruned"]["chosen"] == (not chosen) and not rows["start"]["chosen"]
    written = torch.load(tmp_path / "ft" / "model.pt")["model_state"]
    plain = torch.load(tmp_path / "plain" / "model.pt")["model_state"]
    same = all(torch.equal(written[k], plain[k]) for k in plain)
    assert same == (not chosen)  # fine-tuning that hurts: the pruned weights themselves are written
    if chosen:
        assert doc["figures"]["after"]["val"]["miou"] == 0.5 and doc["figures"]["after"]["stage"] == "fine-tuned"


def test_yolact_box_scale_is_declared_not_guessed_and_never_pruned() -> None:
    model = create_model("yolact_test", num_classes=2, in_channels=3)
    scale = model.head.box_scale.detach().clone()
    assert [(p is model.head.box_scale, dim) for p, dim in model.unwrapped_parameters()] == [(True, None)]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*Unwrapped parameters")  # Torch-Pruning's guess, on stderr
        prune_model(model, PruneConfig(ratio=0.5, round_to=2), Probe(meta=None, hw=(64, 64)), log=lambda _: None)
    assert torch.equal(model.head.box_scale.detach(), scale)
