"""`edgeseg optimize`: the most accurate model of a search space that fits a latency budget on a target.

Steps: the space (:mod:`~edgeseg.optimize.space`), latency first (:mod:`~edgeseg.optimize.latency`:
every architecture timed before any training; over-budget ones never train), accuracy second
(:mod:`~edgeseg.optimize.study`: an Optuna study of multi-fidelity trainings, resumable and shared
through its storage), then the output (:mod:`~edgeseg.optimize.output`): trials.jsonl, the plot, the
winner trained at full length, exported, benched and reported, and optimize.json with one summary line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg import catalog
from edgeseg.optimize.space import Candidate, OptimizeError, own_candidate, precisions_for, search_space

F = catalog.OPTIMIZE_FILES
__all__ = ["OptimizeError", "optimize"]


@dataclass
class Timed:
    """The space with its latency: per candidate its forms' p50 (ms) and, under the budget, the form
    deployed (the first precision of optimize.precisions that fits: FP32 or FP16 before INT8)."""

    space: list[Candidate]
    precisions: list[str]
    p50: dict[str, float]
    where: str
    figures: dict[str, dict[str, Any]]  # file name -> params, gmacs
    here: bool = True  # timed on this machine (not from a device's lines)
    suffix: str = ".onnx"  # the target's file kind (catalog.OPTIMIZE_SUFFIXES)

    def form(self, c: Candidate, precision: str) -> str:
        return c.form(precision, self.suffix)

    def forms(self, c: Candidate) -> dict[str, float]:
        return {p: self.p50[self.form(c, p)] for p in self.precisions}

    def deployed(self, c: Candidate, budget_ms: float) -> str | None:
        return next((p for p in self.precisions if self.p50[self.form(c, p)] <= budget_ms), None)

    def fastest(self) -> tuple[str, float]:
        name = min(self.p50, key=self.p50.__getitem__)
        return name.removesuffix(self.suffix), self.p50[name]


def _latency(recipe: Any, out: Path, backend: str, threads: int, plan_only: bool, device_file: Path | None,
             say: Any) -> tuple[Timed | None, dict[str, Path], dict[str, Any]]:
    """Build and time every candidate (or read the device's lines); returns the timings (None with
    ``plan_only``), each candidate's untrained checkpoint and the plan."""
    from edgeseg.optimize import latency

    cfg = recipe.optimize
    space = search_space(recipe)
    precisions, suffix = precisions_for(cfg, backend), catalog.OPTIMIZE_SUFFIXES[backend]
    latency.check_plan_backend(out, backend)
    if backend == "tensorrt" and not plan_only and device_file is None:
        from edgeseg.optimize.trt_target import require_tensorrt

        require_tensorrt()  # before anything is built
    if backend == "executorch":
        from edgeseg.optimize.pte_target import require_executorch

        require_executorch()
    if device_file is not None:
        plan = latency.read_plan(out)
        space = [c for c in space if c.id in {d["id"] for d in plan["candidates"]}] or space
        precisions = list(plan["precisions"])  # the forms the device timed
    say(f"{len(space)} architectures x {len(precisions)} precisions: building and exporting (untrained)")
    ckpts = {c.id: latency.build_candidate(c, recipe, out, precisions, cfg.seed, backend) for c in space}
    if device_file is None:
        plan = latency.write_plan(out, space, precisions, backend, threads)
    if plan_only:
        return None, ckpts, plan
    if device_file is not None:
        return Timed(space, precisions, latency.device_latency(device_file, plan, out / F.plan), str(device_file),
                     latency.model_figures(device_file), here=False, suffix=suffix), ckpts, plan
    p50 = latency.measure_here(out, plan, recipe.bench, say, cfg.latency_rounds)
    return Timed(space, precisions, p50, f"{backend} here, {threads} threads", latency.model_figures(out / F.latency),
                 suffix=suffix), ckpts, plan


def _records(timed: Timed, budget_ms: float, recipe: Any) -> dict[str, dict[str, Any]]:
    """Per feasible candidate what its trial records: architecture, latency per form, deployed form."""
    records = {}
    for c in timed.space:
        form = timed.deployed(c, budget_ms)
        if form is not None:
            records[c.id] = {"architecture": c.to_dict(), **timed.figures.get(timed.form(c, timed.precisions[0]), {}),
                             "latency_ms_by_precision": timed.forms(c),
                             "precision": form, "latency_ms": timed.p50[timed.form(c, form)], "budget_ms": budget_ms}
    if not records:
        name, ms = timed.fastest()
        raise OptimizeError(f"--budget {budget_ms:.4g}ms: no candidate of the search space is that fast on "
                            f"{timed.where}; the fastest is {name} at {ms:.2f} ms (raise --budget, or add smaller "
                            "optimize.widths / larger optimize.prune_ratios)")
    return records


def _with_space(recipe: Any) -> Any:
    """The recipe with an ``optimize:`` section (the task's default space when it has none)."""
    from edgeseg.recipe import OptimizeCfg

    return recipe if recipe.optimize is not None else recipe.model_copy(update={"optimize": OptimizeCfg()})


def with_max_drop(recipe: Any, max_drop: float | None, backend: str) -> Any:
    """``--max-drop`` as the winner's ``export.max_drop`` (also given by the recipe or ``--set``). Mixed
    precision is timed on the winner's final file, not before training: which layers stay float depends on
    the trained weights. Refused on targets whose INT8 is not ONNX Runtime's QDQ file."""
    from edgeseg.recipe import ExportCfg

    given = "--max-drop" if max_drop is not None else "export.max_drop"
    max_drop = max_drop if max_drop is not None else (recipe.export.max_drop if recipe.export else None)
    if max_drop is None:
        return recipe
    if not max_drop >= 0:
        raise OptimizeError(f"{given} {max_drop:g}: expected the most validation points INT8 may lose, >= 0")
    if backend != "onnxruntime":
        own = "a TensorRT Q/DQ engine" if backend == "tensorrt" else "an XNNPACK PT2E program"
        raise OptimizeError(f"{given}: mixed precision is an ONNX Runtime INT8 form (a measured float fallback); "
                            f"the {backend} target ships its own INT8 ({own}); drop it, or use --backend onnxruntime")
    export = (recipe.export or ExportCfg()).model_copy(update={"max_drop": float(max_drop)})
    return recipe.model_copy(update={"export": export})


def relative_budget(timed: Timed, own: Candidate | None, ratio: float, say: Any = print) -> float:
    """``--budget 0.5x``: that fraction of the recipe's own model's latency in the target's first precision
    (FP32; FP16 on TensorRT), timed in the same rounds as every candidate."""
    if own is None:
        raise OptimizeError(f"--budget {ratio:g}x: a budget relative to the recipe's own model needs that model in "
                            "the search space (optimize.models with it, widths with 1, prune_ratios with 0, "
                            "image_sizes with data.image_size); or give milliseconds, e.g. --budget 4ms")
    ref = timed.p50[timed.form(own, timed.precisions[0])]
    say(f"budget {ratio:g}x the recipe's own {own.id} ({ref:.2f} ms {timed.precisions[0].upper()}) = "
        f"{ratio * ref:.2f} ms")
    return ratio * ref


def _proxy_seconds(cfg: Any, time_s: float | None, feasible: int) -> float:
    """The first fidelity's training time: optimize.proxy_time, else a share of ``--time`` such that
    successive halving's fidelities (about ``feasible x rungs`` proxy times) fit in it, else a minute."""
    from edgeseg.recipe import parse_duration

    if cfg.proxy_time is not None:
        return parse_duration(cfg.proxy_time, "optimize.proxy_time")
    if time_s is not None:
        return max(1.0, 0.8 * time_s / (feasible * cfg.rungs))
    return 60.0


def optimize(recipe: Any, out: str | Path, *, budget_ms: float | None = None, budget_ratio: float | None = None,
             time_s: float | None = None,
             backend: str = "onnxruntime", threads: int = 2, plan: bool = False,
             device_latency: str | Path | None = None, storage: str | None = None,
             overrides: list[str] | None = None, max_drop: float | None = None,
             say: Any = print) -> dict[str, Any]:
    """Find the most accurate candidate of ``recipe``'s search space whose latency fits ``budget_ms``.

    Args:
        recipe: Recipe (object or YAML path); its ``optimize:`` section is the space (defaults otherwise).
        out: Output folder (candidates, latency.jsonl, study.db, trials.jsonl, optimize.png, winner/, ...).
        budget_ms: Latency budget (p50, batch 1) of the deployed form; not needed with ``plan``.
        budget_ratio: Instead of ``budget_ms``: a fraction of the recipe's own model's latency on the target
            (``--budget 0.5x``), timed in the same rounds as the candidates; the winner's final file is
            judged against it in a paired measurement.
        time_s: Wall time of the trials (no new trial starts after it; ``--time``).
        backend: Target runtime (``catalog.OPTIMIZE_BACKENDS``).
        threads: Intra-op threads the latency is measured with.
        plan: Only write the candidate files, plan.json and run_on_device.sh (another device times them).
        device_latency: The device runner's JSON lines for the plan in ``out``: used instead of local timing.
        storage: Optuna storage URL (default: SQLite ``out/study.db``); several processes may share one.
        overrides: ``--set`` overrides of the recipe.
        max_drop: ``--max-drop``: an INT8 winner ships in mixed precision within this many points.

    Returns:
        The optimize.json document (``summary``: one line).
    """
    from edgeseg.artifacts import atomic_write_json
    from edgeseg.artifacts.outputs import check_output_folder
    from edgeseg.recipe import Recipe, load_recipe

    out = check_output_folder(out)
    backend = catalog.canonical_backend(backend) or backend  # trt, ort
    if backend not in catalog.OPTIMIZE_BACKENDS:
        raise OptimizeError(f"--backend {backend!r}: not an optimize target; expected one of "
                            f"{', '.join(catalog.OPTIMIZE_BACKENDS)}")
    if (budget_ms is None) == (budget_ratio is None) and not plan:
        raise OptimizeError("--budget: required once, in milliseconds (e.g. --budget 4ms) or as a fraction of the "
                            "recipe's own model's latency (e.g. --budget 0.5x), except with --plan")
    recipe = with_max_drop(_with_space(recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides)),
                           max_drop, backend)
    out.mkdir(parents=True, exist_ok=True)
    timed, ckpts, plan_doc = _latency(recipe, out, backend, threads, plan, Path(device_latency) if device_latency
                                      else None, say)
    if timed is None:
        files = len(plan_doc["files"])
        line = (f"plan: {files} candidate files in {out / F.candidates}; time them on the device with "
                f"{out / F.runner_script}, then pass its lines to --device-latency")
        return {"summary": line, "plan": str(out / F.plan), "script": str(out / F.runner_script)}
    from edgeseg.optimize.run import study_and_winner

    own = own_candidate(recipe, timed.space)
    if budget_ratio is not None:
        budget_ms = relative_budget(timed, own, budget_ratio, say)
    records = _records(timed, budget_ms, recipe)
    doc = study_and_winner(recipe, out, timed, records, ckpts, budget_ms=budget_ms, budget_ratio=budget_ratio,
                           time_s=time_s, backend=backend, threads=threads, storage=storage, say=say, own=own,
                           proxy_s=_proxy_seconds(recipe.optimize, time_s, len(records)))
    atomic_write_json(out / F.summary, doc)
    return doc
