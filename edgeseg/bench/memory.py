"""Peak memory of one artifact's inference, measured in a fresh subprocess.

Each artifact gets its own interpreter so one artifact's allocations (and allocator caches) never
pollute another's figure. The child reports resident memory after importing its runtime (baseline),
after loading the artifact, and the process's high-water mark after the timed runs
(:func:`peak_rss_mb`), plus the CUDA peak for torch on a GPU.

Run as ``python -m edgeseg.bench.memory ARTIFACT --backend B ...``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

MB = 1024 * 1024


def rss_mb() -> float:
    """Current resident set size in MiB (the same meaning on every OS)."""
    return psutil.Process().memory_info().rss / MB


def peak_rss_mb() -> float:
    """High-water mark of the resident set size in MiB.

    psutil reports the peak only on Windows (``peak_wset``); elsewhere it comes from the kernel's
    ``getrusage`` (``ru_maxrss``: KiB on Linux, where it equals ``VmHWM``, bytes on macOS).
    """
    info = psutil.Process().memory_info()
    peak = getattr(info, "peak_wset", None)
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return max(peak, info.rss) / MB


def gpu_process_mb(pid: int) -> float | None:
    """GPU memory ``nvidia-smi`` attributes to ``pid`` (None without nvidia-smi or when it lists none)."""
    import shutil

    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    used = [float(mem) for p, mem in (line.split(",") for line in out.strip().splitlines() if "," in line)
            if p.strip() == str(pid) and mem.strip().replace(".", "", 1).isdigit()]
    return sum(used) if used else None


def _probe(args: argparse.Namespace) -> dict[str, Any]:
    import importlib

    import numpy as np

    from edgeseg import catalog, runtime

    backend_name = runtime.backend_for(args.artifact, args.backend)
    # The runtime library itself counts as baseline, so "loaded" and "peak" are the artifact's own cost.
    record = catalog.BACKENDS[backend_name]
    libraries = [record.backend_class.split(":")[0], record.library]
    if backend_name == "openvino" and args.artifact.endswith(".onnx"):
        libraries.append("onnx")  # reads the ONNX metadata
    for name in libraries:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # runtime.open below reports the missing library
    baseline = rss_mb()
    options = {k: v for k, _, v in (o.partition("=") for o in args.option if "=" in o)}
    options.update({name: True for name in args.option if "=" not in name})
    be = runtime.open(Path(args.artifact), args.backend, device=args.device, threads=args.threads or None,
                      **options)
    loaded = rss_mb()
    x = np.random.default_rng(0).standard_normal((args.batch, be.meta.in_channels, args.height, args.width),
                                                 dtype=np.float32)
    for _ in range(args.runs):
        be(x)
    be.synchronize()
    result = {"rss_baseline_mb": round(baseline, 1), "rss_loaded_mb": round(loaded, 1),
              "peak_rss_mb": round(peak_rss_mb(), 1), "cuda_peak_mb": None, "gpu_process_mb": None,
              "runs": args.runs}
    result["model_load_mb"] = round(loaded - baseline, 1)
    result["inference_peak_mb"] = round(result["peak_rss_mb"] - baseline, 1)
    if backend_name == "torch" and args.device.startswith("cuda"):
        import torch

        result["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / MB, 1)
    elif args.device.startswith("cuda"):
        # ORT/TensorRT allocate outside torch: what the driver holds for this process after the runs
        # (their arenas keep the peak reserved, so this is close to the peak).
        result["gpu_process_mb"] = gpu_process_mb(os.getpid())
    return result


def measure_memory(artifact: str | Path, *, backend: str | None, device: str, threads: int | None, batch: int,
                   hw: tuple[int, int], runs: int = 3, timeout_s: float = 600,
                   options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the probe in a fresh interpreter; returns its figures or ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "edgeseg.bench.memory", str(artifact), "--device", device,
           "--threads", str(threads or 0), "--batch", str(batch), "--height", str(hw[0]), "--width", str(hw[1]),
           "--runs", str(runs)]
    if backend:
        cmd += ["--backend", backend]
    for name, value in (options or {}).items():
        if value is True:
            cmd += ["--option", name]
        elif isinstance(value, str):
            cmd += ["--option", f"{name}={value}"]
    env = {**os.environ, "EDGESEG_QUIET": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"memory probe timed out after {timeout_s:.0f} s"}
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"memory probe failed: {tail}"}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m edgeseg.bench.memory", description=__doc__)
    ap.add_argument("artifact")
    ap.add_argument("--backend", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--option", action="append", default=[], help="backend option: NAME (on) or NAME=TEXT, e.g. channels_last")
    print(json.dumps(_probe(ap.parse_args(argv))))


if __name__ == "__main__":
    main()
