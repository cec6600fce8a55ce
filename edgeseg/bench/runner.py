"""Standalone benchmark runner for devices: numpy + one runtime (onnxruntime or tensorrt), no torch.

    python -m edgeseg.bench.runner model.int8.onnx model.onnx --out jetson.jsonl \
        [--backend onnxruntime|tensorrt] [--device cpu|cuda] [--threads 1,4] [--batch 1] \
        [--data DATASET_ROOT --split val]

Writes the same JSON lines as `edgeseg bench`; copy them back and merge them with `edgeseg report`.
Accuracy needs ``--data``: a folder dataset (ROOT/images + ROOT/masks [+ ROOT/splits]).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgeseg.bench.core import BenchSettings, base_row, bench_one, onnx_params
from edgeseg.bench.rows import append_rows


def _csv(text: str | None, kind: type = str) -> list[Any]:
    return [kind(v) for v in text.split(",") if v.strip()] if text else []


def run(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse ``argv``, bench every artifact, append the rows; returns them."""
    from edgeseg import runtime

    ap = argparse.ArgumentParser(prog="python -m edgeseg.bench.runner", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("results.jsonl"))
    ap.add_argument("--backend", default=None, help="comma list; default: by file suffix")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", default=None, help="comma list, e.g. 1,4 (default: runtime default)")
    ap.add_argument("--batch", default="1", help="comma list")
    ap.add_argument("--data", type=Path, default=None, help="folder dataset for accuracy")
    ap.add_argument("--split", default="val")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--min-runs", type=int, default=20)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args(argv)
    settings = BenchSettings(warmup=args.warmup, min_runs=args.min_runs, min_time_s=args.min_time,
                             memory=not args.no_memory)
    threads = _csv(args.threads, int) or [None]
    rows: list[dict[str, Any]] = []
    for path in args.artifacts:
        for wanted in _csv(args.backend) or [None]:
            name = runtime.backend_for(path, wanted)
            acc = None
            for t in threads:
                try:
                    be = runtime.open(path, backend=wanted, device=args.device, threads=t)
                except Exception as exc:  # noqa: BLE001  (report and go on with the next artifact)
                    print(f"runner: skipped {path} on {name}: {exc}", file=sys.stderr)
                    for b in _csv(args.batch, int):
                        rows.append({**base_row(path, name, args.device, t, b), "error": f"{type(exc).__name__}: {exc}"})
                    continue
                if args.data is not None and acc is None:
                    from edgeseg.bench.accuracy import folder_accuracy

                    acc = folder_accuracy(be, args.data, args.split)
                figures = {"params": onnx_params(path), "gmacs": None}
                for b in _csv(args.batch, int):
                    row = bench_one(path, be, backend_name=name, device=args.device, threads=t, batch=b,
                                    settings=settings, accuracy=acc, model_figures=figures)
                    rows.append(row)
                    lat = row.get("latency") or {}
                    print(f"{path.name} {name} threads={t} batch={b}: "
                          + (f"p50 {lat['p50_ms']:.2f} ms" if lat else row["error"]))
    append_rows(args.out, rows)
    print(f"{len(rows)} result lines appended to {args.out}")
    return rows


if __name__ == "__main__":
    run()
