"""Contention: other processes' CPU use during the runs, and when it makes a result noisy."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeseg.bench.contention import CpuWatch, contention_reason
from edgeseg.bench.core import usable_cores

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads Linux /proc/stat")


def test_own_cpu_time_is_not_counted_as_other_processes():
    with CpuWatch() as watch:
        end = time.perf_counter() + 0.6
        while time.perf_counter() < end:  # this process keeps one core busy
            pass
    # Counting ourselves would read ~1 core more than the others can possibly have used.
    assert watch.other_cores is not None and watch.other_cores <= usable_cores() - 0.8
    assert watch.wall_s >= 0.6


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
