"""Standalone benchmark runner for devices: numpy + one runtime (onnxruntime or tensorrt), no torch.

    python -m edgeseg.bench.runner model.int8.onnx model.onnx --out jetson.jsonl \
        [--backend onnxruntime|tensorrt] [--device cpu|cuda] [--threads 1,4] [--batch 1] \
        [--data DATASET_ROOT | --data val.npz] [--split val]

Writes the same JSON lines as `edgeseg bench`; copy them back and merge them with `edgeseg report`.
Latency and memory are always measured. Accuracy needs ``--data``: a folder dataset
(ROOT/images + ROOT/masks [+ ROOT/splits], read with PIL) or a ``.npz`` with ``images`` (N x H x W x C
or N x H x W uint8 pixels, normalised with the artifact's mean/std) and ``masks`` (N x H x W class
indices; the artifact's ignore index is skipped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgeseg.bench.backends import check_backends, skip_reason
from edgeseg.bench.core import BenchSettings, base_row, bench_input_hw, bench_one, usable_cores
from edgeseg.bench.figures import model_figures
from edgeseg.bench.rows import append_rows


def _csv(text: str | None, kind: type = str) -> list[Any]:
    return [kind(v) for v in text.split(",") if v.strip()] if text else []


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m edgeseg.bench.runner", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("results.jsonl"))
    ap.add_argument("--backend", default=None, help="comma list; default: by file suffix")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", default=None, help="comma list, e.g. 1,4 (default: the usable cores)")
    ap.add_argument("--batch", default="1", help="comma list")
    ap.add_argument("--data", type=Path, default=None, help="folder dataset or .npz for accuracy")
    ap.add_argument("--split", default="val", help="split of a folder dataset")
    ap.add_argument("--warmup", type=int, default=BenchSettings.warmup)
    ap.add_argument("--min-runs", type=int, default=BenchSettings.min_runs)
    ap.add_argument("--min-time", type=float, default=BenchSettings.min_time_s, help="seconds")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocess")
    ap.add_argument("--custom-op-library", type=Path, default=None,
                    help="native library for a model's custom ONNX operators (onnxruntime): only one you trust")
    return ap


def _accuracy(backend: Any, data: Path, split: str) -> dict[str, Any]:
    from edgeseg.bench.accuracy import folder_accuracy, npz_accuracy

    if data.suffix.lower() == ".npz":
        return npz_accuracy(backend, data)
    return folder_accuracy(backend, data, split)


def run(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse ``argv``, bench every artifact, append the rows to ``--out``; returns them."""
    from edgeseg import runtime

    args = _parser().parse_args(argv)
    if args.data is not None and not args.data.exists():
        raise SystemExit(f"--data {args.data}: not found; expected a folder dataset or a .npz file")
    check_backends(_csv(args.backend))
    settings = BenchSettings(warmup=args.warmup, min_runs=args.min_runs, min_time_s=args.min_time,
                             memory=not args.no_memory)
    threads = _csv(args.threads, int) or [usable_cores()]
    batches = _csv(args.batch, int) or [1]
    rows: list[dict[str, Any]] = []
    for path in args.artifacts:
        start = len(rows)
        for wanted in _csv(args.backend) or [None]:
            reason = skip_reason(path, wanted) if wanted else None
            if reason:
                print(f"runner: {reason}", file=sys.stderr)
                continue
            try:
                name = runtime.backend_for(path, wanted)
            except runtime.BackendError:
                name = "unknown"  # an unknown suffix: runtime.open fails below and the row says why
            acc = None
            options = runtime.trust_options(name, custom_op_library=args.custom_op_library)
            for t in threads:
                try:
                    be = runtime.open(path, wanted, device=args.device, threads=t, **options)
                except Exception as exc:  # noqa: BLE001  (report and go on with the next configuration)
                    print(f"runner: skipped {path} on {name}: {exc}", file=sys.stderr)
                    rows += [{**base_row(path, name, args.device, t, b), "error": f"{type(exc).__name__}: {exc}"}
                             for b in batches]
                    continue
                if args.data is not None and acc is None:
                    try:
                        acc = _accuracy(be, args.data, args.split)
                    except Exception as exc:  # noqa: BLE001  (latency and memory are still worth having)
                        acc = {"error": f"{type(exc).__name__}: {exc}"}
                        print(f"runner: no accuracy for {path} on {name}: {exc}", file=sys.stderr)
                hw = bench_input_hw(be)
                figures = model_figures(path, be, hw, allow_torch=False)
                for b in batches:
                    try:
                        row = bench_one(path, be, backend_name=name, device=args.device, threads=t, batch=b,
                                        settings=settings, accuracy=acc, model_figures=figures, options=options)
                    except Exception as exc:  # noqa: BLE001
                        row = {**base_row(path, name, args.device, t, b), "error": f"{type(exc).__name__}: {exc}"}
                    rows.append(row)
                    lat = row.get("latency") or {}
                    print(f"{path.name} {name} threads={t} batch={b}: "
                          + (f"p50 {lat['p50_ms']:.2f} ms{' (noisy)' if row.get('noisy') else ''}"
                             if lat else row["error"]))
                del be
        append_rows(args.out, rows[start:])  # per artifact: an interrupted run keeps what it measured
    print(f"{len(rows)} result lines appended to {args.out}")
    return rows


if __name__ == "__main__":
    run()
