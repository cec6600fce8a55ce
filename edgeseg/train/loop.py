"""The training loop: one code path for CPU, CUDA (AMP) and DDP under torchrun.

Run-folder contents: ``model.pt`` (best validation headline metric of the task: mIoU or mask AP),
``last.pt`` (full training state, for ``--resume``), ``train_log.csv``, ``metrics.json`` (validation
metrics of ``model.pt`` at native resolution), ``recipe.yaml`` and ``train.json`` (provenance). The
model's task (:mod:`edgeseg.tasks`) gives the datasets, collation, loss and metric.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from edgeseg.artifacts import atomic_write_json, atomic_write_text, provenance
from edgeseg.artifacts.checkpoint import read_checkpoint, save_checkpoint, unwrap
from edgeseg.errors import UserError
from edgeseg.recipe import Recipe, RecipeError, TrainCfg
from edgeseg.train import distributed as dist_utils
from edgeseg.train.class_weights import ClassWeights, compute_class_weights
from edgeseg.tasks import Task, by_name, get_task
from edgeseg.train.losses import criterion_for
from edgeseg.train.meta import meta_for

BASE_LOG_FIELDS = ["epoch", "step", "lr", "train_loss", "images_per_s", "epoch_s"]


def log_fields(task: Task) -> list[str]:
    """train_log.csv columns: the common ones, then ``val_<metric>`` per column of the task."""
    return BASE_LOG_FIELDS + [f"val_{c.key}" for c in task.columns]


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


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainCfg, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to 1% of the base rate, stepped per iteration."""
    total = cfg.epochs * steps_per_epoch
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return 0.01 + 0.99 * step / max(1, warm)
        if cfg.scheduler == "constant":
            return 1.0
        progress = (step - warm) / max(1, total - warm)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


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


def check_image_size(recipe: Recipe, stride: int) -> None:
    """``data.image_size`` must be a multiple of the built model's stride (checked before anything is written)."""
    stride = max(1, int(stride))
    h, w = recipe.data.size_hw
    if h % stride or w % stride:
        def near(v: int) -> str:
            lo, hi = v // stride * stride, -(-v // stride) * stride
            return f"{lo} or {hi}" if lo else str(hi)

        raise RecipeError(f"recipe field data.image_size: {h}x{w} is not a multiple of {recipe.model.name}'s "
                          f"stride {stride} (use {near(h)}" + (f" by {near(w)}" if w != h else "") + ")")


def data_summary(recipe: Recipe, dataset: Any, split: str) -> dict[str, Any]:
    """What was loaded and how (kind, split, images; for semantic masks the encoding chosen), as recorded
    in checkpoints and train.json. Datasets without their own summary (instance data) get the basics."""
    own = getattr(dataset, "summary", None)
    if own:
        return dict(own)
    return {"kind": recipe.data.kind, "split": split, "images": len(getattr(dataset, "samples", dataset))}


def check_resumable(last: Path, state: dict[str, Any], recipe: Recipe) -> None:
    """``--resume`` continues only the run that was stored; only ``train.epochs`` may grow."""
    from edgeseg.recipe import recipe_differences

    stored = state.get("meta", {}).get("recipe") or {}
    diffs = [d for d in recipe_differences(stored, recipe.to_dict()) if not d.startswith("train.epochs:")]
    if diffs:
        raise RecipeError(f"{last}: cannot resume with changed settings ({'; '.join(diffs)}); resume with the "
                          "stored recipe.yaml, or train into a new --out")


def _finished(out: Path, state: dict[str, Any], epochs: int, label: str, ctx: Any) -> dict[str, Any]:
    """``--resume`` of a run that already did all its epochs: report it, rewrite nothing."""
    if ctx.is_main:
        best = state.get("best_metric", -1.0)
        print(f"{out / 'last.pt'} already finished epoch {state['epoch'] + 1}/{epochs}"
              + (f" (best {label} {best:.4f})" if state.get("best_metrics") else "")
              + "; nothing to resume (raise train.epochs to train longer)")
    ctx.teardown()
    if not ctx.is_main:
        return {}
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else \
        {**state.get("best_metrics", {}), "split": "val", "checkpoint": str(out / "model.pt")}
    figures = json.loads((out / "train.json").read_text()).get("figures", {}) if (out / "train.json").exists() else {}
    return {"metrics": metrics, "out": str(out), **figures, "resumed": "already finished"}


def restart_schedule(sched: torch.optim.lr_scheduler.LambdaLR, opt: torch.optim.Optimizer) -> None:
    """Put the learning rate where the (rebuilt) schedule says it is at the restored step.

    The stored scheduler state holds only its step count; the schedule itself is ``make_scheduler``'s,
    built for the current ``train.epochs``. The optimizer state, though, carries the rate of the stored
    run's last step: when ``--resume`` extends ``train.epochs`` that is the old schedule's end, so it is
    replaced here by the new schedule's value (an unchanged run gets the same number back).
    """
    values = [base * fn(sched.last_epoch) for base, fn in zip(sched.base_lrs, sched.lr_lambdas)]
    for group, lr in zip(opt.param_groups, values):
        group["lr"] = lr
    sched._last_lr = values  # what get_last_lr() reports until the next step


@contextlib.contextmanager
def _say_where_on_interrupt(out: Path, epochs: int, is_main: bool) -> Iterator[None]:
    """Ctrl-C: say which checkpoint survives and the command that continues from it."""
    try:
        yield
    except KeyboardInterrupt:
        if is_main:
            last = out / "last.pt"
            if last.exists():
                done = read_checkpoint(last)["epoch"] + 1
                print(f"\ninterrupted: {last} holds epoch {done}/{epochs}; continue with "
                      f"`edgeseg train RECIPE --out {out} --resume` (same recipe and --set options)",
                      file=sys.stderr)
            else:
                print(f"\ninterrupted before the first epoch ended: no checkpoint in {out} yet", file=sys.stderr)
        raise


class _CsvLog:
    """Append-only CSV log; rewritten atomically so a crash never truncates it."""

    def __init__(self, path: Path, resume: bool, fields: list[str]) -> None:
        self.path = path
        self.fields = fields
        self.rows: list[dict[str, Any]] = []
        if resume and path.exists():
            self.rows = list(csv.DictReader(path.open()))

    def append(self, row: dict[str, Any], upto_epoch: int | None = None) -> None:
        if upto_epoch is not None:  # drop rows of epochs being redone after a resume
            self.rows = [r for r in self.rows if int(r["epoch"]) < upto_epoch]
        self.rows.append(row)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


def train(recipe: Recipe, out: str | Path, *, resume: bool = False, trust_checkpoint: bool = False,
          model: nn.Module | None = None,
          extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> dict[str, Any]:
    """Train ``recipe``'s model into ``out``; returns the final validation metrics and paths.

    Under ``torchrun`` (WORLD_SIZE > 1) the same call trains with DDP: gloo on CPU, nccl on CUDA;
    rank 0 validates and writes every file.

    Args:
        recipe: Model, data and training settings.
        out: Run folder.
        resume: Continue from ``out/last.pt``.
        trust_checkpoint: Unpickle ``out/last.pt`` fully (one an earlier edgeseg wrote; off: safe load).
        model: Fine-tune this model (e.g. a pruned one, keeping its weights) instead of building
            ``recipe.model`` from scratch; it must carry ``config`` like registry models do.
        extra_loss: ``(images, logits) -> loss`` added to the recipe's loss (e.g. distillation).
    """
    from edgeseg.models import create_model, get_model_info

    out = Path(out)
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
    headline = task.headline
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    if model is None:
        model = create_model(recipe.model.name, num_classes=recipe.model.num_classes,
                             in_channels=recipe.model.in_channels, **recipe.model.args)
    model = model.to(device)
    meta = meta_for(model, recipe)
    check_image_size(recipe, meta.stride)
    output_names = tuple(model.output_names)
    weights = training_class_weights(recipe, train_set) if task.name == "semantic" else None
    criterion = criterion_for(task, _with_weights(recipe, weights)).to(device)
    data = {"train": data_summary(recipe, train_set, "train"), "val": data_summary(recipe, val_set, "val")}
    extra: dict[str, Any] = {"data": data}
    if weights is not None:
        extra["class_weights"] = weights.to_dict()
    opt = make_optimizer(model, cfg)
    loader_for_epoch = dist_utils.loader_factory(train_set, cfg.batch_size, recipe.data.workers, cfg.seed, ctx,
                                                 collate_fn=task.collate())
    steps_per_epoch = len(loader_for_epoch(0))
    sched = make_scheduler(opt, cfg, steps_per_epoch)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, best, best_metrics = 0, -1.0, {}
    resumed: dict[str, Any] = {}
    if resume and (out / "last.pt").exists():
        state = read_checkpoint(out / "last.pt", trust=trust_checkpoint, resume=True)
        check_resumable(out / "last.pt", state, recipe)
        if state["epoch"] + 1 >= cfg.epochs:
            return _finished(out, state, cfg.epochs, headline.label, ctx)
        unwrap(model).load_state_dict(state["model_state"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        restart_schedule(sched, opt)
        scaler.load_state_dict(state["scaler"])
        start_epoch, best, best_metrics = state["epoch"] + 1, state["best_metric"], state.get("best_metrics", {})
        stored_epochs = int(((state.get("meta") or {}).get("recipe") or {}).get("train", {}).get("epochs", cfg.epochs))
        resumed = {"from_epoch": start_epoch}
        if stored_epochs != cfg.epochs:
            resumed["extended"] = {"from_epochs": stored_epochs, "to_epochs": cfg.epochs}
        if ctx.is_main:
            so_far = f"best {headline.label} {best:.4f}" if best_metrics else "not validated yet"
            longer = f"; train.epochs extended from {stored_epochs}, schedule rebuilt" if "extended" in resumed else ""
            print(f"resuming {out / 'last.pt'} at epoch {start_epoch + 1}/{cfg.epochs} ({so_far}{longer})")
    elif ctx.is_main and (out / "last.pt").exists():
        print(f"note: {out} holds an earlier run; starting over (pass --resume to continue it)")
    if ctx.is_main and data["train"].get("note"):
        print(f"data: {data['train']['note']}")  # once per run, for every split (decided once)

    model = ctx.wrap(model)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    log = _CsvLog(out / "train_log.csv", resume=resume, fields=log_fields(task)) if ctx.is_main else None
    if ctx.is_main and weights is not None:
        pairs = ", ".join(f"{n} {w:.3f}" for n, w in zip(meta.classes, weights.weights))
        print(f"class weights ({weights.method}): {pairs}")
    t_start = time.perf_counter()

    from edgeseg.progress import line_progress, make_progress

    with make_progress() as progress, _say_where_on_interrupt(out, cfg.epochs, ctx.is_main):
        bar = progress.add_task("train", total=(cfg.epochs - start_epoch) * steps_per_epoch, rate="", info="")
        for epoch in range(start_epoch, cfg.epochs):
            # Re-seeding per epoch makes the data order and augmentation of epoch e independent of
            # earlier epochs, so a resumed run repeats an uninterrupted one exactly.
            torch.manual_seed(cfg.seed * 100_003 + epoch * 1009 + ctx.rank)
            model.train()
            t0, seen, loss_sum = time.perf_counter(), 0, 0.0
            for images, targets in loader_for_epoch(epoch):
                images, targets = images.to(device, non_blocking=True), task.targets_to(targets, device)
                with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                    raw = model(images)
                    outputs = by_name(output_names, raw, task.training_outputs)
                loss, _parts = criterion(outputs, targets)
                if extra_loss is not None:
                    loss = loss + extra_loss(images, raw)
                if not ctx.all_finite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss.item()} at epoch {epoch + 1}; stopped. The last good checkpoint "
                        f"is {out / 'last.pt'} (try a lower train.lr or train.grad_clip)")
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                seen += images.shape[0]
                loss_sum += loss.item() * images.shape[0]
                progress.update(bar, advance=1, rate=f"{seen * ctx.world_size / (time.perf_counter() - t0):.1f} img/s",
                                info=f"epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.4f}")
            epoch_s = time.perf_counter() - t0
            row: dict[str, Any] = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch,
                                   "lr": f"{sched.get_last_lr()[0]:.6g}", "train_loss": f"{loss_sum / max(1, seen):.5f}",
                                   "images_per_s": f"{seen * ctx.world_size / epoch_s:.2f}", "epoch_s": f"{epoch_s:.2f}"}
            last_epoch = epoch + 1 == cfg.epochs
            if ctx.is_main and ((epoch + 1) % cfg.eval_every == 0 or last_epoch):
                val = _validate(model, meta, val_set, device, task)
                row.update({f"val_{c.key}": f"{val[c.key]:.5f}" for c in task.columns if c.key in val})
                score = float(val[headline.key])
                if score > best or not best_metrics:  # an all-NaN/-1 first epoch still gives a model.pt
                    best, best_metrics = score, val
                    save_checkpoint(out / "model.pt", model, meta, epoch=epoch, metrics=val, best_metric=best,
                                    **extra)
                progress.update(bar, info=f"epoch {epoch + 1}/{cfg.epochs} val {headline.label} {score:.4f} "
                                          f"(best {best:.4f})")
            if ctx.is_main:
                assert log is not None
                log.append(row, upto_epoch=epoch + 1 if epoch == start_epoch else None)
                save_checkpoint(out / "last.pt", model, meta, epoch=epoch, best_metric=best, best_metrics=best_metrics,
                                optimizer=opt.state_dict(), scheduler=sched.state_dict(), scaler=scaler.state_dict(),
                                metrics=best_metrics, **extra)
                score_text = f", val {headline.label} {row[f'val_{headline.key}']}" if f"val_{headline.key}" in row else ""
                line_progress(f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']}{score_text} ({epoch_s:.1f} s)")
            ctx.barrier()

    result: dict[str, Any] = {}
    if ctx.is_main:
        metrics = {**best_metrics, "task": task.name, "split": "val", "checkpoint": str(out / "model.pt")}
        atomic_write_json(out / "metrics.json", metrics)
        train_s = time.perf_counter() - t_start
        figures = {f"best_{headline.key}": best, "train_seconds": round(train_s, 1), "epochs": cfg.epochs,
                   "world_size": ctx.world_size, "device": str(device),
                   "train_images": len(train_set), "val_images": len(val_set), **extra,
                   **({"resumed": resumed} if resumed else {})}
        atomic_write_json(out / "train.json", provenance("train", {"recipe": recipe.to_dict(),
                                                                    "recipe_hash": recipe.hash()}, figures))
        result = {"metrics": metrics, "out": str(out), **figures}
    ctx.teardown()
    return result
