"""The one results writer of the benchmarks: ``NAME.json`` and ``NAME.md``, atomically, with provenance.

Every record gets the date (UTC), the command that made it, the machine (CPU name, cores) and the
library versions; the Markdown gets the same in one closing line, so no script formats them again.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeseg.artifacts import atomic_write_json, atomic_write_text, library_versions
from edgeseg.bench.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUICK = ROOT / "benchmarks" / ".runs" / "quick"  # smoke runs: never over the committed results
LOCK = "/tmp/edgeseg-bench.lock"  # held while timing on a shared machine
LIBRARIES = ("edgeseg", "torch", "onnx", "onnxruntime", "executorch", "numpy")


def add_results_option(ap: argparse.ArgumentParser, name: str) -> None:
    """``--results STEM``: where NAME.json and NAME.md go (see :func:`results_stem`)."""
    ap.add_argument("--results", type=Path, default=None,
                    help=f"results stem: STEM.json and STEM.md (default benchmarks/results/{name}; "
                         f"with --quick benchmarks/.runs/quick/{name})")


def parse_options(ap: argparse.ArgumentParser, name: str | None, argv: list[str] | None,
                  quick: str) -> argparse.Namespace:
    """Add ``--quick`` (a smoke run: ``quick`` says what it does) and ``--results``, then parse ``argv``;
    ``args.results`` becomes :func:`results_stem` of NAME (left as given when ``name`` is None)."""
    ap.add_argument("--quick", action="store_true", help=f"smoke run of the script, not results: {quick}")
    add_results_option(ap, name or "NAME")
    args = ap.parse_args(argv)
    if name is not None:
        args.results = results_stem(args.results, name, args.quick)
    return args


def results_stem(given: Path | None, name: str, quick: bool = False) -> Path:
    """``given``, else ``benchmarks/results/NAME`` (``benchmarks/.runs/quick/NAME`` for a smoke run)."""
    return given or (QUICK if quick else RESULTS) / name


def command_line(locked: bool = False) -> str:
    """How this run was started, as ``python -m benchmarks.NAME ARGS`` (with the flock prefix if asked)."""
    module = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "?"
    line = shlex.join(["python", "-m", f"benchmarks.{module}", *sys.argv[1:]])
    return f"flock {LOCK} {line}" if locked else line


def provenance(command: str | None = None, libraries: tuple[str, ...] = LIBRARIES) -> dict[str, Any]:
    """Date, command, machine and versions: the fields every result file carries."""
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command or command_line(),
            "machine": machine_info(), "versions": library_versions(libraries)}


def footer(doc: dict[str, Any]) -> str:
    """One Markdown line: when, where, with what, by which command."""
    m, v = doc["machine"], doc["versions"]
    libs = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    return (f"Measured {doc['date']} on {m['cpu']} ({m['usable_cores']} usable cores); {libs}. "
            f"Command: `{doc['command']}`.")


def write_results(stem: str | Path, record: dict[str, Any], markdown: list[str] | str, *,
                  command: str | None = None, libraries: tuple[str, ...] = LIBRARIES) -> dict[str, Any]:
    """Write ``STEM.json`` (provenance + ``record``) and ``STEM.md`` (``markdown`` + footer); print the Markdown."""
    stem = Path(stem)
    doc = {**provenance(command, libraries), **record}
    text = markdown if isinstance(markdown, str) else "\n".join(markdown)
    text = text.rstrip("\n") + "\n\n" + footer(doc) + "\n"
    atomic_write_json(stem.with_name(stem.name + ".json"), doc)
    atomic_write_text(stem.with_name(stem.name + ".md"), text)
    print(text)
    return doc
