"""The one loop over (artifact, backend, threads, batch), shared by `edgeseg bench` and the device runner.

No torch import: :func:`edgeseg.bench.benchmark` adds recipe accuracy and a progress bar around it,
``python -m edgeseg.bench.runner`` adds folder/npz accuracy and plain printing; the lines they write
are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg import runtime
from edgeseg.bench.backends import check_backends, check_counts, not_applicable_note, skip_reason
from edgeseg.bench.core import BenchSettings, base_row, bench_input_hw, bench_one
from edgeseg.bench.figures import model_figures
from edgeseg.bench.rows import append_rows

Accuracy = Callable[[Any], dict[str, Any]]


@dataclass
class Sweep:
    """What to measure: every artifact on every listed backend that loads it, at every threads x batch.

    ``backends`` empty means each artifact's own backend (by suffix); ``options`` are torch backend
    options (fp16, channels_last, compile), given to the torch backend only; ``trust_checkpoint`` and
    ``custom_op_library`` widen what the torch / onnxruntime backend may load (see
    :func:`edgeseg.runtime.trust_options`).
    """

    artifacts: list[Path]
    backends: list[str] = field(default_factory=list)
    device: str = "cpu"
    threads: list[int] = field(default_factory=lambda: [1])
    batches: list[int] = field(default_factory=lambda: [1])
    settings: BenchSettings = field(default_factory=BenchSettings)
    options: dict[str, bool] = field(default_factory=dict)
    allow_torch: bool = True  # count params/GMACs of non-ONNX files with torch
    trust_checkpoint: bool = False
    custom_op_library: str | Path | None = None
    adopt: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:
        check_counts("threads", self.threads)  # a batch of 0 would time an empty call
        check_counts("batch", self.batches)

    def plan(self, say: Callable[[str], None]) -> list[tuple[Path, str | None]]:
        """(artifact, backend or None) pairs that can run; the others are reported in one ``say`` line."""
        check_backends(self.backends)
        pairs, not_applicable = [], []
        for path in map(Path, self.artifacts):
            for wanted in self.backends or [None]:
                if wanted is not None and skip_reason(path, wanted):
                    not_applicable.append((path, wanted))
                    continue
                pairs.append((path, wanted))
        if not_applicable:
            say(not_applicable_note(not_applicable))
        return pairs


def _error_row(path: Path, name: str, device: str, threads: int, batch: int, exc: BaseException) -> dict[str, Any]:
    return {**base_row(path, name, device, threads, batch), "error": f"{type(exc).__name__}: {exc}"}


def _one_backend(sweep: Sweep, path: Path, wanted: str | None, accuracy: Accuracy | None,
                 say: Callable[[str], None], on_row: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Rows of one (artifact, backend) pair: opened once per thread count, accuracy measured once."""
    try:
        name = runtime.backend_for(path, wanted)
    except runtime.BackendError:
        name = "unknown"  # an unknown suffix: runtime.open below fails and the row says why
    where = "cuda" if wanted == "torch-cuda" else sweep.device  # the alias implies the device; rows say so
    options = {**(dict(sweep.options) if name == "torch" else {}),
               **runtime.trust_options(name, trust_checkpoint=sweep.trust_checkpoint,
                                       custom_op_library=sweep.custom_op_library)}
    if sweep.adopt is not None and name == "onnxruntime":
        options["foreign"] = True
    rows: list[dict[str, Any]] = []
    acc: dict[str, Any] | None = None
    figures: dict[tuple[int, int], dict[str, Any]] = {}
    for t in sweep.threads:
        try:
            be = runtime.open(path, wanted, device=where, threads=t, **options)
        except Exception as exc:  # noqa: BLE001  (any backend failure is a row, not a crash)
            say(f"skipped {path.name} on {name}: {exc}")
            for b in sweep.batches:
                rows.append(_error_row(path, name, where, t, b, exc))
                on_row(rows[-1])
            continue
        foreign = getattr(be, "foreign", False)
        if foreign and sweep.adopt is not None:
            sweep.adopt(be)  # outside the try: its errors are the user's options, not a backend failure
        used = {k: v for k, v in options.items() if k != "foreign" or foreign}  # recorded in the row
        if accuracy is not None and acc is None:
            try:
                acc = accuracy(be)
            except Exception as exc:  # noqa: BLE001  (latency and memory are still worth having)
                acc = {"error": f"{type(exc).__name__}: {exc}"}
                say(f"no accuracy for {path.name} on {name}: {exc}")
        hw = bench_input_hw(be)
        if hw not in figures:
            figures[hw] = model_figures(path, be, hw, allow_torch=sweep.allow_torch)
        for b in sweep.batches:
            try:
                row = bench_one(path, be, backend_name=name, device=where, threads=t, batch=b,
                                settings=sweep.settings, accuracy=acc, model_figures=figures[hw], options=used)
            except Exception as exc:  # noqa: BLE001  (a run that fails is a row; the others go on)
                row = _error_row(path, name, where, t, b, exc)
                say(f"{path.name} on {name} failed: {exc}")
            rows.append(row)
            on_row(row)
        del be
    return rows


def run_sweep(sweep: Sweep, out: str | Path, *, accuracy: Accuracy | None = None,
              say: Callable[[str], None] = print, on_row: Callable[[dict[str, Any]], None] = lambda row: None,
              plan: list[tuple[Path, str | None]] | None = None) -> list[dict[str, Any]]:
    """Measure ``sweep`` and append one JSON line per configuration to ``out``; returns the rows.

    ``accuracy(backend)`` gives the accuracy figures (once per artifact and backend; None: no
    accuracy). Each (artifact, backend)'s lines land as soon as they exist, so an interrupted run
    keeps what it measured. ``plan`` is :meth:`Sweep.plan`'s result when the caller already has it.
    """
    plan = sweep.plan(say) if plan is None else plan
    rows: list[dict[str, Any]] = []
    for path, wanted in plan:
        new = _one_backend(sweep, path, wanted, accuracy, say, on_row)
        append_rows(out, new)
        rows += new
    if not plan:
        append_rows(out, [])  # nothing runnable: the (possibly new) file still exists for `report` to explain
    return rows
