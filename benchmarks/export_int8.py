"""FP32 vs INT8 ONNX Runtime latency and accuracy of unet, unet-lite, segnet, segnet-lite, in one run.

Usage: python -m benchmarks.export_int8 [--size 256] [--threads 2] [--rounds 3] [--work benchmarks/.runs/int8]
       [--models unet-lite,...] [--quick]

Each model trains on the quickstart shapes (64 px crops; the full models, ~100x the MACs, get only 8
epochs of 256 images on this CPU: the comparison FP32 vs INT8 on the same weights is what matters; a
finished run in --work is reused, an interrupted one resumes), then `edgeseg.export` writes FP32 + INT8
QDQ ONNX with int8_policy=auto, calibrating on the TRAINING split and deciding at SIZE x SIZE. This script then times
every FP32/INT8 pair side by side (benchmarks.timing: rounds alternate between all files, median of the
per-round p50s) at batch 1 and takes each artifact's mIoU on the whole validation split from export.json.
``--quick``: one lite model, 1 epoch, 64 px, one short round: a smoke run of the script, not results.
Writes benchmarks/results/export_int8.{json,md}.
Targets (issue 3): unet INT8 >= 1.7x faster than FP32 with mIoU within 0.5 points; no shipped INT8
slower than its FP32.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.record import QUICK, ROOT, parse_options, write_results
from benchmarks.timing import contention_note, side_by_side, targets_line

# (model, training overrides): full models are ~100x the MACs of the lite ones, so fewer images/epochs.
MODELS = {
    "unet-lite": ["train.epochs=40"],
    "segnet-lite": ["train.epochs=40"],
    "unet": ["train.epochs=8", "data.synthetic.num_train=256", "train.lr=0.002"],
    "segnet": ["train.epochs=8", "data.synthetic.num_train=256", "train.lr=0.002"],
}
QUICK_TRAIN = ["train.epochs=1", "data.synthetic.num_train=16", "data.synthetic.num_val=4"]
QUICK_LATENCY = {"warmup": 1, "min_runs": 3, "min_time_s": 0.0, "max_time_s": 5.0}


def train_and_export(model: str, extra: list[str], work: Path, size: int, threads: int,
                     calibration: int = 32) -> dict[str, Any]:
    """Train ``model`` on the quickstart shapes (reusing a finished run) and export FP32 + INT8 ONNX."""
    from edgeseg.export import export
    from edgeseg.recipe import ExportCfg, load_recipe
    from edgeseg.train import train

    run = work / model
    recipe = load_recipe(None, [f"model.name={model}", f"train.threads={threads}", *extra])
    if not (run / "train.json").exists():  # train.json marks a finished run; an interrupted one resumes
        train(recipe, run, resume=(run / "last.pt").exists())
    cfg = ExportCfg(precisions=["fp32", "int8"], int8_policy="auto", calibration={"images": calibration})
    return export(run / "model.pt", run / "export", cfg=cfg, overrides=[f"data.image_size={size}"])


def onnx_artifact(doc: dict[str, Any], precision: str, fmt: str = "onnx") -> dict[str, Any]:
    """The export.json record of the ``fmt`` file in ``precision``."""
    return next(a for a in doc["artifacts"] if a["format"] == fmt and a["precision"] == precision)


def row_of(model: str, doc: dict[str, Any], latency: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One table row: latency of both files, the INT8 file's accuracy and export decision."""
    int8 = onnx_artifact(doc, "int8")
    acc = int8["accuracy"]
    fp32_ms, int8_ms = latency[f"{model}/fp32"]["p50_ms"], latency[f"{model}/int8"]["p50_ms"]
    return {"model": model, "fp32_ms": fp32_ms, "int8_ms": int8_ms, "speedup": fp32_ms / int8_ms,
            "fp32_miou": acc["fp32"]["miou"], "int8_miou": acc["int8"]["miou"],
            "miou_drop_points": acc["miou_drop_points"], "val_images": acc["int8"]["num_images"],
            "calibration_images": int8["calibration"]["images"], "shipped": int8["shipped"],
            "export_decision": int8["reason"], "export_speedup": int8["speedup"],
            "quantized_nodes": int8["quantization"]["quantized_nodes"],
            "noisy": latency[f"{model}/fp32"]["noisy"] or latency[f"{model}/int8"]["noisy"]}


def targets_of(rows: list[dict[str, Any]]) -> dict[str, bool | None]:
    unet = next((r for r in rows if r["model"] == "unet"), None)
    return {"unet_speedup_ge_1.7": unet["speedup"] >= 1.7 if unet else None,
            "unet_miou_within_0.5_points": abs(unet["miou_drop_points"]) <= 0.5 if unet else None,
            "no_shipped_int8_slower": all(r["speedup"] >= 1.0 for r in rows if r["shipped"])}


def markdown(rows: list[dict[str, Any]], latency: dict[str, Any], targets: dict[str, Any],
             args: argparse.Namespace) -> list[str]:
    md = [f"# FP32 vs INT8 (ONNX Runtime CPU, batch 1, {args.size}x{args.size}, {args.threads} threads)", "",
          f"Latency: median of {args.rounds} alternating rounds of p50. mIoU on the whole synthetic-shapes "
          "validation split; INT8 calibrated on the training split.", "",
          "| model | FP32 ms | INT8 ms | speed-up | FP32 mIoU | INT8 mIoU | Δ (pts) | val images | INT8 shipped (auto) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['fp32_ms']:.1f} | {r['int8_ms']:.1f} | {r['speedup']:.2f}x | "
                  f"{r['fp32_miou']:.4f} | {r['int8_miou']:.4f} | {-r['miou_drop_points']:+.2f} | {r['val_images']} | "
                  f"{'yes' if r['shipped'] else 'no: ' + r['export_decision'].split(';')[0]} |")
    return md + ["", contention_note(latency), "", targets_line(targets)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".runs" / "int8")
    ap.add_argument("--models", default=",".join(MODELS))
    args = parse_options(ap, "export_int8", argv, quick="unet-lite, 1 epoch, 64 px, 1 short round")
    if args.quick:
        args.models, args.size, args.rounds, args.work = "unet-lite", 64, 1, QUICK / "export_int8"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    docs, files = {}, {}
    for model in args.models.split(","):
        extra = [*MODELS[model], *QUICK_TRAIN] if args.quick else MODELS[model]
        docs[model] = train_and_export(model, extra, args.work, args.size, args.threads, 4 if args.quick else 32)
        files.update({f"{model}/{p}": Path(onnx_artifact(docs[model], p)["path"]) for p in ("fp32", "int8")})
    latency = side_by_side(files, (args.size, args.size), threads=args.threads, rounds=args.rounds,
                           latency=QUICK_LATENCY if args.quick else None)
    rows = [row_of(model, doc, latency) for model, doc in docs.items()]
    targets = targets_of(rows)
    record = {"input": [1, 3, args.size, args.size], "rows": rows, "targets": targets, "latency": latency}
    write_results(args.results, record, markdown(rows, latency, targets, args))


if __name__ == "__main__":
    main()
