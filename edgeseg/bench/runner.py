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

from edgeseg.bench.core import BenchSettings, usable_cores
from edgeseg.bench.sweep import Sweep, run_sweep


def _csv(text: str | None, kind: type = str) -> list[Any]:
    return [kind(v) for v in text.split(",") if v.strip()] if text else []


def _hw(text: str) -> tuple[int, int]:
    """``64`` or ``48x64`` -> (H, W), positive."""
    try:
        hw = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        hw = ()
    if len(hw) not in (1, 2) or min(hw) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size like 256 or 192x256, got {text!r}")
    return (hw[0], hw[-1])


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
    ap.add_argument("--size", type=_hw, default=None, metavar="HxW",
                    help="input size of an ONNX file without edgeseg metadata whose height/width are dynamic")
    ap.add_argument("--custom-op-library", type=Path, default=None,
                    help="native library for a model's custom ONNX operators (onnxruntime): only one you trust")
    return ap


def _accuracy(backend: Any, data: Path, split: str) -> dict[str, Any]:
    from edgeseg.bench.accuracy import folder_accuracy, npz_accuracy

    if getattr(backend, "foreign", False):  # no classes or normalisation to score it with
        raise ValueError(f"{backend.path.name} has no edgeseg metadata: timed only; score it with "
                         "`edgeseg eval FILE --data RECIPE`")
    if data.suffix.lower() == ".npz":
        return npz_accuracy(backend, data)
    return folder_accuracy(backend, data, split)


def _adopt(backend: Any, size: tuple[int, int] | None) -> None:
    """An ONNX file without edgeseg metadata: timed from its graph alone (accuracy needs edgeseg metadata here)."""
    from edgeseg.foreign import adopt_foreign

    print(f"runner: {adopt_foreign(backend, None, size)}", file=sys.stderr)


def _print_row(row: dict[str, Any]) -> None:
    lat = row.get("latency") or {}
    print(f"{row['artifact']['name']} {row['backend']} threads={row['threads']} batch={row['batch']}: "
          + (f"p50 {lat['p50_ms']:.2f} ms{' (noisy)' if row.get('noisy') else ''}" if lat else row["error"]))


def run(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse ``argv``, bench every artifact, append the rows to ``--out``; returns them."""
    args = _parser().parse_args(argv)
    if args.data is not None and not args.data.exists():
        raise SystemExit(f"--data {args.data}: not found; expected a folder dataset or a .npz file")
    settings = BenchSettings(warmup=args.warmup, min_runs=args.min_runs, min_time_s=args.min_time,
                             memory=not args.no_memory)
    # a folder stands for its files (`edgeseg optimize --plan` writes one of candidates)
    files = [f for p in args.artifacts for f in (sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p])]
    sweep = Sweep(artifacts=files, backends=_csv(args.backend), device=args.device,
                  threads=_csv(args.threads, int) or [usable_cores()], batches=_csv(args.batch, int) or [1],
                  settings=settings, allow_torch=False,
                  custom_op_library=args.custom_op_library)
    sweep.adopt = lambda backend: _adopt(backend, args.size)
    accuracy = (lambda backend: _accuracy(backend, args.data, args.split)) if args.data is not None else None
    rows = run_sweep(sweep, args.out, accuracy=accuracy, say=lambda msg: print(f"runner: {msg}", file=sys.stderr),
                     on_row=_print_row)
    print(f"{len(rows)} result lines appended to {args.out}")
    return rows


if __name__ == "__main__":
    run()
