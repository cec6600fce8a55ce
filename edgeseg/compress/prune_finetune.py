"""Fine-tuning a pruned model with the normal training loop, and the losses pruning borrows from training.

The loop validates the pruned model before its first epoch and after every epoch and keeps the best
of them (``validate_start``): a fine-tuning that hurts leaves the pruned model as the one written.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.catalog import FILES
from edgeseg.compress.prune_config import PruneError
from edgeseg.recipe import PruneCfg, Recipe

LossFn = Callable[[Any, Any], torch.Tensor]


def logit_distillation(teacher: nn.Module, *, weight: float = 0.5, temperature: float = 2.0
                       ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-pixel KL(teacher || student) of temperature-softened logits, times ``weight * T**2`` (Hinton)."""
    import torch.nn.functional as F

    teacher = teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss(images: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        teacher.to(images.device)
        with torch.no_grad():
            target = F.log_softmax(teacher(images).float() / temperature, dim=1)
        student = F.log_softmax(logits.float() / temperature, dim=1)
        kl = F.kl_div(student, target, log_target=True, reduction="none").sum(1).mean()
        return weight * temperature ** 2 * kl

    return loss


def check_task_supports(cfg: PruneCfg, task: Any, model_name: str) -> None:
    """Refuse, before any work, what ``task`` cannot do: logit distillation (``--distill``)."""
    if cfg.distill and not task.supports_distillation:
        raise PruneError(f"--distill (per-pixel logit distillation) is not available for {task.name} models "
                         f"({model_name}); prune without it")
    if cfg.distill and cfg.finetune_epochs == 0:
        raise PruneError("--distill works while fine-tuning: give --finetune-epochs N (N >= 1)")


def taylor_inputs(task: Any, rcp: Recipe, model: nn.Module, count: int) -> tuple[list[tuple[Any, Any]], LossFn]:
    """``count`` augmented training batches and the task's training loss, for Taylor importance.

    The loss is the recipe's without class weights: channels are ranked, not classes balanced.
    """
    from edgeseg.tasks import by_name
    from edgeseg.train.losses import criterion_for

    data = task.build_dataset(rcp.data, "train", in_channels=model.in_channels, train=True,
                              num_classes=model.num_classes)
    loader = torch.utils.data.DataLoader(data, batch_size=rcp.train.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(rcp.train.seed),
                                         collate_fn=task.collate())
    batches = [(x, task.targets_to(t, "cpu")) for x, t in itertools.islice(loader, count)]
    plain = rcp.model_copy(deep=True)
    plain.train.class_weights = None
    criterion = criterion_for(task, plain)
    names = tuple(model.output_names)

    def loss(raw: Any, targets: Any) -> torch.Tensor:
        return criterion(by_name(names, raw, task.training_outputs), targets)[0]

    return batches, loss


def finetune(model: nn.Module, rcp: Recipe, cfg: PruneCfg, folder: Path,
             teacher: nn.Module | None) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """Fine-tune ``model`` into ``folder``; returns the best checkpoint (the pruned model itself when no
    epoch beats it), one row per epoch (validation figures) and what the fine-tuning was."""
    from edgeseg.artifacts.checkpoint import read_checkpoint
    from edgeseg.train.loop import train

    ft = rcp.model_copy(deep=True)
    ft.train.epochs = cfg.finetune_epochs
    ft.train.eval_every = 1
    if cfg.finetune_lr is not None:
        ft.train.lr = cfg.finetune_lr
    extra = (logit_distillation(teacher, weight=cfg.distill_weight, temperature=cfg.distill_temperature)
             if teacher is not None else None)
    print(f"prune: fine-tuning {cfg.finetune_epochs} epochs" + (" with logit distillation" if extra else ""),
          flush=True)
    result = train(ft, folder, model=model, extra_loss=extra, validate_start=True)
    best = folder / FILES.model
    chosen = int(read_checkpoint(best)["epoch"]) + 1  # 0: the pruned model, validated before epoch 1
    info = {"epochs": cfg.finetune_epochs, "lr": ft.train.lr, "distill": cfg.distill,
            "train_seconds": result.get("train_seconds"), "log": str(folder / FILES.train_log),
            "chosen_epoch": chosen}
    return best, epoch_rows(folder / FILES.train_log), info


def epoch_rows(log: Path) -> list[dict[str, Any]]:
    """``train_log.csv`` as candidate rows: ``{"epoch": e, "val": {metric: value}}`` per validated epoch."""
    rows = []
    with log.open(newline="") as f:
        for row in csv.DictReader(f):
            val = {k[4:]: float(v) for k, v in row.items() if k.startswith("val_") and v not in ("", None)}
            if val:
                rows.append({"epoch": int(row["epoch"]), "val": val})
    return rows


__all__ = ["check_task_supports", "epoch_rows", "finetune", "logit_distillation", "taylor_inputs"]
