"""Progress bars (rich) with rate and ETA; silent when output is not a terminal or on non-zero ranks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

T = TypeVar("T")
console = Console(stderr=True, soft_wrap=True)  # log lines with paths are not hard-wrapped


def enabled() -> bool:
    """Bars only on an interactive terminal and on rank 0 of a distributed run."""
    return console.is_terminal and os.environ.get("RANK", "0") == "0" and not os.environ.get("EDGESEG_QUIET")


def line_progress(message: str) -> None:
    """One plain line per epoch / stage when no bar is shown (a log file, CI), so a log never looks hung."""
    if not console.is_terminal and os.environ.get("RANK", "0") == "0" and not os.environ.get("EDGESEG_QUIET"):
        print(message, file=sys.stderr, flush=True)


def make_progress() -> Progress:
    """A bar showing done/total, rate, elapsed and ETA, plus a free-text field for live figures."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TaskProgressColumn(), TextColumn("{task.fields[rate]}"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    TextColumn("{task.fields[info]}"), console=console, disable=not enabled(), transient=False)


def track(items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
    """Iterate ``items`` under a progress bar."""
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)  # type: ignore[arg-type]
    with make_progress() as progress:
        task = progress.add_task(description, total=total, rate="", info="")
        for item in items:
            yield item
            progress.advance(task)
            speed = progress.tasks[0].speed
            if speed:
                progress.update(task, rate=f"{speed:.1f} it/s")
