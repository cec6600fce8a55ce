"""Contention: other processes' CPU use during the runs, and when it makes a result noisy."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from edgeseg.bench import contention
from edgeseg.bench.contention import CpuWatch, contention_reason


def test_own_cpu_time_is_not_counted_as_other_processes(monkeypatch):
    # A machine where only this process runs (plus 0.3 cores of someone else): the busy loop's own
    # CPU time must be subtracted. Deterministic: the system-wide counter is derived from ours.
    start = time.perf_counter()
    monkeypatch.setattr(contention, "_busy_s", lambda: contention._self_s() + 0.3 * (time.perf_counter() - start))
    with CpuWatch() as watch:
        end = time.perf_counter() + 0.6
        while time.perf_counter() < end:  # this process keeps one core busy
            pass
    assert watch.other_cores == pytest.approx(0.3, abs=0.05)
    assert watch.wall_s >= 0.6


def test_machine_counters_are_live():
    busy, own = contention._busy_s(), contention._self_s()
    end = time.perf_counter() + 10
    while contention._self_s() - own < 0.2 and time.perf_counter() < end:  # 0.2 s of our own CPU time
        pass
    used = contention._self_s() - own
    assert used >= 0.2 and contention._busy_s() - busy >= used - 0.05  # the machine saw at least ours


def test_a_competing_process_is_seen():
    burner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.2: pass"])
    try:
        time.sleep(0.2)
        with CpuWatch() as watch:
            time.sleep(0.7)
    finally:
        burner.wait()
    assert watch.other_cores is not None and watch.other_cores >= 0.5


def test_oversubscription_rule():
    assert "1.30 cores" in contention_reason(1.3, threads=2, cores=2, wall_s=2.0)
    assert contention_reason(0.1, threads=2, cores=2, wall_s=2.0) == ""  # background noise
    assert contention_reason(0.8, threads=1, cores=2, wall_s=2.0) == ""  # fits beside us
    assert contention_reason(1.3, threads=2, cores=2, wall_s=0.1) == ""  # too short to tell
    assert contention_reason(None, threads=2, cores=2, wall_s=2.0) == ""
