"""`edgeseg prune`: structured (channel) pruning over Torch-Pruning's dependency graph, then fine-tuning.

The steps, one module each: what to prune (:mod:`prune_config`, the recipe's ``PruneCfg``), which
layers and how (:mod:`prune_graph`), measured steps towards the target (:mod:`prune_steps`),
fine-tuning (:mod:`prune_finetune`) and which candidate is written (:mod:`prune_select`). Everything
is checked and pruned before the output folder is created: a refused request leaves no trace.
"""

from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.catalog import FILES
from edgeseg.compress.prune_config import (PruneConfig, PruneError, ort_cpu_block, parse_latency, prune_config,
                                           resolve_round_to)
from edgeseg.compress.prune_finetune import check_task_supports, finetune, logit_distillation, taylor_inputs
from edgeseg.compress.prune_graph import classifier_layers, kept_layers, make_pruner, output_layers
from edgeseg.compress.prune_select import candidates, check_shippable, figures, speed_phrase
from edgeseg.compress.prune_steps import Probe, onnx_latency_ms, prune_model
from edgeseg.recipe import PruneCfg


@dataclass
class PruneJob:
    """A checked request: the loaded model, its data and how each candidate is measured."""

    checkpoint: Path
    cfg: PruneCfg
    model: nn.Module
    meta: Any
    rcp: Any
    recipe_source: str
    task: Any
    hw: tuple[int, int]
    probe: Probe
    teacher: nn.Module | None
    overrides: list[str]


def prune(checkpoint: str | Path, out: str | Path, cfg: PruneCfg, *, recipe: str | Path | None = None,
          overrides: list[str] | None = None, measure_accuracy: bool = True,
          measure_latency: bool = True, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Prune a checkpoint into ``out`` (model.pt, prune.json), fine-tuning and distilling as ``cfg`` says.

    Args:
        checkpoint: ``model.pt`` written by `edgeseg train` (or an earlier prune).
        out: Output folder; created only once the request is checked and the model pruned.
        cfg: What to prune and how (a recipe ``prune:`` section).
        recipe: Recipe for the data (default: the one stored in the checkpoint).
        overrides: ``--set`` overrides of that recipe (``train.*`` applies to fine-tuning).
        measure_accuracy: Evaluate the start and the pruned model on the whole validation split.
        measure_latency: Time the start and the pruned model on ONNX Runtime here (always on for a latency
            target); off where this machine is not the deployment CPU (e.g. fine-tuning on a GPU box).
        trust_checkpoint: Unpickle ``checkpoint`` fully (only for a file the user made himself).

    Returns:
        The prune.json document: config, steps, candidates, the decision and before/after figures.
    """
    from edgeseg.artifacts.outputs import check_output_folder, folder_lock

    t0 = time.perf_counter()
    check_output_folder(out)
    job = prepare(checkpoint, cfg, recipe, overrides, measure_accuracy, measure_latency, trust_checkpoint)
    taylor, loss_fn = (taylor_inputs(job.task, job.rcp, job.model, cfg.taylor_batches)
                       if cfg.importance == "taylor" else (None, None))
    steps = prune_model(job.model, cfg, job.probe, taylor_batches=taylor, loss_fn=loss_fn,
                        log=lambda m: print(f"prune: {m}", flush=True))
    if len(steps) > 1:
        check_shippable(cfg, steps[-1], steps[0])
    with folder_lock(out):
        return write(job, steps, Path(out), t0, trust_checkpoint)


def prepare(checkpoint: str | Path, cfg: PruneCfg, recipe: str | Path | None, overrides: list[str] | None,
            measure_accuracy: bool, measure_latency: bool, trust_checkpoint: bool) -> PruneJob:
    """Load and check everything a prune needs; writes nothing."""
    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.recipe import checkpoint_recipe
    from edgeseg.tasks import get_task

    ckpt = load_checkpoint(checkpoint, trust=trust_checkpoint)
    rcp, recipe_source = checkpoint_recipe(ckpt, recipe, overrides)
    model, meta = ckpt.model, ckpt.meta
    task = get_task(meta.task)
    check_task_supports(cfg, task, meta.model_name)
    if model.prune_refusal:
        raise PruneError(f"{checkpoint}: {meta.model_name} cannot be pruned: {model.prune_refusal}")
    kept_layers(model, cfg.keep)  # a pattern matching no layer is refused here, before any work
    s = meta.stride
    hw = (-(-rcp.data.size_hw[0] // s) * s, -(-rcp.data.size_hw[1] // s) * s)
    torch.set_num_threads(cfg.threads)
    val_set = (task.build_dataset(rcp.data, "val", in_channels=meta.in_channels, train=False,
                                  num_classes=meta.num_classes) if measure_accuracy else None)
    timed = measure_latency or cfg.mode == "latency"
    probe = Probe(meta=meta, hw=hw,
                  latency=(lambda m: onnx_latency_ms(m, meta, hw, cfg.threads)) if timed else None,
                  accuracy=(lambda m: val_accuracy(m, meta, rcp, val_set, task)) if val_set is not None else None)
    return PruneJob(checkpoint=Path(checkpoint), cfg=cfg, model=model, meta=meta, rcp=rcp,
                    recipe_source=recipe_source, task=task, hw=hw, probe=probe,
                    teacher=copy.deepcopy(model) if cfg.distill else None, overrides=list(overrides or []))


def write(job: PruneJob, steps: list[dict[str, Any]], out: Path, t0: float, trust: bool) -> dict[str, Any]:
    """Write the chosen candidate as ``out/model.pt`` and ``out/prune.json``; returns the document."""
    from edgeseg.artifacts import atomic_output_path, atomic_write_json, file_sha256, provenance

    start, model_pt = steps[0], out / FILES.model
    finetune_info: dict[str, Any] = {}
    epochs: list[dict[str, Any]] = []
    if len(steps) == 1:  # a latency target the start already meets: written unchanged
        with atomic_output_path(model_pt) as tmp:
            shutil.copyfile(job.checkpoint, tmp)
        pruned, after, chosen = None, start, "start"
        decision = (f"target {job.cfg.target_latency_ms:g} ms already met by the start "
                    f"({start['latency_ms']:.2f} ms): not pruned, model.pt is the unchanged start")
    else:
        pruned = steps[-1]
        after, chosen, epochs, finetune_info = _pruned_candidate(job, pruned, model_pt, trust)
        decision = (f"{chosen} written: the most accurate candidate at the target" if epochs
                    else "pruned model written")
    fig = figures(job.task, start, pruned or start, after, decision)
    fig["seconds"] = round(time.perf_counter() - t0, 1)
    inputs = {"checkpoint": str(job.checkpoint), "checkpoint_sha256": file_sha256(job.checkpoint),
              "recipe": job.recipe_source, "overrides": job.overrides, "config": job.cfg.model_dump(mode="json"),
              "round_to": resolve_round_to(job.cfg), "model": job.meta.model_name, "input_size": list(job.hw),
              "threads": job.cfg.threads}
    doc = provenance("prune", inputs, fig)
    doc.update(steps=steps, candidates=candidates(job.cfg, start, pruned, epochs, chosen),
               finetune=finetune_info, checkpoint=str(model_pt))
    atomic_write_json(out / FILES.prune_json, doc)
    return doc


def _pruned_candidate(job: PruneJob, pruned: dict[str, Any], model_pt: Path, trust: bool
                      ) -> tuple[dict[str, Any], str, list[dict[str, Any]], dict[str, Any]]:
    """Fine-tune (when asked) and write the best of the pruned model and its epochs: (row, name, epochs, info)."""
    from edgeseg.artifacts.checkpoint import read_checkpoint, save_checkpoint

    if job.cfg.finetune_epochs > 0:
        best, epochs, info = finetune(job.model, job.rcp, job.cfg, model_pt.parent / "finetune", job.teacher)
        best_val = read_checkpoint(best).get("metrics") or {}
        best.replace(model_pt)
        chosen = f"epoch {info['chosen_epoch']}" if info["chosen_epoch"] else "pruned"
        after = {**pruned, "stage": "fine-tuned" if info["chosen_epoch"] else "pruned",
                 "val": _val_row(best_val, job.task) if info["chosen_epoch"] else pruned.get("val", {})}
        return after, chosen, epochs, info
    state = read_checkpoint(job.checkpoint, trust=trust)
    save_checkpoint(model_pt, job.model, job.meta, **{k: v for k, v in state.items() if k == "epoch"},
                    metrics=pruned.get("val", {}))
    check_reloads(model_pt, job.model, job.meta.in_channels, job.hw)
    return {**pruned, "stage": "pruned"}, "pruned", [], {}


def check_reloads(path: Path, model: nn.Module, in_channels: int, hw: tuple[int, int]) -> None:
    """The written checkpoint rebuilds the pruned shapes from the file alone and computes the same outputs."""
    from edgeseg.artifacts.checkpoint import load_checkpoint

    reloaded = load_checkpoint(path).model
    x = torch.randn(1, in_channels, *hw)
    with torch.no_grad():
        got, want = _as_tuple(reloaded(x)), _as_tuple(model.eval()(x))
    if len(got) != len(want) or not all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(got, want)):
        raise PruneError(f"{path}: the reloaded pruned model differs from the pruned model")


def _as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    """A forward result (one tensor, or a tuple of named outputs) as a tuple of tensors."""
    return (out,) if isinstance(out, torch.Tensor) else tuple(t for t in out if isinstance(t, torch.Tensor))


def _val_row(metrics: dict[str, Any], task: Any) -> dict[str, Any]:
    return {"split": "val", "num_images": metrics.get("num_images"), "task": task.name,
            **{c.key: metrics[c.key] for c in task.columns if c.key in metrics}}


def val_accuracy(model: nn.Module, meta: Any, rcp: Any, val_set: Any, task: Any) -> dict[str, Any]:
    """The task's metrics on the whole split (semantic: mIoU, Dice, pixel accuracy; instance: mask/box AP)."""
    from edgeseg.evaluate import dataset_samples, evaluate_arrays
    from edgeseg.runtime.torch_rt import TorchBackend

    backend = TorchBackend.from_model(model.eval(), meta)
    m = evaluate_arrays(backend, dataset_samples(val_set), num_classes=meta.num_classes,
                        ignore_index=rcp.data.ignore_index, stride=meta.stride, class_names=meta.classes,
                        total=len(val_set), description="validate", task=task)
    return _val_row(m, task)


__all__ = ["Probe", "PruneConfig", "PruneError", "classifier_layers", "logit_distillation", "make_pruner",
           "onnx_latency_ms", "ort_cpu_block", "output_layers", "parse_latency", "prune", "prune_config",
           "prune_model", "speed_phrase"]
