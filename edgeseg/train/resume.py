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

from edgeseg.catalog import FILES
from edgeseg.artifacts.checkpoint import read_checkpoint, unwrap
from edgeseg.recipe import Recipe, RecipeError, recipe_differences
from edgeseg.train import budget


def check_resumable(last: Path, state: dict[str, Any], recipe: Recipe) -> None:
    """``--resume`` continues only the run that was stored; only ``train.epochs`` / ``train.time_budget``
    may change (a longer run)."""
    stored = state.get("meta", {}).get("recipe") or {}
    diffs = [d for d in recipe_differences(stored, recipe.to_dict())
             if not d.startswith(("train.epochs:", "train.time_budget:"))]
    if diffs:
        raise RecipeError(f"{last}: cannot resume with changed settings ({'; '.join(diffs)}); resume with the "
                          "stored recipe.yaml, or train into a new --out")


def finished_run(out: Path, state: dict[str, Any], epochs: int, label: str, ctx: Any,
                 budget_s: float | None = None) -> dict[str, Any]:
    """``--resume`` of a run that already did all its epochs (or spent its ``budget_s``): report it,
    rewrite nothing."""
    if ctx.is_main:
        best = state.get("best_metric", -1.0)
        done = (f"epoch {state['epoch'] + 1}/{epochs}" if budget_s is None
                else f"its train.time_budget ({state.get('time_spent_s', 0):.1f} of {budget_s:g} s)")
        print(f"{out / 'last.pt'} already finished {done}"
              + (f" (best {label} {best:.4f})" if state.get("best_metrics") else "")
              + f"; nothing to resume (raise {'train.epochs' if budget_s is None else 'train.time_budget'} "
                "to train longer)")
    ctx.teardown()
    if not ctx.is_main:
        return {}
    metrics = json.loads((out / FILES.metrics_json).read_text()) if (out / FILES.metrics_json).exists() else \
        {**state.get("best_metrics", {}), "split": "val", "checkpoint": str(out / FILES.model)}
    figures = json.loads((out / FILES.train_json).read_text()).get("figures", {}) if (out / FILES.train_json).exists() else {}
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


def restore(run: Any, state: dict[str, Any]) -> None:
    """Continue from a ``last.pt`` that :func:`check_resumable` accepted: weights, optimizer, schedule
    (rebuilt for the current train.epochs), scaler, epoch and best metric."""
    cfg = run.cfg
    if run.clock is not None:  # before the schedule is restarted: it reads the clock
        run.clock.offset_s = float(state.get("time_spent_s") or 0.0)
    unwrap(run.model).load_state_dict(state["model_state"])
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    restart_schedule(run.sched, run.opt)
    run.scaler.load_state_dict(state["scaler"])
    run.start_epoch, run.best = state["epoch"] + 1, state["best_metric"]
    run.epochs_done = run.start_epoch
    run.best_metrics = state.get("best_metrics", {})
    before = stored_epochs(state, cfg.epochs)
    run.resumed = {"from_epoch": run.start_epoch}
    if before != cfg.epochs:
        run.resumed["extended"] = {"from_epochs": before, "to_epochs": cfg.epochs}
    if run.ctx.is_main:
        label = run.task.headline.label
        so_far = f"best {label} {run.best:.4f}" if run.best_metrics else "not validated yet"
        longer = f"; train.epochs extended from {before}, schedule rebuilt" if before != cfg.epochs else ""
        at = f"{run.start_epoch + 1}/{cfg.epochs}" if run.clock is None else \
            f"{run.start_epoch + 1} ({run.clock.offset_s:.1f} of {run.clock.budget_s:g} s spent)"
        print(f"resuming {run.out / 'last.pt'} at epoch {at} ({so_far}{longer if run.clock is None else ''})")


def resume_or_note(run: Any, resume: bool, trust_checkpoint: bool) -> dict[str, Any] | None:
    """``--resume``: restore ``out/last.pt`` into ``run`` (a :class:`~edgeseg.train.loop.TrainRun`; None), or return the figures of a run that has
    nothing left to do; without ``--resume`` an earlier run in ``out`` is only mentioned."""
    out, cfg, ctx = run.out, run.cfg, run.ctx
    last = out / FILES.last
    if resume and last.exists():
        state = read_checkpoint(last, trust=trust_checkpoint, resume=True)
        check_resumable(last, state, run.recipe)
        done = budget.finished(state, run.clock.budget_s) if run.clock else state["epoch"] + 1 >= cfg.epochs
        if done:
            return finished_run(out, state, cfg.epochs, run.task.headline.label, ctx,
                                run.clock.budget_s if run.clock else None)
        restore(run, state)
    elif ctx.is_main and last.exists():
        print(f"note: {out} holds an earlier run; starting over (pass --resume to continue it)")
    return None


@contextlib.contextmanager
def say_where_on_interrupt(out: Path, epochs: int, is_main: bool) -> Iterator[None]:
    """Ctrl-C: say which checkpoint survives and the command that continues from it."""
    try:
        yield
    except KeyboardInterrupt:
        if is_main:
            last = out / FILES.last
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


__all__ = ["check_resumable", "finished_run", "restart_schedule", "restore", "resume_or_note", "say_where_on_interrupt",
           "stored_epochs"]
