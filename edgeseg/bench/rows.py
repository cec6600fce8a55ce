"""The result-line schema shared by `edgeseg bench`, the standalone runner and `edgeseg report`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgeseg.errors import UserError

SCHEMA = "edgeseg.bench/1"
REQUIRED = ("schema", "artifact", "model", "backend", "device", "threads", "batch", "latency", "machine")


class ResultsError(UserError, ValueError):
    """A results file is missing or has a line that is not an edgeseg result."""


def append_rows(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Append ``rows`` as JSON lines to ``path``; existing lines are never rewritten.

    The lines go out in one ``O_APPEND`` write under an exclusive ``flock``, so processes appending
    to one file at the same time keep every line whole (a read-modify-write would lose lines). A
    file whose last line lacks its newline (a killed writer) gets one first.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, default=str) + "\n" for r in rows).encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the flock
    return path


# Result lines come from other machines and people: a report renders only lines within these limits
# (real lines are ~3 KB, 4 levels deep), so a crafted line cannot exhaust memory, recursion or the page.
MAX_LINE_CHARS = 1 << 20
MAX_DEPTH = 16
MAX_STRING_CHARS = 16 * 1024
MAX_ITEMS = 10_000
NUMBER = (int, float)
# Fields the report formats, by dotted path: (accepted types, what to say). None is always accepted.
FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "artifact": ((dict,), "an object"), "artifact.name": ((str,), "a string"),
    "artifact.size_bytes": (NUMBER, "a number"), "artifact.sha256": ((str,), "a string"),
    "model": ((dict,), "an object"), "model.name": ((str,), "a string"), "model.params": (NUMBER, "a number"),
    "model.gmacs": (NUMBER, "a number"), "model.model_args": ((dict,), "an object"),
    "model.task": ((str,), "a string"),
    "backend": ((str,), "a string"), "device": ((str,), "a string"), "device_label": ((str,), "a string"),
    "precision": ((str,), "a string"), "threads": ((int,), "an integer"), "batch": ((int,), "an integer"),
    "latency": ((dict,), "an object"), "latency.p50_ms": (NUMBER, "a number"),
    "latency.p90_ms": (NUMBER, "a number"), "latency.throughput_ips": (NUMBER, "a number"),
    "memory": ((dict,), "an object"), "memory.peak_rss_mb": (NUMBER, "a number"),
    "accuracy": ((dict,), "an object"), "accuracy.miou": (NUMBER, "a number"),
    "accuracy.mean_dice": (NUMBER, "a number"), "accuracy.num_images": ((int,), "an integer"),
    "accuracy.mask_ap": (NUMBER, "a number"), "accuracy.mask_ap50": (NUMBER, "a number"),
    "accuracy.mask_ap75": (NUMBER, "a number"), "accuracy.box_ap": (NUMBER, "a number"),
    "accuracy.dataset": ((dict,), "an object"), "machine": ((dict,), "an object"),
    "machine.gpus": ((list,), "a list"), "versions": ((dict,), "an object"), "error": ((str,), "a string"),
}


def _oversized(value: Any) -> str:
    """Where ``value`` breaks the size limits ('' when it does not); iterative, so depth cannot recurse."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        v, where, depth = stack.pop()
        name = where or "the line"
        if depth > MAX_DEPTH:
            return f"field {name} is nested more than {MAX_DEPTH} levels deep"
        if isinstance(v, str) and len(v) > MAX_STRING_CHARS:
            return f"field {name} is a {len(v)}-character string (limit {MAX_STRING_CHARS})"
        if isinstance(v, (dict, list)) and len(v) > MAX_ITEMS:
            return f"field {name} has {len(v)} items (limit {MAX_ITEMS})"
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, child in items:
            if isinstance(k, str) and len(k) > MAX_STRING_CHARS:
                return f"a key of field {name} is a {len(k)}-character string (limit {MAX_STRING_CHARS})"
            stack.append((child, f"{where}.{k}" if where else str(k), depth + 1))
    return ""


def _wrong_type(row: dict[str, Any]) -> str:
    """The first field the report formats that holds the wrong type ('' when none does)."""
    for path, (types, expected) in FIELD_TYPES.items():
        v: Any = row
        for key in path.split("."):
            v = v.get(key) if isinstance(v, dict) else None
        if v is not None and (not isinstance(v, types) or (isinstance(v, bool) and bool not in types)):
            return f"field {path} is {type(v).__name__}, expected {expected}"
    return ""


def _unknown_task(row: dict[str, Any]) -> str:
    """'' unless the line names a task edgeseg does not know (the report lays out columns per task)."""
    from edgeseg.catalog import TASKS

    task = (row.get("model") or {}).get("task")
    return "" if task is None or task in TASKS else f"field model.task is {task!r}, expected one of {sorted(TASKS)}"


def _lines(path: Path):
    """(line number, text) of ``path``, refusing a line longer than MAX_LINE_CHARS before reading it all."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        lineno = 0
        while True:
            line = fh.readline(MAX_LINE_CHARS + 1)
            if not line:
                return
            lineno += 1
            if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
                raise ResultsError(f"{path}:{lineno}: line longer than {MAX_LINE_CHARS} characters; "
                                   "not an edgeseg result line")
            yield lineno, line


def load_rows(paths: list[str | Path]) -> list[dict[str, Any]]:
    """Every result line of ``paths``; each row gets ``source`` (file:line). Clear errors on bad lines,
    including lines too large or too deeply nested to render (limits above)."""
    rows: list[dict[str, Any]] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise ResultsError(f"{path}: results file not found")
        for lineno, line in _lines(path):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ResultsError(f"{path}:{lineno}: not JSON ({exc.msg}); expected one result object per line") from None
            except RecursionError:
                raise ResultsError(f"{path}:{lineno}: nested more than {MAX_DEPTH} levels deep; "
                                   "not an edgeseg result line") from None
            if not isinstance(row, dict) or row.get("schema") != SCHEMA:
                raise ResultsError(f"{path}:{lineno}: not an edgeseg result line (expected schema {SCHEMA!r})")
            missing = [k for k in REQUIRED if k not in row]
            if missing and not row.get("error"):
                raise ResultsError(f"{path}:{lineno}: result line lacks {', '.join(missing)}")
            problem = _oversized(row) or _wrong_type(row) or _unknown_task(row)
            if problem:
                raise ResultsError(f"{path}:{lineno}: {problem}")
            rows.append({**row, "source": f"{path}:{lineno}"})
    return rows
