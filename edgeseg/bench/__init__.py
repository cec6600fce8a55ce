"""Benchmark harness: latency, memory and accuracy of every artifact, measured on the artifact itself.

:func:`benchmark` is the library entry of `edgeseg bench`; ``python -m edgeseg.bench.runner`` is the
torch-free twin for devices. Both write the same JSON lines (schema in :mod:`edgeseg.bench.rows`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.bench.core import BenchSettings, bench_input_hw, bench_one, base_row
from edgeseg.bench.rows import SCHEMA, ResultsError, append_rows, load_rows

__all__ = ["SCHEMA", "BenchSettings", "ResultsError", "benchmark", "load_rows"]


def runs_on(path: Path, backend: str) -> bool:
    """Whether ``backend`` loads files like ``path`` (checkpoints: torch; .onnx/.ort: onnxruntime; ...)."""
    from edgeseg import runtime

    name = runtime.ALIASES.get(backend, backend)
    return runtime.DEFAULT_BACKEND.get(path.suffix.lower()) == name or name not in runtime.BACKENDS


def _settings(cfg: Any) -> BenchSettings:
    if cfg is None:
        return BenchSettings()
    return BenchSettings(warmup=cfg.warmup, min_runs=cfg.min_runs, min_time_s=cfg.min_time_s)


def _model_figures(meta: Any, hw: tuple[int, int], cache: dict) -> dict[str, Any]:
    """Parameters and GMACs of the architecture at the bench input size (from the registry, with torch)."""
    key = (meta.model_name, meta.num_classes, meta.in_channels, repr(sorted(meta.model_args.items())), hw)
    if key not in cache:
        try:
            from edgeseg.models import create_model
            from edgeseg.models.profile import count_macs, count_params

            net = create_model(meta.model_name, num_classes=meta.num_classes, in_channels=meta.in_channels,
                               **meta.model_args)
            cache[key] = {"params": count_params(net), "gmacs": round(count_macs(net, hw) / 1e9, 4)}
        except Exception as exc:  # noqa: BLE001  (an unknown/foreign model still gets latency and memory)
            cache[key] = {"params": None, "gmacs": None, "profile_error": str(exc)[:200]}
    return cache[key]


def benchmark(artifacts: list[str | Path], *, out: str | Path, backends: list[str] | None = None,
              device: str = "cpu", threads: list[int] | None = None, batch: list[int] | None = None,
              cfg: Any = None, data: str | Path | None = None, accuracy: bool = True,
              split: str = "val", torch_options: dict[str, bool] | None = None) -> list[dict[str, Any]]:
    """Measure every (artifact, backend, threads, batch) and append one JSON line each to ``out``.

    Args:
        artifacts: model.pt / .onnx / .ort / .engine / .xml files.
        out: JSON-lines file the rows are appended to (atomically).
        backends: runtime names (torch, onnxruntime, tensorrt, openvino, torch-cuda); default: each
            artifact's own by suffix. Each artifact runs on the listed backends that load its kind of
            file (others are skipped with a printed note); a backend that fails to load or run it
            becomes a row with ``error`` set, which the report lists as not measured.
        device: ``cpu`` or ``cuda``.
        threads: intra-op thread counts to pin (default: ``cfg.threads``, else the runtime default).
        batch: batch sizes (default ``[1]``).
        cfg: :class:`~edgeseg.recipe.BenchCfg` for warm-up and run counts.
        data: recipe whose data to evaluate on (default: each artifact's stored recipe).
        accuracy: measure accuracy on the whole ``split`` (once per artifact and backend).
        split: evaluation split (never the calibration/training split).
        torch_options: for the torch backend: ``fp16`` (autocast on CUDA), ``channels_last``, ``compile``.

    Returns:
        The rows written.
    """
    from edgeseg import runtime
    from edgeseg.progress import make_progress

    settings = _settings(cfg)
    threads = threads or (list(cfg.threads) if cfg is not None else [None])  # type: ignore[list-item]
    batch = batch or (list(cfg.batch) if cfg is not None else [1])
    rows: list[dict[str, Any]] = []
    profile_cache: dict = {}
    plan = []
    for a in map(Path, artifacts):
        for b in backends or [None]:
            if b is not None and not runs_on(a, b):
                print(f"bench: {a.name} is not a {b} artifact; skipped on {b}")
                continue
            plan.append((a, b))
    with make_progress() as progress:
        bar = progress.add_task("bench", total=len(plan) * len(threads) * len(batch), rate="", info="")
        for path, wanted in plan:
            name = runtime.backend_for(path, wanted) if wanted or path.suffix.lower() in runtime.DEFAULT_BACKEND \
                else str(wanted)
            acc: dict[str, Any] | None = None
            acc_done = False
            for t in threads:
                options = dict(torch_options or {}) if name == "torch" else {}
                try:
                    be = runtime.open(path, backend=wanted, device=device, threads=t, **options)
                except Exception as exc:  # noqa: BLE001  (any backend failure is a row, not a crash)
                    for b in batch:
                        row = base_row(path, name, device, t, b)
                        row["error"] = f"{type(exc).__name__}: {exc}"
                        rows.append(row)
                        progress.update(bar, advance=1)
                    progress.console.print(f"bench: skipped {path.name} on {name}: {exc}")
                    continue
                if accuracy and not acc_done:
                    from edgeseg.bench.accuracy import recipe_accuracy

                    acc, acc_done = recipe_accuracy(be, data, split), True
                figures = _model_figures(be.meta, bench_input_hw(be), profile_cache)
                for b in batch:
                    progress.update(bar, info=f"{path.name} {name} threads={t} batch={b}")
                    row = bench_one(path, be, backend_name=name, device=device, threads=t, batch=b,
                                    settings=settings, accuracy=acc, model_figures=figures, options=options)
                    rows.append(row)
                    progress.update(bar, advance=1)
                del be
    append_rows(out, rows)
    return rows
