"""The bench harness's own overhead: its p50 vs a bare ``InferenceSession.run`` loop on the same model.

Usage: python benchmarks/harness_overhead.py [--rounds 7] [--threads 2]

For unet-lite at 64x64 (a sub-millisecond call, where per-call overhead shows most) and 256x256,
both measurements run in one process on the same ONNX file with the same thread setting, in
alternating rounds; the figure is the median over rounds of harness p50 / bare p50.
Writes benchmarks/results/harness_overhead.{json,md}. Target (issue 4): within 5%.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def bare_p50(session, name: str, x: np.ndarray, runs: int, warmup: int = 5) -> float:
    """p50 (ms) of a plain loop: ``session.run`` bracketed by perf_counter, nothing else."""
    for _ in range(warmup):
        session.run(None, {name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return float(np.percentile(np.asarray(times) * 1e3, 50))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "harness_overhead")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from edgeseg import runtime
    from edgeseg.artifacts import atomic_write_json, atomic_write_text, library_versions
    from edgeseg.bench.latency import measure_latency
    from edgeseg.bench.machine import machine_info
    from edgeseg.export.torch2onnx import export_onnx
    from edgeseg.models import create_model
    from edgeseg.recipe import load_recipe
    from edgeseg.train.meta import meta_for

    torch.manual_seed(0)
    net = create_model("unet-lite", num_classes=4, in_channels=3).eval()
    meta = meta_for(net, load_recipe(None))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unet-lite.onnx"
        export_onnx(net, meta, path, hw=(64, 64))
        for size, runs in ((64, 400), (256, 60)):
            x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
            session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            backend = runtime.open(path, threads=args.threads)
            ratios, bares, harness = [], [], []
            for _ in range(args.rounds):
                b = bare_p50(session, name, x, runs)
                h = measure_latency(lambda: backend(x), sync=backend.synchronize, warmup=5, min_runs=runs,
                                    min_time_s=0.0).p50_ms
                bares.append(b)
                harness.append(h)
                ratios.append(h / b)
            results.append({"input": [1, 3, size, size], "runs_per_round": runs, "rounds": args.rounds,
                            "bare_p50_ms": statistics.median(bares), "harness_p50_ms": statistics.median(harness),
                            "ratio_median": statistics.median(ratios), "ratios": ratios})
    record = {"command": f"python benchmarks/harness_overhead.py --rounds {args.rounds} --threads {args.threads}",
              "machine": machine_info(), "versions": library_versions(), "threads": args.threads,
              "model": "unet-lite (random init; latency does not depend on weights)", "results": results}
    atomic_write_json(args.results.with_suffix(".json"), record)
    md = ["# Bench harness overhead vs a bare InferenceSession.run loop", "",
          f"Machine: {record['machine']['cpu']}, {record['machine']['usable_cores']} cores; "
          f"onnxruntime {record['versions'].get('onnxruntime')}; {args.threads} threads; command: `{record['command']}`.",
          "", "| input | bare p50 (ms) | harness p50 (ms) | harness / bare (median of rounds) |", "|---|---:|---:|---:|"]
    for r in results:
        md.append(f"| {'x'.join(map(str, r['input']))} | {r['bare_p50_ms']:.3f} | {r['harness_p50_ms']:.3f} | "
                  f"{r['ratio_median']:.3f} ({(r['ratio_median'] - 1) * 100:+.1f}%) |")
    atomic_write_text(args.results.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
