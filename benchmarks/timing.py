"""Side-by-side timing of several files in one process: the one thing the benchmarks need that
``edgeseg.bench`` has no verb for (it times one artifact per row; these tables compare files that must
see the same machine state, so rounds alternate over all of them).

Each file opens through :func:`edgeseg.runtime.open` (ONNX sessions with ``spinning=False``: an idle
session's spinning threads would steal the cores of the one being timed) and is timed with
:func:`edgeseg.bench.latency.measure_latency` under :class:`edgeseg.bench.contention.CpuWatch`.
"""

from __future__ import annotations

import fcntl
import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.record import LOCK

LATENCY_KW = {"warmup": 3, "min_runs": 10, "min_time_s": 1.5, "max_time_s": 60.0}
SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}  # what OrtBackend(spinning=False) sets


@contextmanager
def bench_lock(path: str = LOCK) -> Iterator[None]:
    """Hold the machine-wide benchmark lock (the same one ``flock LOCK python ...`` takes)."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def open_for_timing(path: Path, threads: int) -> Any:
    """A runtime backend for ``path``; ONNX files without edgeseg metadata (peer models) open too."""
    from edgeseg import runtime

    onnx_options = {"spinning": False, "foreign": True} if Path(path).suffix == ".onnx" else {}
    return runtime.open(path, threads=threads, **onnx_options)


def time_round(backend: Any, x: np.ndarray, threads: int, latency: dict[str, Any]) -> tuple[Any, float, str]:
    """One timing of ``backend`` on ``x``: (stats, other processes' cores, contention reason or '')."""
    from edgeseg.bench.contention import CpuWatch, contention_reason
    from edgeseg.bench.latency import measure_latency

    with CpuWatch() as watch:
        stats = measure_latency(lambda: backend(x), sync=backend.synchronize, **latency)
    busy = contention_reason(watch.other_cores, threads=threads, cores=os.cpu_count() or 1, wall_s=watch.wall_s)
    return stats, watch.other_cores or 0.0, busy


def side_by_side(files: dict[str, Path], hw: tuple[int, int], *, threads: int, rounds: int,
                 latency: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per file: p50 of every round, their median (``p50_ms``) and best (``best_p50_ms``), noise and load.

    Rounds alternate over all files (odd rounds in reverse order, so nobody always goes first); the
    input is the same seeded normal batch-1 array at ``hw`` for every file.
    """
    backends = {k: open_for_timing(p, threads) for k, p in files.items()}
    rng = np.random.default_rng(0)
    xs = {k: rng.standard_normal((1, be.meta.in_channels, *hw), dtype=np.float32) for k, be in backends.items()}
    res: dict[str, dict[str, Any]] = {k: {"rounds": [], "other_cores": [], "contention": [], "noisy": False}
                                      for k in files}
    for r in range(rounds):
        for k in (list(backends) if r % 2 == 0 else list(backends)[::-1]):
            stats, others, busy = time_round(backends[k], xs[k], threads, latency or LATENCY_KW)
            row = res[k]
            row["rounds"].append(round(stats.p50_ms, 3))
            row["other_cores"].append(round(others, 2))
            row["contention"].append(busy)
            row["noisy"] = row["noisy"] or stats.noisy or bool(busy)
        print(f"latency round {r + 1}/{rounds}: " + ", ".join(f"{k} {v['rounds'][-1]:.1f}" for k, v in res.items()),
              flush=True)
    for row in res.values():
        row["p50_ms"], row["best_p50_ms"] = statistics.median(row["rounds"]), min(row["rounds"])
    return res


def contention_note(latency: dict[str, dict[str, Any]]) -> str:
    """One Markdown sentence: which files were timed while other processes competed for the cores."""
    busy = [f"{k}: {next(c for c in v['contention'] if c)}" for k, v in latency.items() if any(v["contention"])]
    cores = sorted(c for v in latency.values() for c in v["other_cores"]) or [0.0]
    return ("Contention: " + ("; ".join(busy) if busy else "none flagged")
            + f" (other processes' CPU while timing: median {statistics.median(cores):.2f} cores, max {cores[-1]:.2f}).")


def targets_line(targets: dict[str, bool | None]) -> str:
    """``Targets: name met, name NOT met, name not measured.``"""
    return "Targets: " + ", ".join(f"{k} {'met' if v else 'NOT met' if v is False else 'not measured'}"
                                   for k, v in targets.items()) + "."
