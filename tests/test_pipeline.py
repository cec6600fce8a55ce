"""`edgeseg run`: every stage of a tiny recipe, then stage skipping and resume on a second run."""

from __future__ import annotations

import json

import pytest

from edgeseg.pipeline import run
from edgeseg.recipe import recipe_from_dict
from tests.conftest import tiny_recipe_dict


def _recipe(**bench):
    d = tiny_recipe_dict("unet_test", num_classes=3)
    d["data"]["synthetic"].update(num_train=8, num_val=4, size=32)
    d["data"]["image_size"] = 32
    d["train"].update(epochs=2, batch_size=4)
    d["export"] = {"formats": ["onnx"], "precisions": ["fp32", "int8"], "calibration": {"images": 4}}
    d["bench"] = {"backends": ["onnxruntime"], "threads": [1], "batch": [1], "warmup": 1, "min_runs": 3,
                  "min_time_s": 0.0, **bench}
    d["report"] = {}
    return recipe_from_dict(d)


@pytest.mark.filterwarnings("ignore")
def test_run_all_stages_then_skip_unchanged(tmp_path):
    first = run(_recipe(), tmp_path)
    assert [s["status"] for s in first["stages"].values()] == ["done"] * 4, first
    assert (tmp_path / "1_train" / "model.pt").is_file() and (tmp_path / "1_train" / "eval.json").is_file()
    export_doc = json.loads((tmp_path / "4_export" / "export.json").read_text())
    assert {(a["format"], a["precision"]) for a in export_doc["artifacts"]} >= {("onnx", "fp32"), ("onnx", "int8")}
    rows = [json.loads(line) for line in (tmp_path / "5_bench" / "results.jsonl").read_text().splitlines()]
    assert rows and all(r["accuracy"]["num_images"] == 4 for r in rows if r.get("accuracy"))
    report_md = (tmp_path / "6_report" / "report.md").read_text()
    assert "unet_test" in report_md and (tmp_path / "6_report" / "pareto.png").is_file()

    assert first["headline"]["p50_ms"] > 0 and first["headline"]["num_images"] == 4
    # the README tour names the files `edgeseg run` writes (runs/qs/<stage>/<file>)
    import re
    from pathlib import Path

    tour = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    named = set(re.findall(r"runs/qs/(\d_\w+(?:/[\w.]*\w)?)", tour))
    assert {"1_train/model.pt", "4_export/model.onnx", "5_bench/results.jsonl", "6_report/report.md"} <= named, named
    assert [n for n in named if not (tmp_path / n).exists()] == []
    assert first["report"] == {k: str(tmp_path / "6_report" / f"report.{k}") for k in ("md", "html")}

    second = run(_recipe(), tmp_path)
    assert [s["status"] for s in second["stages"].values()] == ["skipped"] * 4, second

    third = run(_recipe(min_runs=4), tmp_path)
    status = {k: v["status"] for k, v in third["stages"].items()}
    assert status == {"train": "skipped", "export": "skipped", "bench": "done", "report": "done"}


def test_stage_table_hands_outputs_on_and_skips_by_fingerprint(tmp_path, monkeypatch):
    """A prune-like stage slots in as a row: it replaces the checkpoint the next stage starts from."""
    import edgeseg.pipeline as pipeline

    calls = []

    def write(name):
        def body(state, folder):
            calls.append(name)
            folder.mkdir(parents=True, exist_ok=True)
            src = state.checkpoint.read_text() if state.checkpoint else ""
            (folder / f"{name}.txt").write_text(src + name)
            return {"_summary": name}
        return body

    def adopt(name):
        def hand_on(state, folder, result):
            state.checkpoint = folder / f"{name}.txt"
        return hand_on

    stages = [pipeline.Stage(name, enabled=lambda r: True, config=lambda r, n=name: {n: r.train.epochs},
                             inputs=lambda s: [s.checkpoint] if s.checkpoint else [],
                             outputs=lambda folder, n=name: [folder / f"{n}.txt"], run=write(name), adopt=adopt(name))
              for name in ("train", "prune", "export")]
    monkeypatch.setattr(pipeline, "STAGES", stages)
    first = pipeline.run(_recipe(), tmp_path)
    assert calls == ["train", "prune", "export"] and list(first["stages"]) == ["train", "prune", "export"]
    assert (tmp_path / "4_export" / "export.txt").read_text() == "trainpruneexport"  # export started from prune
    second = pipeline.run(_recipe(), tmp_path)
    assert calls == ["train", "prune", "export"]  # nothing re-ran
    assert [s["status"] for s in second["stages"].values()] == ["skipped"] * 3
    (tmp_path / "2_prune" / "prune.txt").write_text("pruned harder")  # export's input changed, nothing else
    third = pipeline.run(_recipe(), tmp_path)
    assert calls[3:] == ["export"] and third["stages"]["prune"]["status"] == "skipped"
    assert (tmp_path / "4_export" / "export.txt").read_text() == "pruned harderexport"


@pytest.mark.filterwarnings("ignore")
def test_prune_and_quantize_stages_run_then_skip_when_unchanged(tmp_path):
    def recipe(ratio: float = 0.5):
        d = _recipe(backends=["onnxruntime", "torch"]).to_dict()  # torch benches the checkpoints
        d["export"]["precisions"] = ["fp32"]
        d["prune"] = {"ratio": ratio, "round_to": 2, "finetune_epochs": 1, "distill": True, "threads": 1}
        d["quantize"] = {"calibration": {"images": 4}, "int8_policy": "always"}
        return recipe_from_dict(d)

    first = run(recipe(), tmp_path)
    assert list(first["stages"]) == ["train", "prune", "quantize", "export", "bench", "report"]
    assert {s["status"] for s in first["stages"].values()} == {"done"}, first
    prune_doc = json.loads((tmp_path / "2_prune" / "prune.json").read_text())
    assert prune_doc["figures"]["macs_ratio"] < 0.6
    assert prune_doc["inputs"]["checkpoint"] == str(tmp_path / "1_train" / "model.pt")
    for later in ("3_quantize", "4_export"):  # both start from the pruned checkpoint
        doc = json.loads((tmp_path / later / "export.json").read_text())
        assert doc["inputs"]["checkpoint"] == str(tmp_path / "2_prune" / "model.pt"), later
    benched = {json.loads(line)["artifact"]["path"] for line in (tmp_path / "5_bench" / "results.jsonl").read_text().splitlines()}
    assert {str(tmp_path / p) for p in ("1_train/model.pt", "2_prune/model.pt", "3_quantize/model.int8.onnx",
                                        "4_export/model.onnx")} <= benched
    report_md = (tmp_path / "6_report" / "report.md").read_text()
    assert "1_train/model.pt" in report_md and "2_prune/model.pt" in report_md  # pruned beside the original

    second = run(recipe(), tmp_path)
    assert {s["status"] for s in second["stages"].values()} == {"skipped"}, second
    third = run(recipe(ratio=0.25), tmp_path)
    status = {k: v["status"] for k, v in third["stages"].items()}
    assert status == {"train": "skipped", "prune": "done", "quantize": "done", "export": "done", "bench": "done",
                      "report": "done"}


def test_a_quantize_section_export_would_refuse_is_refused_first_by_its_own_fields(tmp_path):
    """Seen: `quantize: {qat: ..., max_drop: ...}` trained the model, then failed in the quantize stage with
    an error naming `export.qat and export.max_drop`, fields the recipe does not have."""
    from edgeseg.errors import ExportError

    d = _recipe().to_dict()
    d["quantize"] = {"qat": {"epochs": 1}, "max_drop": 1.0}
    with pytest.raises(ExportError, match=r"^quantize.qat and quantize.max_drop cannot be combined"):
        run(recipe_from_dict(d), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before any stage
