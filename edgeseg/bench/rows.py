"""The result-line schema shared by `edgeseg bench`, the standalone runner and `edgeseg report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeseg.errors import UserError

SCHEMA = "edgeseg.bench/1"
REQUIRED = ("schema", "artifact", "model", "backend", "device", "threads", "batch", "latency", "machine")


class ResultsError(UserError, ValueError):
    """A results file is missing or has a line that is not an edgeseg result."""


def append_rows(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Append ``rows`` as JSON lines to ``path`` atomically (existing lines are kept)."""
    from edgeseg.artifacts import atomic_write_text

    path = Path(path)
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    return atomic_write_text(path, old + "".join(json.dumps(r, default=str) + "\n" for r in rows))


def load_rows(paths: list[str | Path]) -> list[dict[str, Any]]:
    """Every result line of ``paths``; each row gets ``source`` (file:line). Clear errors on bad lines."""
    rows: list[dict[str, Any]] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise ResultsError(f"{path}: results file not found")
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ResultsError(f"{path}:{lineno}: not JSON ({exc.msg}); expected one result object per line") from None
            if not isinstance(row, dict) or row.get("schema") != SCHEMA:
                raise ResultsError(f"{path}:{lineno}: not an edgeseg result line (expected schema {SCHEMA!r})")
            missing = [k for k in REQUIRED if k not in row]
            if missing and not row.get("error"):
                raise ResultsError(f"{path}:{lineno}: result line lacks {', '.join(missing)}")
            rows.append({**row, "source": f"{path}:{lineno}"})
    return rows
