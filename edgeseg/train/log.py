"""``train_log.csv``: one row per epoch, columns common to every task plus the task's validation metrics."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from edgeseg.artifacts import atomic_write_text
from edgeseg.tasks import Task

BASE_LOG_FIELDS = ["epoch", "step", "lr", "train_loss", "images_per_s", "epoch_s"]


def log_fields(task: Task) -> list[str]:
    """train_log.csv columns: the common ones, then ``val_<metric>`` per column of the task."""
    return BASE_LOG_FIELDS + [f"val_{c.key}" for c in task.columns]


class CsvLog:
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


__all__ = ["BASE_LOG_FIELDS", "CsvLog", "log_fields"]
