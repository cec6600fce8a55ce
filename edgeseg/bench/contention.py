"""How much CPU other processes took while a benchmark ran (system and process CPU times from psutil).

A latency measured while other processes compete for the cores can be several times the quiet figure
and still look tight (p90 close to p50): the competition is steady, not spiky. So the harness watches
the machine's busy time during the timed runs, subtracts its own process's CPU time, and flags a
result noisy when the cores were oversubscribed.
"""

from __future__ import annotations

import time
from types import TracebackType

import psutil

MIN_WALL_S = 0.5  # the kernel counts CPU time in 10 ms ticks: shorter windows cannot tell
MIN_OTHER_CORES = 0.25  # less than this is background noise (a shell, a logger)


def _busy_s() -> float | None:
    """Seconds of CPU time all processes have used since boot (all CPUs together)."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    guest = getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)  # Linux: already counted in user/nice
    return sum(t) - idle - guest


def _self_s() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


class CpuWatch:
    """Context manager: ``other_cores`` = CPU time of other processes / wall time of the block."""

    def __init__(self) -> None:
        self.other_cores: float | None = None
        self.wall_s = 0.0

    def __enter__(self) -> CpuWatch:
        self._t0, self._busy0, self._self0 = time.perf_counter(), _busy_s(), _self_s()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.wall_s = time.perf_counter() - self._t0
        busy = _busy_s()
        if busy is None or self._busy0 is None or self.wall_s <= 0:
            return
        other = (busy - self._busy0) - (_self_s() - self._self0)
        self.other_cores = round(max(0.0, other) / self.wall_s, 2)


def contention_reason(other_cores: float | None, *, threads: int | None, cores: int, wall_s: float) -> str:
    """Why the runs were contended ('' when they were not, or when the window is too short to tell)."""
    if other_cores is None or wall_s < MIN_WALL_S or other_cores < MIN_OTHER_CORES:
        return ""
    wanted = threads or cores
    if wanted + other_cores <= cores:
        return ""
    return (f"other processes used {other_cores:.2f} cores during the runs while this one wanted {wanted} "
            f"of {cores}")
