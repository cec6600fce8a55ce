"""The training loop: one code path for CPU, CUDA (AMP) and DDP under torchrun.

:func:`train` runs the steps below, each a function with one job (set up, resume, start, train
one epoch, validate, checkpoint, finish) over a :class:`TrainRun`; :mod:`edgeseg.train.resume` holds
what ``--resume`` decides. Run-folder contents: ``model.pt`` (best validation headline metric of the task: mIoU or mask AP),
``last.pt`` (full training state, for ``--resume``), ``train_log.csv``, ``metrics.json`` (validation
metrics of ``model.pt`` at native resolution), ``recipe.yaml`` and ``train.json`` (provenance). The
model's task (:mod:`edgeseg.tasks`) gives the datasets, collation, loss and metric.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from edgeseg.catalog import FILES
from edgeseg.artifacts import atomic_write_json, atomic_write_text, provenance
from edgeseg.artifacts.checkpoint import save_checkpoint, unwrap
from edgeseg.errors import UserError
from edgeseg.recipe import Recipe, RecipeError, TrainCfg
from edgeseg.tasks import Task, by_name, get_task
from edgeseg.train import budget
from edgeseg.train import distributed as dist_utils
from edgeseg.train.class_weights import ClassWeights, compute_class_weights
from edgeseg.train.log import CsvLog, log_fields
from edgeseg.train.losses import criterion_for
from edgeseg.train.meta import check_image_size, data_summary, meta_for
from edgeseg.train.resume import resume_or_note, say_where_on_interrupt


class TrainingDiverged(UserError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU runs are then reproducible)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(cfg: TrainCfg) -> torch.device:
    """``auto`` takes CUDA when present; with DDP each rank takes its LOCAL_RANK GPU."""
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RecipeError("train.device: 'cuda' requested but torch sees no CUDA GPU")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def make_optimizer(model: nn.Module, cfg: TrainCfg) -> torch.optim.Optimizer:
    """AdamW or SGD; no weight decay on norms and biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainCfg, steps_per_epoch: int,
                   clock: budget.Clock | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to 1% of the base rate, stepped per iteration; with a ``clock``
    (``train.time_budget``) laid over the share of the time spent instead of over the steps."""
    cosine = cfg.scheduler == "cosine"
    if clock is not None:
        share = budget.warmup_share(cfg)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _step: budget.lr_factor(clock.fraction(), share, cosine))
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(cfg.warmup_epochs * steps_per_epoch) / total
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: budget.lr_factor(step / total, warm, cosine))


def _validate(model: nn.Module, meta: Any, val_set: Any, device: torch.device, task: Task) -> dict[str, Any]:
    from edgeseg.evaluate import dataset_samples, evaluate_arrays
    from edgeseg.runtime.torch_rt import TorchBackend

    net = unwrap(model)
    was_training = net.training
    net.eval()
    backend = TorchBackend.from_model(net, meta, device=str(device))
    result = evaluate_arrays(backend, dataset_samples(val_set), num_classes=meta.num_classes,
                             ignore_index=meta.ignore_index, stride=meta.stride, class_names=meta.classes,
                             total=len(val_set), description="validate", task=task)
    net.train(was_training)
    return result


def training_class_weights(recipe: Recipe, train_set: Any) -> ClassWeights | None:
    """``train.class_weights`` resolved once from the training split's masks (None when not set)."""
    spec = recipe.train.class_weights
    if spec is None:
        return None
    masks = (mask for _, mask in getattr(train_set, "samples", []))
    return compute_class_weights(spec, masks, num_classes=recipe.model.num_classes,
                                 ignore_index=recipe.data.ignore_index)


def _with_weights(recipe: Recipe, weights: ClassWeights | None) -> Recipe:
    """The recipe the loss is built from: ``train.class_weights`` as the resolved numbers."""
    if weights is None:
        return recipe
    resolved = recipe.model_copy(deep=True)
    resolved.train.class_weights = weights.weights
    return resolved


@dataclass
class TrainRun:
    """What one training run holds between its steps (set up once, then updated epoch by epoch).

    Attributes:
        extras: Fields every checkpoint and train.json carry besides the model (``data`` summaries,
            resolved ``class_weights``).
        best, best_metrics: The best validation headline metric so far and its metrics (model.pt's).
        resumed: What ``--resume`` continued (``from_epoch``; ``extended`` when train.epochs grew).
        clock: The ``train.time_budget`` clock (None: the run lasts ``train.epochs``).
        epochs_done: Epochs trained so far (the last one partial when the time ran out in it).
    """

    recipe: Recipe
    out: Path
    ctx: Any
    device: torch.device
    task: Task
    train_set: Any
    val_set: Any
    model: nn.Module
    meta: Any
    criterion: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: Any
    loader_for_epoch: Callable[[int], Any]
    steps_per_epoch: int
    weights: ClassWeights | None
    extras: dict[str, Any]
    extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    start_epoch: int = 0
    best: float = -1.0
    best_metrics: dict[str, Any] = field(default_factory=dict)
    resumed: dict[str, Any] = field(default_factory=dict)
    log: CsvLog | None = None
    clock: budget.Clock | None = None
    epochs_done: int = 0

    @property
    def cfg(self) -> TrainCfg:
        return self.recipe.train

    @property
    def use_amp(self) -> bool:
        return self.cfg.amp and self.device.type == "cuda"


def set_up(recipe: Recipe, out: Path, model: nn.Module | None = None,
           extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> TrainRun:
    """Device, seeds, datasets, model, loss, optimizer, schedule; checks the recipe against the built
    model. Writes nothing, so a refused recipe leaves no trace."""
    from edgeseg.models import create_model, get_model_info

    cfg = recipe.train
    ctx = dist_utils.setup(cfg.device)
    device = pick_device(cfg) if ctx.world_size == 1 else ctx.device
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + ctx.rank)

    task = get_task(get_model_info(recipe.model.name))
    train_set = task.build_dataset(recipe.data, "train", in_channels=recipe.model.in_channels, train=True,
                                   num_classes=recipe.model.num_classes)
    val_set = task.build_dataset(recipe.data, "val", in_channels=recipe.model.in_channels, train=False,
                                 num_classes=recipe.model.num_classes)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    if model is None:
        model = create_model(recipe.model.name, num_classes=recipe.model.num_classes,
                             in_channels=recipe.model.in_channels, **recipe.model.args)
    model = model.to(device)
    meta = meta_for(model, recipe)
    check_image_size(recipe, meta.stride)
    weights = training_class_weights(recipe, train_set) if task.supports_class_weights else None
    criterion = criterion_for(task, _with_weights(recipe, weights), model).to(device)
    extras: dict[str, Any] = {"data": {"train": data_summary(recipe, train_set, "train"),
                                       "val": data_summary(recipe, val_set, "val")}}
    if weights is not None:
        extras["class_weights"] = weights.to_dict()
    opt = make_optimizer(model, cfg)
    loader_for_epoch = dist_utils.loader_factory(train_set, cfg.batch_size, recipe.data.workers, cfg.seed, ctx,
                                                 collate_fn=task.collate())
    steps_per_epoch = len(loader_for_epoch(0))
    clock = budget.Clock(cfg.time_budget_s) if cfg.time_budget_s else None
    sched = make_scheduler(opt, cfg, steps_per_epoch, clock)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
    return TrainRun(recipe=recipe, out=out, ctx=ctx, device=device, task=task, train_set=train_set, val_set=val_set,
                    model=model, meta=meta, criterion=criterion, opt=opt, sched=sched, scaler=scaler,
                    loader_for_epoch=loader_for_epoch, steps_per_epoch=steps_per_epoch, weights=weights,
                    extras=extras, extra_loss=extra_loss, clock=clock)


def start(run: TrainRun, resume: bool) -> None:
    """Wrap the model for DDP; rank 0 writes recipe.yaml, opens the log and says the data decisions."""
    ctx = run.ctx
    if ctx.is_main and run.extras["data"]["train"].get("note"):
        print(f"data: {run.extras['data']['train']['note']}")  # once per run, for every split (decided once)
    run.model = ctx.wrap(run.model)
    if not ctx.is_main:
        return
    run.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.out / "recipe.yaml", yaml.safe_dump(run.recipe.to_dict(), sort_keys=False))
    run.log = CsvLog(run.out / FILES.train_log, resume=resume, fields=log_fields(run.task))
    if run.weights is not None:
        pairs = ", ".join(f"{n} {w:.3f}" for n, w in zip(run.meta.classes, run.weights.weights))
        print(f"class weights ({run.weights.method}): {pairs}")


def train_epoch(run: TrainRun, epoch: int, on_step: Callable[[float, float], None]) -> dict[str, Any]:
    """One pass over the training split; returns the epoch's log row. ``on_step(loss, images_per_s)``
    follows each step."""
    cfg, ctx, model, task = run.cfg, run.ctx, run.model, run.task
    output_names = tuple(unwrap(model).output_names)
    takes_targets = getattr(unwrap(model), "takes_targets", False)  # two-stage: returns its loss inputs
    # Re-seeding per epoch makes the data order and augmentation of epoch e independent of earlier
    # epochs, so a resumed run repeats an uninterrupted one exactly.
    torch.manual_seed(cfg.seed * 100_003 + epoch * 1009 + ctx.rank)
    model.train()
    t0, seen, loss_sum = time.perf_counter(), 0, 0.0
    for images, targets in run.loader_for_epoch(epoch):
        images, targets = images.to(run.device, non_blocking=True), task.targets_to(targets, run.device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=run.use_amp):
            raw = model(images, targets) if takes_targets else model(images)
            outputs = raw if takes_targets else by_name(output_names, raw, task.training_outputs)
        loss, _parts = run.criterion(outputs, targets)
        if run.extra_loss is not None:
            loss = loss + run.extra_loss(images, raw)
        if not ctx.all_finite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at epoch {epoch + 1}; stopped. The last good checkpoint "
                f"is {run.out / 'last.pt'} (try a lower train.lr or train.grad_clip)")
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if cfg.grad_clip:
            run.scaler.unscale_(run.opt)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        run.scaler.step(run.opt)
        run.scaler.update()
        if run.clock is not None:  # train.time_budget: the schedule and the stop read this time
            run.clock.tick(ctx.max_of)
        run.sched.step()
        seen += images.shape[0]
        loss_sum += loss.item() * images.shape[0]
        on_step(loss.item(), seen * ctx.world_size / (time.perf_counter() - t0))
        if run.clock is not None and run.clock.over():  # train.time_budget spent: end mid-epoch
            break
    epoch_s = time.perf_counter() - t0
    return {"epoch": epoch + 1, "step": (epoch + 1) * run.steps_per_epoch, "lr": f"{run.sched.get_last_lr()[0]:.6g}",
            "train_loss": f"{loss_sum / max(1, seen):.5f}", "images_per_s": f"{seen * ctx.world_size / epoch_s:.2f}",
            "epoch_s": f"{epoch_s:.2f}"}


def validate(run: TrainRun, epoch: int, row: dict[str, Any]) -> float:
    """Validate (rank 0), add the metrics to ``row``, save model.pt when the headline metric improved;
    returns the epoch's headline score."""
    task = run.task
    val = _validate(run.model, run.meta, run.val_set, run.device, task)
    row.update({f"val_{c.key}": f"{val[c.key]:.5f}" for c in task.columns if c.key in val})
    score = float(val[task.headline.key])
    if score > run.best or not run.best_metrics:  # an all-NaN/-1 first epoch still gives a model.pt
        run.best, run.best_metrics = score, val
        save_checkpoint(run.out / FILES.model, run.model, run.meta, epoch=epoch, metrics=val, best_metric=run.best,
                        **run.extras)
    return score


def checkpoint(run: TrainRun, epoch: int, row: dict[str, Any]) -> None:
    """Rank 0: append the epoch's log row and write last.pt (the full state ``--resume`` continues from)."""
    assert run.log is not None
    run.log.append(row, upto_epoch=epoch + 1 if epoch == run.start_epoch else None)
    save_checkpoint(run.out / FILES.last, run.model, run.meta, epoch=epoch, best_metric=run.best,
                    best_metrics=run.best_metrics, optimizer=run.opt.state_dict(), scheduler=run.sched.state_dict(),
                    scaler=run.scaler.state_dict(), metrics=run.best_metrics, **run.extras,
                    **({"time_spent_s": run.clock.spent()} if run.clock is not None else {}))


def finish(run: TrainRun, train_s: float) -> dict[str, Any]:
    """Rank 0 writes metrics.json and train.json; every rank leaves the process group. Returns the
    validation metrics of model.pt and the run's figures (empty on other ranks)."""
    result: dict[str, Any] = {}
    if run.ctx.is_main:
        out, headline = run.out, run.task.headline
        metrics = {**run.best_metrics, "task": run.task.name, "split": "val", "checkpoint": str(out / FILES.model)}
        atomic_write_json(out / FILES.metrics_json, metrics)
        epochs = run.cfg.epochs if run.clock is None else run.epochs_done
        figures = {f"best_{headline.key}": run.best, "train_seconds": round(train_s, 1), "epochs": epochs,
                   **budget.figures(run.clock, run.epochs_done),
                   "world_size": run.ctx.world_size, "device": str(run.device),
                   "train_images": len(run.train_set), "val_images": len(run.val_set), **run.extras,
                   **({"resumed": run.resumed} if run.resumed else {})}
        atomic_write_json(out / FILES.train_json, provenance("train", {"recipe": run.recipe.to_dict(),
                                                                    "recipe_hash": run.recipe.hash()}, figures))
        result = {"metrics": metrics, "out": str(out), **figures}
    run.ctx.teardown()
    return result


def epochs_to_train(run: TrainRun) -> Iterator[int]:
    """Epoch indices: up to ``train.epochs``, or while ``train.time_budget`` is not spent."""
    epoch = run.start_epoch
    while (epoch < run.cfg.epochs) if run.clock is None else not run.clock.over():
        yield epoch
        epoch += 1


def run_epochs(run: TrainRun) -> None:
    """Train, validate (every ``eval_every`` epochs and after the last) and checkpoint epoch by epoch."""
    from edgeseg.progress import line_progress, make_progress

    cfg, ctx, headline = run.cfg, run.ctx, run.task.headline
    of = f"/{cfg.epochs}" if run.clock is None else ""
    total = (cfg.epochs - run.start_epoch) * run.steps_per_epoch if run.clock is None else None
    with make_progress() as progress, say_where_on_interrupt(run.out, cfg.epochs, ctx.is_main):
        bar = progress.add_task("train", total=total, rate="", info="")
        for epoch in epochs_to_train(run):
            def on_step(loss: float, rate: float, epoch: int = epoch) -> None:
                progress.update(bar, advance=1, rate=f"{rate:.1f} img/s", info=f"epoch {epoch + 1}{of} loss {loss:.4f}")

            if run.clock is not None:
                run.clock.start()
            row = train_epoch(run, epoch, on_step)
            if run.clock is not None:
                run.clock.stop()
            run.epochs_done = epoch + 1
            last = epoch + 1 == cfg.epochs if run.clock is None else run.clock.over()
            if ctx.is_main and ((epoch + 1) % cfg.eval_every == 0 or last):
                score = validate(run, epoch, row)
                progress.update(bar, info=f"epoch {epoch + 1}{of} val {headline.label} {score:.4f} (best {run.best:.4f})")
            if ctx.is_main:
                checkpoint(run, epoch, row)
                val = row.get(f"val_{headline.key}")
                line_progress(f"epoch {epoch + 1}{of}: loss {row['train_loss']}"
                              + (f", val {headline.label} {val}" if val is not None else "")
                              + f" ({float(row['epoch_s']):.1f} s)")
            ctx.barrier()


def train(recipe: Recipe, out: str | Path, *, resume: bool = False, trust_checkpoint: bool = False,
          model: nn.Module | None = None,
          extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
          validate_start: bool = False) -> dict[str, Any]:
    """Train ``recipe``'s model into ``out``; returns the final validation metrics and paths.

    Under ``torchrun`` (WORLD_SIZE > 1) the same call trains with DDP: gloo on CPU, nccl on CUDA;
    rank 0 validates and writes every file. Steps: :func:`set_up`, :func:`resume_or_note`,
    :func:`start`, :func:`run_epochs` (per epoch :func:`train_epoch`, :func:`validate`,
    :func:`checkpoint`) and :func:`finish`. With ``train.time_budget`` the epochs run until the time
    is spent (:mod:`edgeseg.train.budget`).

    Args:
        recipe: Model, data and training settings.
        out: Run folder.
        resume: Continue from ``out/last.pt``.
        trust_checkpoint: Unpickle ``out/last.pt`` fully (one an earlier edgeseg wrote; off: safe load).
        model: Fine-tune this model (e.g. a pruned one, keeping its weights) instead of building
            ``recipe.model`` from scratch; it must carry ``config`` like registry models do.
        extra_loss: ``(images, logits) -> loss`` added to the recipe's loss (e.g. distillation).
        validate_start: Validate ``model`` before the first epoch, as a candidate for model.pt like any
            epoch (fine-tuning that never beats its starting point then keeps it; ``start_score`` in
            the result). Ignored on resume.
    """
    from edgeseg.progress import line_progress

    out = Path(out)
    run = set_up(recipe, out, model, extra_loss)
    done = resume_or_note(run, resume, trust_checkpoint)
    if done is not None:
        return done
    start(run, resume)
    start_score = None
    if validate_start and run.start_epoch == 0:
        if run.ctx.is_main:
            start_score = validate(run, -1, {})
            line_progress(f"before fine-tuning: val {run.task.headline.label} {start_score:.4f}")
        run.ctx.barrier()
    t_start = time.perf_counter()
    run_epochs(run)
    result = finish(run, time.perf_counter() - t_start)
    return result if start_score is None else {**result, "start_score": start_score}
