"""``edgeseg run``: the one place the whole chain is written.

Layout: ``OUT/{1_train,4_export,5_bench,6_report}`` (prune/quantize stages join with the compression
issue). Each stage records a fingerprint of its config and input artifacts in ``stage.json``; a stage
whose fingerprint is unchanged and whose outputs exist is skipped. An interrupted training stage
resumes from its ``last.pt``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeseg.artifacts import artifact_kind, atomic_write_json, file_sha256, stage_dir, text_sha256
from edgeseg.recipe import Recipe, load_recipe


def _fingerprint(config: Any, inputs: list[Path]) -> str:
    blob = json.dumps({"config": config, "inputs": {str(p.name): file_sha256(p) for p in inputs}},
                      sort_keys=True, default=str)
    return text_sha256(blob)


def _unchanged(folder: Path, fingerprint: str, outputs: list[Path]) -> bool:
    marker = folder / "stage.json"
    if not marker.exists() or not all(p.exists() for p in outputs):
        return False
    return json.loads(marker.read_text()).get("fingerprint") == fingerprint


def _stage(name: str, folder: Path, fingerprint: str, outputs: list[Path], force: bool,
           body: Callable[[], dict[str, Any]], log: dict[str, Any]) -> dict[str, Any]:
    if not force and _unchanged(folder, fingerprint, outputs):
        info = json.loads((folder / "stage.json").read_text())
        log[name] = {"status": "skipped", "summary": "unchanged: " + info.get("summary", ""), "folder": str(folder)}
        return info.get("result", {})
    result = body()
    info = {"stage": name, "fingerprint": fingerprint, "summary": result.pop("_summary", ""), "result": result}
    atomic_write_json(folder / "stage.json", info)
    log[name] = {"status": "done", "summary": info["summary"], "folder": str(folder)}
    return result


def _resumable(last: Path, train_cfg: dict[str, Any], trust: bool = False) -> bool:
    """An interrupted run resumes only if its model/data/train sections equal the current ones."""
    if not last.exists():
        return False
    from edgeseg.artifacts.checkpoint import read_checkpoint

    stored = read_checkpoint(last, trust=trust)["meta"].get("recipe") or {}
    return all(json.dumps(stored.get(k), sort_keys=True, default=str) == json.dumps(v, sort_keys=True, default=str)
               for k, v in train_cfg.items())


def _has_test_split(recipe: Recipe) -> bool:
    data = recipe.data
    if data.kind == "synthetic":
        return data.synthetic.num_test > 0
    splits = Path(data.root or ".") / "splits"
    return (splits / "test.txt").exists() if splits.is_dir() else data.test_ratio > 0


def run(recipe: Recipe | str | Path | None, out: str | Path, *, overrides: list[str] | None = None,
        force: bool = False, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Run every stage the recipe enables: train (+ eval), export, bench, report.

    ``trust_checkpoint``: the run folder's checkpoints may be unpickled fully (files an earlier edgeseg
    wrote there; see :func:`edgeseg.artifacts.checkpoint.read_checkpoint`).

    Returns ``{"stages": {name: {status, summary, folder}}, "out": ...}``.
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    out = Path(out)
    log: dict[str, Any] = {}

    train_dir = stage_dir(out, "train")
    model_pt = train_dir / "model.pt"
    train_cfg = {k: recipe.to_dict()[k] for k in ("model", "data", "train")}

    def do_train() -> dict[str, Any]:
        from edgeseg.evaluate import evaluate
        from edgeseg.train import train

        result = train(recipe, train_dir, resume=_resumable(train_dir / "last.pt", train_cfg, trust_checkpoint),
                       trust_checkpoint=trust_checkpoint)
        evals = {"val": result["metrics"]}
        if _has_test_split(recipe):
            evals["test"] = evaluate(model_pt, recipe=None, split="test", trust_checkpoint=trust_checkpoint)
        atomic_write_json(train_dir / "eval.json", evals)
        from edgeseg.models import get_model_info
        from edgeseg.tasks import get_task

        m = result["metrics"]
        task = get_task(get_model_info(recipe.model.name))
        return {"_summary": f"val {task.summary(m)}, {result['train_seconds']} s", "val": m}

    _stage("train", train_dir, _fingerprint(train_cfg, []), [model_pt], force, do_train, log)

    artifacts: list[Path] = [model_pt]
    if recipe.export is not None:
        export_dir = stage_dir(out, "export")

        def do_export() -> dict[str, Any]:
            from edgeseg.export import export

            res = export(model_pt, export_dir, formats=recipe.export.formats, precisions=recipe.export.precisions,
                         cfg=recipe.export, trust_checkpoint=trust_checkpoint)
            shipped = [a for a in res["artifacts"] if a.get("shipped", True)]
            # Bench every runnable file, the INT8 the auto policy rejected too: the report then shows
            # what INT8 would have cost on this machine instead of silently leaving it out.
            runnable = [a["path"] for a in res["artifacts"] if Path(a["path"]).is_file()]
            return {"_summary": f"{len(shipped)} artifacts shipped of {len(res['artifacts'])}",
                    "artifacts": runnable, "shipped": [a["path"] for a in shipped]}

        res = _stage("export", export_dir, _fingerprint(recipe.export.model_dump(mode="json"), [model_pt]),
                     [export_dir / "export.json"], force, do_export, log)
        artifacts += [Path(p) for p in res.get("artifacts", []) if artifact_kind(p) not in (None, "checkpoint")]

    results_file: Path | None = None
    if recipe.bench is not None:
        bench_dir = stage_dir(out, "bench")
        results_file = bench_dir / "results.jsonl"

        def do_bench() -> dict[str, Any]:
            from edgeseg.bench import benchmark

            results_file.unlink(missing_ok=True)  # type: ignore[union-attr]
            rows = benchmark(artifacts, out=results_file, backends=recipe.bench.backends, device=recipe.bench.device,
                             threads=recipe.bench.threads, batch=recipe.bench.batch, cfg=recipe.bench,
                             accuracy=recipe.bench.accuracy, trust_checkpoint=trust_checkpoint)
            return {"_summary": f"{len(rows)} result lines in {results_file}"}

        _stage("bench", bench_dir, _fingerprint(recipe.bench.model_dump(mode="json"), artifacts),
               [results_file], force, do_bench, log)

    if recipe.report is not None and results_file is not None:
        report_dir = stage_dir(out, "report")

        def do_report() -> dict[str, Any]:
            from edgeseg.report import report

            paths = report([results_file], report_dir, formats=recipe.report.formats, title=f"edgeseg: {recipe.name}")
            return {"_summary": f"{paths.get('md', report_dir)}", "paths": {k: str(v) for k, v in paths.items()}}

        _stage("report", report_dir, _fingerprint(recipe.report.model_dump(mode="json"), [results_file]),
               [report_dir / "report.md"], force, do_report, log)

    summary = {"recipe": recipe.name, "out": str(out), "stages": log}
    atomic_write_json(out / "run.json", summary)
    return summary
