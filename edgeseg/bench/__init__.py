"""Benchmark harness: latency, memory and accuracy of every artifact, measured on the artifact itself.

:func:`benchmark` is the library entry of `edgeseg bench`; ``python -m edgeseg.bench.runner`` is the
torch-free twin for devices. Both write the same JSON lines (schema in :mod:`edgeseg.bench.rows`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.bench.backends import check_backends, skip_reason
from edgeseg.bench.core import BenchSettings, base_row, bench_input_hw, bench_one, usable_cores
from edgeseg.bench.figures import model_figures
from edgeseg.bench.rows import SCHEMA, ResultsError, append_rows, load_rows

__all__ = ["SCHEMA", "BenchSettings", "ResultsError", "benchmark", "load_rows"]


def _settings(cfg: Any) -> BenchSettings:
    if cfg is None:
        return BenchSettings()
    return BenchSettings(warmup=cfg.warmup, min_runs=cfg.min_runs, min_time_s=cfg.min_time_s)


def benchmark(artifacts: list[str | Path], *, out: str | Path, backends: list[str] | None = None,
              device: str = "cpu", threads: list[int] | None = None, batch: list[int] | None = None,
              cfg: Any = None, data: str | Path | None = None, accuracy: bool = True,
              split: str = "val", torch_options: dict[str, bool] | None = None, trust_checkpoint: bool = False,
              custom_op_library: str | Path | None = None) -> list[dict[str, Any]]:
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

    Returns:
        The rows written.
    """
    from edgeseg import runtime
    from edgeseg.progress import make_progress

    settings = _settings(cfg)
    threads = threads or (list(cfg.threads) if cfg is not None and cfg.threads else [usable_cores()])
    batch = batch or (list(cfg.batch) if cfg is not None else [1])
    rows: list[dict[str, Any]] = []
    written = 0
    profile_cache: dict[tuple[Path, tuple[int, int]], dict[str, Any]] = {}
    check_backends(backends or [])
    plan = []
    for a in map(Path, artifacts):
        for b in backends or [None]:
            reason = skip_reason(a, b) if b is not None else None
            if reason:
                print(f"bench: {reason}")
                continue
            plan.append((a, b))
    with make_progress() as progress:
        bar = progress.add_task("bench", total=len(plan) * len(threads) * len(batch), rate="", info="")
        for path, wanted in plan:
            try:
                name = runtime.backend_for(path, wanted)
            except runtime.BackendError:
                name = "unknown"  # an unknown suffix: runtime.open below fails and the row says why
            where = "cuda" if wanted == "torch-cuda" else device  # the alias implies the device; rows must say so
            acc: dict[str, Any] | None = None
            acc_done = False
            for t in threads:
                options = {**(dict(torch_options or {}) if name == "torch" else {}),
                           **runtime.trust_options(name, trust_checkpoint=trust_checkpoint,
                                                   custom_op_library=custom_op_library)}
                try:
                    be = runtime.open(path, wanted, device=where, threads=t, **options)
                except Exception as exc:  # noqa: BLE001  (any backend failure is a row, not a crash)
                    for b in batch:
                        row = base_row(path, name, where, t, b)
                        row["error"] = f"{type(exc).__name__}: {exc}"
                        rows.append(row)
                        progress.update(bar, advance=1)
                    progress.console.print(f"bench: skipped {path.name} on {name}: {exc}")
                    continue
                if accuracy and not acc_done:
                    from edgeseg.bench.accuracy import recipe_accuracy

                    acc_done = True
                    try:
                        acc = recipe_accuracy(be, data, split)
                    except Exception as exc:  # noqa: BLE001  (latency and memory are still worth having)
                        acc = {"error": f"{type(exc).__name__}: {exc}"}
                        progress.console.print(f"bench: no accuracy for {path.name} on {name}: {exc}")
                hw = bench_input_hw(be)
                if (path, hw) not in profile_cache:
                    profile_cache[(path, hw)] = model_figures(path, be, hw)
                for b in batch:
                    progress.update(bar, info=f"{path.name} {name} threads={t} batch={b}")
                    try:
                        row = bench_one(path, be, backend_name=name, device=where, threads=t, batch=b,
                                        settings=settings, accuracy=acc, model_figures=profile_cache[(path, hw)],
                                        options=options)
                    except Exception as exc:  # noqa: BLE001  (a run that fails is a row; the others go on)
                        row = {**base_row(path, name, where, t, b), "error": f"{type(exc).__name__}: {exc}"}
                        progress.console.print(f"bench: {path.name} on {name} failed: {exc}")
                    rows.append(row)
                    progress.update(bar, advance=1)
                del be
            # Each artifact's lines land as soon as they exist: an interrupted run keeps what it measured.
            append_rows(out, rows[written:])
            written = len(rows)
    if not plan:
        append_rows(out, [])  # nothing runnable: the (possibly new) file still exists for `report` to explain
    return rows
