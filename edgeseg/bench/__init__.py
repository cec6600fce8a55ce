"""Benchmark harness: latency, memory and accuracy of every artifact, measured on the artifact itself.

:func:`benchmark` is the library entry of `edgeseg bench`; ``python -m edgeseg.bench.runner`` is the
torch-free twin for devices. Both write the same JSON lines (schema in :mod:`edgeseg.bench.rows`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.artifacts.outputs import check_output_file
from edgeseg.bench.backends import check_counts
from edgeseg.bench.core import BenchSettings, usable_cores
from edgeseg.bench.rows import SCHEMA, ResultsError, load_rows
from edgeseg.bench.sweep import Sweep, run_sweep

__all__ = ["SCHEMA", "BenchSettings", "ResultsError", "benchmark", "load_rows"]


def _settings(cfg: Any) -> BenchSettings:
    if cfg is None:
        return BenchSettings()
    return BenchSettings(warmup=cfg.warmup, min_runs=cfg.min_runs, min_time_s=cfg.min_time_s)


def benchmark(artifacts: list[str | Path], *, out: str | Path, backends: list[str] | None = None,
              device: str = "cpu", threads: list[int] | None = None, batch: list[int] | None = None,
              cfg: Any = None, data: str | Path | None = None, accuracy: bool = True,
              split: str = "val", torch_options: dict[str, bool] | None = None, trust_checkpoint: bool = False,
              custom_op_library: str | Path | None = None,
              size: tuple[int, int] | None = None, memory: bool = True) -> list[dict[str, Any]]:
    """Measure every (artifact, backend, threads, batch) and append one JSON line each to ``out``.

    Args:
        artifacts: model.pt / .onnx / .ort / .engine / .xml files.
        out: JSON-lines file the rows are appended to (atomically).
        backends: runtime names (torch, onnxruntime, tensorrt, openvino, torch-cuda); default: each
            artifact's own by suffix. Each artifact runs on the listed backends that load its kind of
            file (others are skipped with a printed note); a backend that fails to load or run it
            becomes a row with ``error`` set, which the report lists as not measured.
        device: ``cpu`` or ``cuda``.
        threads: intra-op thread counts to pin (default: ``cfg.threads``, else the usable cores).
        batch: batch sizes (default ``[1]``).
        cfg: :class:`~edgeseg.recipe.BenchCfg` for warm-up and run counts.
        data: recipe whose data to evaluate on (default: each artifact's stored recipe).
        accuracy: measure accuracy on the whole ``split`` (once per artifact and backend).
        split: evaluation split (never the calibration/training split).
        torch_options: for the torch backend: ``fp16`` (autocast on CUDA), ``channels_last``, ``compile``.
        trust_checkpoint: unpickle checkpoints fully (only for files the user made himself).
        custom_op_library: native library for custom ONNX operators the user trusts (onnxruntime).
        size: (H, W) input of an ONNX file without edgeseg metadata whose spatial axes are dynamic
            (default: ``data``'s image size). Such a file is benched for latency and memory from the file
            alone; with ``data`` its classes and normalisation come from that recipe and it is evaluated too.
        memory: measure peak memory in a fresh interpreter per file (off: latency only, as a search's
            repeated timing rounds want).

    Returns:
        The rows written.
    """
    from edgeseg.progress import make_progress

    check_counts("threads", threads)
    check_counts("batch", batch)
    sweep = Sweep(artifacts=[Path(a) for a in artifacts], backends=list(backends or []), device=device,
                  threads=threads or (list(cfg.threads) if cfg is not None and cfg.threads else [usable_cores()]),
                  batches=batch or (list(cfg.batch) if cfg is not None else [1]), settings=_settings(cfg),
                  options=dict(torch_options or {}), trust_checkpoint=trust_checkpoint,
                  custom_op_library=custom_op_library)
    check_output_file(out)  # before minutes of measurements, not after
    sweep.settings.memory = sweep.settings.memory and memory
    sweep.adopt = _foreign_adopter(data, size)
    plan = sweep.plan(lambda msg: print(f"bench: {msg}"))
    with make_progress() as progress:
        bar = progress.add_task("bench", total=len(plan) * len(sweep.threads) * len(sweep.batches), rate="", info="")
        return run_sweep(sweep, out, accuracy=_recipe_accuracy(data, split) if accuracy else None,
                         say=lambda msg: progress.console.print(f"bench: {msg}"),
                         on_row=_row_reporter(progress, bar), plan=plan)


def _foreign_adopter(data: str | Path | None, size: tuple[int, int] | None) -> Any:
    """Bring-your-own ONNX: the file alone is enough to time it (announced once per file)."""
    from edgeseg.foreign import adopt_foreign

    announced: set[Path] = set()

    def adopt(be: Any) -> None:
        note = adopt_foreign(be, data, size)
        if be.path not in announced:
            announced.add(be.path)
            print(f"bench: {note}")

    return adopt


def _row_reporter(progress: Any, bar: Any) -> Any:
    """Advance the bar and print one line per measured row."""
    from edgeseg.progress import line_progress

    def on_row(row: dict[str, Any]) -> None:
        name = f"{row['artifact']['name']} {row['backend']} threads={row['threads']} batch={row['batch']}"
        progress.update(bar, advance=1, info=name)
        lat = row.get("latency") or {}
        line_progress(f"bench: {name}: " + (f"p50 {lat['p50_ms']:.2f} ms" if lat
                                            else f"failed ({str(row.get('error'))[:120]})"))

    return on_row


def _recipe_accuracy(data: str | Path | None, split: str) -> Any:
    def measure(backend: Any) -> dict[str, Any]:
        from edgeseg.bench.accuracy import recipe_accuracy

        if getattr(backend, "foreign", False) and data is None:
            return {"error": f"{backend.path.name} has no edgeseg metadata; pass --data RECIPE to evaluate it"}
        return recipe_accuracy(backend, data, split)

    return measure
