"""``edgeseg run``: the one place the whole chain is written.

Layout: ``OUT/{1_train,2_prune,3_quantize,4_export,5_bench,6_report}``; the chain is the :data:`STAGES`
table. ``prune`` replaces the checkpoint later stages start from; bench measures the trained, pruned,
quantized and exported files side by side. Each stage records a fingerprint of its config and input artifacts
(and of the dataset's files, for stages that read them) in ``stage.json``; a stage whose fingerprint
is unchanged, whose marker says ``done`` and whose outputs exist is skipped. A stage marks itself
``running`` before it starts, so a stage killed half-way is never taken for done by the next run, whatever
files it left. Training resumes from its ``last.pt`` only when the interrupted attempt had the same
fingerprint (config and data files); after a change, or with ``force``, it trains from scratch.
``OUT`` is locked while a run works in it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.artifacts import artifact_kind, atomic_write_json, file_sha256, stage_dir, text_sha256
from edgeseg.catalog import FILES, REPORT_FORMATS, STAGES as STAGE_FOLDERS
from edgeseg.recipe import Recipe, load_recipe

TRAIN, PRUNE, QUANTIZE, EXPORT, BENCH, REPORT = STAGE_FOLDERS  # the chain's names, in order
RESULTS = "results.jsonl"  # bench's result lines in its stage folder
EVAL_JSON = "eval.json"    # the trained model's val (and test) figures
RUN_JSON = "run.json"      # the run's summary in OUT


def _fingerprint(config: Any, inputs: list[Path]) -> str:
    blob = json.dumps({"config": config, "inputs": {str(p.name): file_sha256(p) for p in inputs}},
                      sort_keys=True, default=str)
    return text_sha256(blob)


def _marker(folder: Path) -> dict[str, Any]:
    """The stage's ``stage.json`` ({} when absent or cut short); markers of older runs have no status: done."""
    try:
        info = json.loads((folder / FILES.stage_json).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def _stage(name: str, folder: Path, fingerprint: str, outputs: list[Path], state: RunState,
           body: Callable[[], dict[str, Any]], log: dict[str, Any]) -> dict[str, Any]:
    """Skip the stage when its marker says it finished with this fingerprint and its outputs exist; else mark
    it running (so a kill leaves no 'done' behind) and run it, resuming only an attempt of this fingerprint."""
    from edgeseg.progress import line_progress

    before = _marker(folder)
    same = before.get("fingerprint") == fingerprint
    if not state.force and same and before.get("status", "done") == "done" and all(p.exists() for p in outputs):
        log[name] = {"status": "skipped", "summary": "unchanged: " + before.get("summary", ""), "folder": str(folder)}
        line_progress(f"run: {name} skipped (inputs unchanged)")
        return before.get("result", {})
    line_progress(f"run: {name} ...")
    state.resume = not state.force and same and before.get("status") == "running"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / FILES.stage_json, {"stage": name, "fingerprint": fingerprint, "status": "running"})
    result = body()
    info = {"stage": name, "fingerprint": fingerprint, "status": "done", "summary": result.pop("_summary", ""),
            "result": result}
    atomic_write_json(folder / FILES.stage_json, info)
    log[name] = {"status": "done", "summary": info["summary"], "folder": str(folder)}
    line_progress(f"run: {name} done: {info['summary']}")
    return result


def _resumable(last: Path, recipe: Recipe, trust: bool = False) -> bool:
    """An interrupted run resumes only if its model/data/train sections equal the current ones (the same
    comparison `edgeseg train --resume` makes), else training starts over."""
    if not last.exists():
        return False
    from edgeseg.artifacts.checkpoint import read_checkpoint
    from edgeseg.recipe import recipe_differences

    stored = read_checkpoint(last, trust=trust)["meta"].get("recipe") or {}
    return not recipe_differences(stored, recipe.to_dict())


def _has_test_split(recipe: Recipe) -> bool:
    data = recipe.data
    if data.kind == "synthetic":
        return data.synthetic.num_test > 0
    splits = Path(data.root or ".") / "splits"
    return (splits / "test.txt").exists() if splits.is_dir() else data.test_ratio > 0


@dataclass
class RunState:
    """What the stages hand on to each other.

    Attributes:
        recipe: The run's recipe.
        out: The run folder.
        checkpoint: The model later stages start from (train writes it; prune/quantize may replace it).
        artifacts: Files bench measures (the checkpoint and every runnable export).
        results: The bench results file the report reads.
        trust_checkpoint: The run folder's checkpoints may be unpickled fully (files an earlier edgeseg
            wrote there; see :func:`edgeseg.artifacts.checkpoint.read_checkpoint`).
        data_files: Fingerprint of the dataset's files (:func:`edgeseg.data.fingerprint.dataset_fingerprint`),
            part of the fingerprint of every stage that reads the data.
        shipped: The exported files export shipped (the run's headline prefers them).
        reports: Report files by format (md, html).
        force: Every stage runs again; training starts from scratch instead of resuming.
        resume: The running stage continues an attempt of the same fingerprint that was interrupted (training
            resumes from its ``last.pt``); set per stage by the run.
    """

    recipe: Recipe
    out: Path
    trust_checkpoint: bool = False
    force: bool = False
    resume: bool = False
    data_files: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None
    artifacts: list[Path] = field(default_factory=list)
    results: Path | None = None
    shipped: list[Path] = field(default_factory=list)
    reports: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: when it runs, what its fingerprint covers, what it does and hands on.

    ``run(state, folder)`` does the work and returns its result (``_summary`` is the one-line
    summary); ``adopt(state, folder, result)`` hands its outputs to later stages, also when the stage
    was skipped (the result then comes from its ``stage.json``). ``reads_data``: the stage reads the
    recipe's dataset (training, calibration, accuracy), so the data files are among its inputs.
    """

    name: str
    enabled: Callable[[Recipe], bool]
    config: Callable[[Recipe], Any]
    inputs: Callable[[RunState], list[Path]]
    outputs: Callable[[Path], list[Path]]
    run: Callable[[RunState, Path], dict[str, Any]]
    adopt: Callable[[RunState, Path, dict[str, Any]], None] = lambda state, folder, result: None
    reads_data: bool = False


def _train_config(recipe: Recipe) -> dict[str, Any]:
    return {k: recipe.to_dict()[k] for k in ("model", "data", "train")}


def _run_train(state: RunState, folder: Path) -> dict[str, Any]:
    from edgeseg.evaluate import evaluate
    from edgeseg.train import train

    recipe = state.recipe
    trust = state.trust_checkpoint
    resume = state.resume and _resumable(folder / FILES.last, recipe, trust)
    result = train(recipe, folder, resume=resume, trust_checkpoint=trust)
    evals = {"val": result["metrics"]}
    if _has_test_split(recipe):
        evals["test"] = evaluate(folder / FILES.model, recipe=None, split="test", trust_checkpoint=trust)
    atomic_write_json(folder / EVAL_JSON, evals)
    from edgeseg.models import get_model_info
    from edgeseg.tasks import get_task

    m = result["metrics"]
    task = get_task(get_model_info(recipe.model.name))
    return {"_summary": f"val {task.summary(m)}, {result['train_seconds']} s", "val": m}


def _adopt_train(state: RunState, folder: Path, result: dict[str, Any]) -> None:
    state.checkpoint = folder / FILES.model
    state.artifacts = [state.checkpoint]


def _run_prune(state: RunState, folder: Path) -> dict[str, Any]:
    from edgeseg.compress.prune import prune

    cfg = state.recipe.prune
    assert cfg is not None and state.checkpoint is not None
    doc = prune(state.checkpoint, folder, cfg, trust_checkpoint=state.trust_checkpoint)
    fig = doc["figures"]
    return {"_summary": f"{fig['macs_ratio']:.0%} of the MACs, {fig['params_ratio']:.0%} of the params"
                        + (f", {fig['speed']}" if fig.get("speedup") else ""),
            "checkpoint": doc["checkpoint"]}


def _adopt_prune(state: RunState, folder: Path, result: dict[str, Any]) -> None:
    state.checkpoint = folder / FILES.model
    state.artifacts.append(state.checkpoint)  # benched beside the unpruned one


def _run_quantize(state: RunState, folder: Path) -> dict[str, Any]:
    from edgeseg.export import export
    from edgeseg.recipe import ExportCfg

    q = state.recipe.quantize
    assert q is not None and state.checkpoint is not None
    cfg = ExportCfg(formats=["onnx"], precisions=["fp32", "int8"], calibration=q.calibration,
                    int8_policy=q.int8_policy, qat=q.qat, max_drop=q.max_drop,
                    **({"opset": state.recipe.export.opset, "dynamic": state.recipe.export.dynamic}
                       if state.recipe.export else {}))
    res = export(state.checkpoint, folder, formats=["onnx"], precisions=cfg.precisions, cfg=cfg,
                 trust_checkpoint=state.trust_checkpoint)
    int8 = [a for a in res["artifacts"] if a["precision"] == "int8" and Path(a["path"]).is_file()]
    method = "qat" if q.qat else "mixed" if q.max_drop is not None else "ptq"
    return {"_summary": f"INT8 ({method}): " + ", ".join(f"{Path(a['path']).name} "
                                                        f"{'shipped' if a.get('shipped', True) else 'not shipped'}"
                                                        for a in int8),
            "artifacts": [a["path"] for a in int8], "shipped": [a["path"] for a in int8 if a.get("shipped", True)]}


def _adopt_quantize(state: RunState, folder: Path, result: dict[str, Any]) -> None:
    state.artifacts += [Path(p) for p in result.get("artifacts", [])]
    state.shipped += [Path(p) for p in result.get("shipped", [])]


def _run_export(state: RunState, folder: Path) -> dict[str, Any]:
    from edgeseg.export import export

    cfg = state.recipe.export
    assert cfg is not None and state.checkpoint is not None
    res = export(state.checkpoint, folder, formats=cfg.formats, precisions=cfg.precisions, cfg=cfg,
                 trust_checkpoint=state.trust_checkpoint)
    shipped = [a for a in res["artifacts"] if a.get("shipped", True)]
    # Bench every runnable file, the INT8 the auto policy rejected too: the report then shows
    # what INT8 would have cost on this machine instead of silently leaving it out.
    runnable = [a["path"] for a in res["artifacts"] if Path(a["path"]).is_file()]
    return {"_summary": f"{len(shipped)} artifacts shipped of {len(res['artifacts'])}",
            "artifacts": runnable, "shipped": [a["path"] for a in shipped]}


def _adopt_export(state: RunState, folder: Path, result: dict[str, Any]) -> None:
    state.artifacts += [Path(p) for p in result.get("artifacts", []) if artifact_kind(p) not in (None, "checkpoint")]
    state.shipped += [Path(p) for p in result.get("shipped", [])]


def _run_bench(state: RunState, folder: Path) -> dict[str, Any]:
    from edgeseg.bench import benchmark

    cfg = state.recipe.bench
    assert cfg is not None
    results = folder / RESULTS
    results.unlink(missing_ok=True)
    rows = benchmark(state.artifacts, out=results, backends=cfg.backends, device=cfg.device, threads=cfg.threads,
                     batch=cfg.batch, cfg=cfg, accuracy=cfg.accuracy, trust_checkpoint=state.trust_checkpoint)
    return {"_summary": f"{len(rows)} result lines in {results}"}


def _adopt_bench(state: RunState, folder: Path, result: dict[str, Any]) -> None:
    state.results = folder / RESULTS


def _run_report(state: RunState, folder: Path) -> dict[str, Any]:
    from edgeseg.report import report

    cfg = state.recipe.report
    assert cfg is not None and state.results is not None
    paths = report([state.results], folder, formats=cfg.formats, title=f"edgeseg: {state.recipe.name}")
    return {"_summary": f"{paths.get('md', folder)}", "paths": {k: str(v) for k, v in paths.items()}}


def _adopt_report(state: RunState, folder: Path, result: dict[str, Any]) -> None:
    state.reports = {k: Path(v) for k, v in (result.get("paths") or {}).items() if k in ("md", "html")}


def _section(name: str) -> Callable[[Recipe], Any]:
    """The recipe section a stage is configured by (named as the stage)."""
    return lambda recipe: getattr(recipe, name).model_dump(mode="json")


# The chain, in order. Prune reads state.checkpoint and replaces it with its own output, which quantize
# and export then start from.
STAGES: list[Stage] = [
    Stage(TRAIN, enabled=lambda r: True, config=_train_config, inputs=lambda s: [],
          outputs=lambda folder: [folder / FILES.model], run=_run_train, adopt=_adopt_train, reads_data=True),
    Stage(PRUNE, enabled=lambda r: r.prune is not None, config=_section(PRUNE),
          inputs=lambda s: [s.checkpoint], outputs=lambda folder: [folder / FILES.model, folder / FILES.prune_json],
          run=_run_prune, adopt=_adopt_prune, reads_data=True),
    Stage(QUANTIZE, enabled=lambda r: r.quantize is not None, config=_section(QUANTIZE),
          inputs=lambda s: [s.checkpoint], outputs=lambda folder: [folder / FILES.export_json], run=_run_quantize,
          adopt=_adopt_quantize, reads_data=True),
    Stage(EXPORT, enabled=lambda r: r.export is not None, config=_section(EXPORT),
          inputs=lambda s: [s.checkpoint], outputs=lambda folder: [folder / FILES.export_json], run=_run_export,
          adopt=_adopt_export, reads_data=True),
    Stage(BENCH, enabled=lambda r: r.bench is not None, config=_section(BENCH), inputs=lambda s: s.artifacts,
          outputs=lambda folder: [folder / RESULTS], run=_run_bench, adopt=_adopt_bench, reads_data=True),
    Stage(REPORT, enabled=lambda r: r.report is not None and r.bench is not None, config=_section(REPORT),
          inputs=lambda s: [s.results], outputs=lambda folder: [folder / REPORT_FORMATS["md"]], run=_run_report,
          adopt=_adopt_report),
]


def run(recipe: Recipe | str | Path | None, out: str | Path, *, overrides: list[str] | None = None,
        force: bool = False, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Run every stage the recipe enables (:data:`STAGES`: train (+ eval), prune, quantize, export, bench,
    report).

    ``trust_checkpoint``: the run folder's checkpoints may be unpickled fully (files an earlier edgeseg
    wrote there; see :func:`edgeseg.artifacts.checkpoint.read_checkpoint`).

    Returns ``{"stages": {name: {status, summary, folder}}, "out": ..., "headline": ..., "report": ...}``:
    ``headline`` is the fastest measured artifact (shipped ones first) with its latency and accuracy,
    ``report`` the report files by format. ``out`` is locked while the run works in it.
    """
    from edgeseg.artifacts.outputs import folder_lock
    from edgeseg.data.fingerprint import dataset_fingerprint

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    _check_sections(recipe)
    with folder_lock(out):  # two runs into one folder would mix their stages
        state = RunState(recipe=recipe, out=Path(out), trust_checkpoint=trust_checkpoint, force=force,
                         data_files=dataset_fingerprint(recipe.data))
        log: dict[str, Any] = {}
        for stage in STAGES:
            if stage.enabled(recipe):
                _run_stage(stage, state, log)
        summary = {"recipe": recipe.name, "out": str(state.out), "stages": log,
                   "headline": headline(state.results, shipped=state.shipped),
                   "report": {k: str(p) for k, p in state.reports.items() if p.exists()}}
        atomic_write_json(state.out / RUN_JSON, summary)
    return summary


def _check_sections(recipe: Recipe) -> None:
    """Refuse before the first stage what a later one would refuse, named by the recipe's own fields (the
    quantize stage hands its section to export, whose check would name ``export.*``)."""
    from edgeseg.export.options import check_int8_method

    if recipe.quantize is not None:
        check_int8_method(recipe.quantize, "quantize.qat", "quantize.max_drop")


def _run_stage(stage: Stage, state: RunState, log: dict[str, Any]) -> None:
    """Run (or skip, when its fingerprint is unchanged) one stage and hand its outputs on."""
    folder = stage_dir(state.out, stage.name)
    config = stage.config(state.recipe)
    if stage.reads_data:  # the data files are an input too: changed masks or deleted images re-run it
        config = {"config": config, "data_files": state.data_files}
    fingerprint = _fingerprint(config, stage.inputs(state))
    result = _stage(stage.name, folder, fingerprint, stage.outputs(folder), state,
                    lambda: stage.run(state, folder), log)
    stage.adopt(state, folder, result)


def headline(results_file: Path | None, shipped: list[Path] | None = None) -> dict[str, Any]:
    """The numbers a run is for: the fastest measured artifact (shipped ones first), its latency and its
    task's headline accuracy (``metric`` names it: mIoU, mask AP)."""
    if results_file is None or not results_file.exists():
        return {}
    from edgeseg.bench.rows import load_rows
    from edgeseg.tasks import get_task

    rows = [r for r in load_rows([results_file]) if (r.get("latency") or {}).get("p50_ms") is not None]
    if not rows:
        return {}
    shipped_set = {str(Path(p).resolve()) for p in shipped or []}

    def key(r: dict[str, Any]) -> tuple[bool, float]:
        is_shipped = not shipped_set or str(Path(r["artifact"]["path"]).resolve()) in shipped_set
        return (not is_shipped, r["latency"]["p50_ms"])

    best = min(rows, key=key)
    acc = best.get("accuracy") or {}
    head = get_task((best.get("model") or {}).get("task", "semantic")).headline
    return {"artifact": best["artifact"]["path"], "backend": best["backend"], "threads": best["threads"],
            "batch": best["batch"], "p50_ms": best["latency"]["p50_ms"], "noisy": bool(best.get("noisy")),
            "metric": head.label, "score": acc.get(head.key), "num_images": acc.get("num_images"),
            "split": acc.get("split")}
