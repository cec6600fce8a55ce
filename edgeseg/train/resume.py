"""``--resume``: which stored run may continue, how its schedule restarts, what Ctrl-C and a finished run say.

The training loop (:mod:`edgeseg.train.loop`) calls these around its own steps; nothing here trains.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from edgeseg.artifacts.checkpoint import read_checkpoint
from edgeseg.recipe import Recipe, RecipeError, recipe_differences


def check_resumable(last: Path, state: dict[str, Any], recipe: Recipe) -> None:
    """``--resume`` continues only the run that was stored; only ``train.epochs`` may grow."""
    stored = state.get("meta", {}).get("recipe") or {}
    diffs = [d for d in recipe_differences(stored, recipe.to_dict()) if not d.startswith("train.epochs:")]
    if diffs:
        raise RecipeError(f"{last}: cannot resume with changed settings ({'; '.join(diffs)}); resume with the "
                          "stored recipe.yaml, or train into a new --out")


def finished_run(out: Path, state: dict[str, Any], epochs: int, label: str, ctx: Any) -> dict[str, Any]:
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
def say_where_on_interrupt(out: Path, epochs: int, is_main: bool) -> Iterator[None]:
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


def stored_epochs(state: dict[str, Any], default: int) -> int:
    """``train.epochs`` of the recipe stored with a checkpoint (``default`` when it holds none)."""
    return int(((state.get("meta") or {}).get("recipe") or {}).get("train", {}).get("epochs", default))


__all__ = ["check_resumable", "finished_run", "restart_schedule", "say_where_on_interrupt", "stored_epochs"]
