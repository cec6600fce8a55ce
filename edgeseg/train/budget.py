"""``train.time_budget``: a clock the learning-rate schedule and the epoch loop read instead of an epoch count.

The schedule (linear warm-up, then cosine) is a function of the fraction of the budget spent, so it
ends at the low rate exactly when the time is up, whatever the speed of this machine; the loop stops
after the step that spends the budget, validates and writes model.pt as after any last epoch. The
time already spent is stored in ``last.pt``, so ``--resume`` continues the same schedule.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Clock:
    """Training time of one run: the wall time of its epochs' steps (validation and checkpoints are not
    counted, so a fidelity of a study buys the same training on every candidate), from ``offset_s`` (what
    an earlier part of the run spent, when resumed). It runs between :meth:`start` and :meth:`stop`."""

    budget_s: float
    offset_s: float = 0.0
    _started: float | None = field(default=None, repr=False)
    _read: float | None = field(default=None, repr=False)

    def start(self) -> None:
        """Count from now (each epoch's training: validation and checkpoints are not counted)."""
        self._started = time.monotonic()

    def stop(self) -> None:
        if self._started is not None:
            self.offset_s += time.monotonic() - self._started
            self._started = None

    def spent(self) -> float:
        """Seconds spent so far (earlier parts of a resumed run included), read now."""
        running = 0.0 if self._started is None else time.monotonic() - self._started
        return self.offset_s + running

    def tick(self, sync: Callable[[float], float] | None = None) -> None:
        """Read the clock once per step; ``sync`` (the max over DDP ranks) makes every rank read the same
        time, so their learning rates and their decision to stop agree."""
        self._read = sync(self.spent()) if sync is not None else self.spent()

    def fraction(self) -> float:
        """Share of the budget spent at the last :meth:`tick`, 0..1."""
        return min(1.0, (self.offset_s if self._read is None else self._read) / self.budget_s)

    def over(self) -> bool:
        """The budget was spent at the last :meth:`tick`."""
        return self.fraction() >= 1.0


def lr_factor(progress: float, warmup: float, cosine: bool) -> float:
    """Multiplier of the base rate at ``progress`` (0..1 of the run): linear warm-up from 1% over the
    first ``warmup`` share, then cosine decay to 1% (or constant)."""
    import math

    if progress < warmup:
        return 0.01 + 0.99 * progress / warmup
    if not cosine:
        return 1.0
    rest = (progress - warmup) / max(1e-9, 1.0 - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, rest)))


def warmup_share(cfg: Any) -> float:
    """The recipe's warm-up as a share of the run: ``warmup_epochs / epochs`` (at most a half)."""
    return min(0.5, cfg.warmup_epochs / max(1, cfg.epochs))


def finished(state: dict[str, Any], budget_s: float) -> bool:
    """A stored run whose time is spent (a ``last.pt`` of a time-budget run)."""
    return float(state.get("time_spent_s") or 0.0) >= budget_s


def figures(clock: Clock | None, epochs_done: int) -> dict[str, Any]:
    """What train.json records about the budget: the budget, the time used, the epochs done."""
    done = {"epochs_done": epochs_done}
    if clock is None:
        return done
    return {**done, "time_budget_s": clock.budget_s, "time_used_s": round(clock.spent(), 2)}


__all__ = ["Clock", "figures", "finished", "lr_factor", "warmup_share"]
