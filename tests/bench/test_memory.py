"""The memory probe: a fresh interpreter per artifact, sane resident-memory figures, clear failures."""

from __future__ import annotations

import os

import numpy as np

from edgeseg.bench.memory import measure_memory, peak_rss_mb, rss_mb


def test_probe_reports_baseline_load_and_peak(tiny_artifacts):
    _, onnx_path = tiny_artifacts
    mem = measure_memory(onnx_path, backend=None, device="cpu", threads=1, batch=2, hw=(64, 64), runs=2)
    assert "error" not in mem, mem
    assert 10 < mem["rss_baseline_mb"] <= mem["rss_loaded_mb"] <= mem["peak_rss_mb"] < 2048
    assert mem["inference_peak_mb"] == round(mem["peak_rss_mb"] - mem["rss_baseline_mb"], 1) >= 0
    assert mem["cuda_peak_mb"] is None and mem["runs"] == 2


def test_probe_runs_in_its_own_process(tiny_artifacts):
    # The parent has imported torch and pytest (hundreds of MB); a fresh child importing only
    # onnxruntime starts far below that, which it could not if it shared this process.
    _, onnx_path = tiny_artifacts
    mem = measure_memory(onnx_path, backend="onnxruntime", device="cpu", threads=1, batch=1, hw=(64, 64), runs=1)
    import torch  # noqa: F401  (make sure the parent's figure includes torch)

    assert mem["rss_baseline_mb"] < rss_mb() <= peak_rss_mb(), (mem, os.getpid())


def test_probe_failure_is_an_error_not_a_crash(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    mem = measure_memory(broken, backend=None, device="cpu", threads=1, batch=1, hw=(64, 64))
    assert mem["error"].startswith("memory probe failed:") and "onnxruntime cannot load it" in mem["error"]


def test_rss_is_the_current_value_and_peak_the_high_water_mark():
    import mmap

    # 96 MiB mapped and touched by hand: whether malloc hands a freed block back to the kernel depends on
    # what the process loaded before (an earlier test's libraries), an unmapped block always leaves
    block = mmap.mmap(-1, 96 * 2**20)
    np.frombuffer(block, dtype=np.uint8)[:] = 1
    during, peak_during = rss_mb(), peak_rss_mb()
    block.close()
    after = rss_mb()
    assert peak_during >= during > after + 48, (during, after)  # freed memory leaves rss, not the peak
    assert peak_rss_mb() >= peak_during - 1  # the kernel updates its high-water mark lazily
