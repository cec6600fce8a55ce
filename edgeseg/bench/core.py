"""Benchmark one (artifact, backend, device, threads, batch) into one result line; no torch import.

Shared by `edgeseg bench` (:func:`edgeseg.bench.benchmark`) and the standalone runner, so a Jetson
without torch writes exactly the lines a workstation writes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import edgeseg_version, file_sha256, library_versions
from edgeseg.bench.contention import CpuWatch, contention_reason
from edgeseg.bench.latency import measure_latency
from edgeseg.bench.machine import device_label, machine_info
from edgeseg.bench.rows import SCHEMA
from edgeseg.catalog import BENCH_DEFAULTS, artifact_kind
from edgeseg.data.preprocess import round_up_to_stride
from edgeseg.tasks import get_task

RUNTIME_PACKAGES = ("numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "openvino", "executorch",
                    "edgeseg")


@dataclass
class BenchSettings:
    """How long to measure: warm-up calls, then at least ``min_runs`` calls AND ``min_time_s`` seconds."""

    warmup: int = BENCH_DEFAULTS.warmup
    min_runs: int = BENCH_DEFAULTS.min_runs
    min_time_s: float = BENCH_DEFAULTS.min_time_s
    max_time_s: float = BENCH_DEFAULTS.max_time_s
    memory: bool = BENCH_DEFAULTS.memory
    memory_runs: int = BENCH_DEFAULTS.memory_runs

    def __post_init__(self) -> None:
        from edgeseg.bench.backends import BenchOptionError

        for name, low in (("warmup", 0), ("min_runs", 1), ("min_time_s", 0), ("max_time_s", 0), ("memory_runs", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < low:
                raise BenchOptionError(f"bench setting {name}: {v!r} is not allowed; expected a number >= {low}")


def usable_cores() -> int:
    """CPU cores this process may run on (the default thread count to pin and record)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def bench_input_hw(backend: Any) -> tuple[int, int]:
    """The artifact's fixed input size, else the recipe input size rounded up to the model stride."""
    fixed = backend.inputs[0].fixed_hw
    if fixed:
        return fixed
    return round_up_to_stride(tuple(backend.meta.input_size), backend.meta.stride)


def artifact_info(path: Path, backend: Any) -> dict[str, Any]:
    """What was measured: path, sha256, size on disk (external weights included), format, precision."""
    size = path.stat().st_size
    external = path.with_name(path.name + ".data")
    if external.exists():
        size += external.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").exists():
        size += path.with_suffix(".bin").stat().st_size
    return {"path": str(path), "name": path.name, "sha256": file_sha256(path), "size_bytes": size,
            "format": artifact_kind(path) or path.suffix.lstrip("."),
            "precision": backend.precision}


def base_row(path: Path, backend_name: str, device: str, threads: int | None, batch: int) -> dict[str, Any]:
    """Fields every line has, also the lines of configurations that could not run."""
    machine = machine_info()
    return {"schema": SCHEMA, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "edgeseg_version": edgeseg_version(),
            "artifact": {"path": str(path), "name": path.name}, "backend": backend_name, "device": device,
            "device_label": device_label(device, machine), "threads": threads, "batch": batch,
            "machine": machine, "versions": library_versions(RUNTIME_PACKAGES), "error": ""}


def _fixed_batch(backend: Any) -> int | None:
    b = backend.inputs[0].shape[0]
    return b if isinstance(b, int) and b > 0 else None


def bench_one(path: Path, backend: Any, *, backend_name: str, device: str, threads: int | None, batch: int,
              settings: BenchSettings, accuracy: dict[str, Any] | None = None,
              model_figures: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
              hw: tuple[int, int] | None = None) -> dict[str, Any]:
    """Latency (+ memory in a fresh subprocess) of ``backend`` at ``batch``; ``accuracy`` is attached as is.

    ``options`` are the backend options ``backend`` was opened with (recorded, and given to the memory
    probe); ``hw`` overrides the input size of a dynamic-size artifact (default :func:`bench_input_hw`).
    """
    row = base_row(path, backend_name, device, threads, batch)
    row["backend_options"] = dict(options or {})
    meta = backend.meta
    hw = hw or bench_input_hw(backend)
    fixed = _fixed_batch(backend)
    row["artifact"] = artifact_info(path, backend)
    row["model"] = {"name": meta.model_name, "family": meta.family, "task": meta.task,
                    "num_classes": meta.num_classes, "in_channels": meta.in_channels, "input_hw": list(hw),
                    "recipe": (meta.recipe or {}).get("name"), "recipe_hash": meta.recipe_hash,
                    "model_args": meta.model_args, "params": None, "gmacs": None, **(model_figures or {})}
    row["precision"] = backend.precision
    row["input_shape"] = [batch, meta.in_channels, *hw]
    row["provider"] = getattr(backend, "provider", None) or getattr(backend, "name_detail", backend_name)
    row["threads"] = threads if threads else getattr(backend, "threads", None)
    if fixed is not None and fixed != batch:
        row["error"] = f"the artifact has a fixed batch of {fixed}; export with dynamic axes to bench batch {batch}"
        return row
    fixed_hw = backend.inputs[0].fixed_hw
    if fixed_hw and tuple(fixed_hw) != tuple(hw):
        row["error"] = f"the artifact has a fixed input of {fixed_hw[0]}x{fixed_hw[1]}; cannot bench {hw[0]}x{hw[1]}"
        return row
    x = np.random.default_rng(0).standard_normal(tuple(row["input_shape"]), dtype=np.float32)
    kw = dict(batch=batch, warmup=settings.warmup, min_runs=settings.min_runs, min_time_s=settings.min_time_s,
              max_time_s=settings.max_time_s)
    _time_network(row, backend, x, cuda=backend_name == "torch" and device.startswith("cuda"), **kw)
    task = get_task(meta.task)
    if task.has_postprocess:  # the network alone above; here with the task's numpy postprocess after it
        def end_to_end() -> Any:
            return task.decode(backend(x), input_hw=hw, image_hw=hw, placement="pad", **task.decode_options(meta))

        row["latency_end_to_end"] = measure_latency(end_to_end, sync=backend.synchronize, **kw).to_dict()
        row["postprocess"] = "numpy (edgeseg.tasks)"
    if settings.memory:
        from edgeseg.bench.memory import measure_memory

        row["memory"] = measure_memory(path, backend=backend_name, device=device, threads=threads, batch=batch,
                                       hw=hw, runs=settings.memory_runs, options=options)
    row["accuracy"] = accuracy
    return row


def _time_network(row: dict[str, Any], backend: Any, x: np.ndarray, *, cuda: bool, **kw: Any) -> None:
    """The network's latency into ``row``, flagged noisy when other processes kept the cores busy."""
    # Other processes' load is the usual cause of a noisy result on a shared machine: keep it with the row.
    row["load_avg_1m"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    with CpuWatch() as watch:
        if cuda:
            from edgeseg.bench.latency import measure_latency_cuda

            stats = measure_latency_cuda(lambda: backend(x), **kw)
            row["timer"] = "cuda-events"
        else:
            stats = measure_latency(lambda: backend(x), sync=backend.synchronize, **kw)
            row["timer"] = "perf_counter+sync"
    row["other_cpu_cores"] = watch.other_cores
    contended = contention_reason(watch.other_cores, threads=row["threads"], cores=usable_cores(),
                                  wall_s=watch.wall_s)
    if contended:
        stats.noisy = True
        stats.noise_reason = "; ".join(r for r in (stats.noise_reason, contended) if r)
    row["latency"] = stats.to_dict()
    row["noisy"] = stats.noisy
