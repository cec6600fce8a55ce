"""Time of the numpy instance postprocess (edgeseg.tasks.instance_postprocess) for 100 detections.

Usage: flock /tmp/edgeseg-bench.lock python -m benchmarks.instance_postprocess [--size 320] [--classes 80]
           [--detections 100] [--box-min 8] [--box-max 96] [--quick]

The raw outputs are those of yolact-lite at SIZE x SIZE (A = 2100 points at 320, 32 prototypes at
stride 4): logits that give exactly DETECTIONS survivors (well-separated boxes with side BOX_MIN..BOX_MAX
px, one class each; every other point scores under the threshold), prototypes/coefficients random.
Times postprocess() end to end (sigmoid, per-class Fast NMS, top-k, mask assembly, bilinear upsampling
inside each box, threshold) on one thread (numpy's BLAS pinned to 1 thread), median of many runs.
``--quick``: 10 runs: a smoke run of the script. Writes benchmarks/results/instance_postprocess.{json,md}. Target (issue 9): under 3 ms for 100 detections.
"""

from __future__ import annotations

import argparse
import os

if __name__ == "__main__":  # numpy's BLAS reads these when it loads; an importer (a test) keeps its own
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.record import command_line, parse_options, write_results  # noqa: E402


def synthetic_outputs(size: int, classes: int, dets: int, box_min: int, box_max: int,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """yolact-lite-shaped outputs with exactly ``dets`` surviving detections."""
    rng = np.random.default_rng(seed)
    a = sum((size // s) ** 2 for s in (8, 16, 32))
    k, hp = 32, size // 4
    scores = np.full((1, a, classes), -8.0, np.float32)
    boxes = np.zeros((1, a, 4), np.float32)
    centres = rng.uniform(0, size, (a, 2)).astype(np.float32)
    side = rng.uniform(box_min, box_max, (a, 1)).astype(np.float32)
    boxes[0] = np.concatenate([centres - side / 2, centres + side / 2], 1)
    # Detections: a grid of non-overlapping cells, one box per cell, so Fast NMS keeps all of them.
    cells = int(np.ceil(np.sqrt(dets)))
    cell = size / cells
    chosen = rng.choice(a, dets, replace=False)
    for j, p in enumerate(chosen):
        cy, cx = (j // cells + 0.5) * cell, (j % cells + 0.5) * cell
        half = min(rng.uniform(box_min, box_max), cell * 0.9) / 2
        boxes[0, p] = [cx - half, cy - half, cx + half, cy + half]
        scores[0, p, rng.integers(classes)] = rng.uniform(0.0, 4.0)
    return {"scores": scores, "boxes": boxes,
            "coefs": np.tanh(rng.standard_normal((1, a, k))).astype(np.float32),
            "protos": np.maximum(rng.standard_normal((1, k, hp, hp)), 0).astype(np.float32)}


def cpu_time_p50(fn: Callable[[], Any], runs: int) -> float:
    """Median CPU time (ms) of the calling thread per call: what the code costs, whatever share of the
    cores the scheduler gave it."""
    cpu = []
    for _ in range(runs):
        t0 = time.thread_time()
        fn()
        cpu.append(time.thread_time() - t0)
    return float(np.median(cpu) * 1e3)


def markdown(args: argparse.Namespace, outs: dict[str, np.ndarray], record: dict[str, Any]) -> list[str]:
    st, cpu_p50 = record["latency"], record["cpu_time_p50_ms"]
    return [f"# numpy instance postprocess, {args.detections} detections", "",
            "numpy BLAS on 1 thread.", "",
            f"Input: yolact-lite outputs at {args.size}x{args.size} ({outs['scores'].shape[1]} points, "
            f"{args.classes} classes, 32 prototypes {args.size // 4}x{args.size // 4}); {record['detections']} "
            f"detections, boxes {args.box_min}-{args.box_max} px, masks at {args.size}x{args.size}.", "",
            f"Wall clock: p50 {st['p50_ms']:.2f} ms, p90 {st['p90_ms']:.2f} ms, min {st['min_ms']:.2f} ms over "
            f"{st['runs']} runs; other processes used {record['other_processes_cores']} cores meanwhile. CPU time of "
            "the calling thread per call (what the code costs, independent of how often the scheduler ran it): "
            f"median {cpu_p50:.2f} ms over {args.runs} runs.", "",
            f"Target < 3 ms: wall p50 {'met' if st['p50_ms'] < 3.0 else 'NOT met'}, CPU time "
            f"{'met' if cpu_p50 < 3.0 else 'NOT met'}."]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--detections", type=int, default=100)
    ap.add_argument("--box-min", type=int, default=8)
    ap.add_argument("--box-max", type=int, default=96)
    ap.add_argument("--runs", type=int, default=200)
    args = parse_options(ap, "instance_postprocess", argv, quick="10 runs")
    if args.quick:
        args.runs = 10

    from edgeseg.bench.contention import CpuWatch
    from edgeseg.bench.latency import measure_latency
    from edgeseg.tasks.instance_postprocess import postprocess

    outs = synthetic_outputs(args.size, args.classes, args.detections, args.box_min, args.box_max)
    hw = (args.size, args.size)
    dets = postprocess(outs, input_hw=hw, image_hw=hw)[0]
    if len(dets) != args.detections:
        raise SystemExit(f"expected {args.detections} detections, postprocess gave {len(dets)}")
    with CpuWatch() as watch:
        st = measure_latency(lambda: postprocess(outs, input_hw=hw, image_hw=hw), warmup=10, min_runs=args.runs,
                             max_time_s=60.0, min_time_s=0.0 if args.quick else 2.0)
    cpu_p50 = cpu_time_p50(lambda: postprocess(outs, input_hw=hw, image_hw=hw), args.runs)
    record = {"detections": len(dets), "mask_pixels": int(dets.masks.sum()), "latency": st.to_dict(),
              "other_processes_cores": watch.other_cores, "cpu_time_p50_ms": cpu_p50,
              "target_under_3ms": {"wall_p50": st.p50_ms < 3.0, "cpu_time_p50": cpu_p50 < 3.0}}
    write_results(args.results, record,
                  markdown(args, outs, record), command=command_line(locked=True))


if __name__ == "__main__":
    main()
