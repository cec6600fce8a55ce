"""Tasks (semantic, instance): one module each, looked up from ``ModelMeta.task`` with :func:`get_task`.

A table, like Ultralytics' ``task_map``: stages ask the task for what differs (outputs, decoding,
loss, collation, metric, parity, rendering, report columns) and never branch on a model name.
Importing this package imports no torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from edgeseg.catalog import TASKS
from edgeseg.errors import UserError
from edgeseg.tasks.base import MetricColumn, OutputsError, ParityBars, Task, by_name, output

_CACHE: dict[str, Task] = {}


class UnknownTaskError(UserError, ValueError):
    """An artifact or model names a task edgeseg does not know."""


def get_task(name: str | Any) -> Task:
    """The :class:`Task` for ``name`` (a task name, or anything with a ``task`` attribute: ModelMeta, ModelInfo)."""
    key = name if isinstance(name, str) else getattr(name, "task", None)
    if key not in TASKS:
        raise UnknownTaskError(f"unknown task {key!r}; expected one of {sorted(TASKS)} (field 'task' of the "
                               "artifact's metadata)")
    if key not in _CACHE:
        module, cls = TASKS[key].split(":")
        _CACHE[key] = getattr(import_module(module), cls)()
    return _CACHE[key]


__all__ = ["MetricColumn", "OutputsError", "ParityBars", "Task", "UnknownTaskError", "by_name",
           "get_task", "output"]
