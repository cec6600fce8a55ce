"""ExecuTorch (XNNPACK) FP32/INT8 vs ONNX Runtime FP32/INT8 for the lite models, side by side in one run.

Usage: python -m benchmarks.executorch_vs_ort --prepare-only            # train + export (long; no lock)
       flock /tmp/edgeseg-bench.lock python -m benchmarks.executorch_vs_ort --timing-only
       [--size 256] [--threads 2] [--rounds 3] [--epochs 6] [--val-images 32] [--calib-images 16]
       [--work benchmarks/.runs/phone] [--quick]

Each model (unet-lite, segnet-lite, fcn-lite) trains briefly on the quickstart shapes (64 px; a finished
run in --work is reused), then `edgeseg.export` writes FP32 + INT8 ONNX and FP32 + INT8 .pte with
int8_policy=auto (the INT8 .pte with export.executorch.float_depthwise=auto: all-INT8 or depthwise convs
in float, whichever export timed faster; the table says which), calibrating on the TRAINING split at SIZE x SIZE and measuring accuracy on the whole
validation split rendered at SIZE x SIZE (the same images for every artifact). The four files of every
model are then timed side by side (benchmarks.timing) at batch 1 and THREADS threads: rounds alternate over all files,
median of the per-round p50s; run it under `flock /tmp/edgeseg-bench.lock` on a shared machine, and
each figure records how much CPU other processes used while it was timed.
``--quick``: unet-lite, 1 epoch, 64 px, 4 images, one short round: a smoke run of the script, not results.
Writes benchmarks/results/executorch_vs_ort.{json,md}.
Targets (issue 11): for every model the fastest ExecuTorch artifact is faster than the fastest ONNX
Runtime artifact (FP32 or INT8, shipped or not: stricter than "shipped today"), and ExecuTorch INT8 is faster than ExecuTorch FP32 within 0.5 mIoU points.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.export_int8 import QUICK_LATENCY, onnx_artifact
from benchmarks.record import QUICK, ROOT, command_line, parse_options, write_results
from benchmarks.timing import contention_note, side_by_side, targets_line

MODELS = ("unet-lite", "segnet-lite", "fcn-lite")
EXPORT_DIR = "export_et"  # beside a run folder's own export/, which other benchmarks may own
KINDS = ("onnx/fp32", "onnx/int8", "executorch/fp32", "executorch/int8")


def train_and_export(model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``model`` (reusing a finished run) and export FP32 + INT8 ONNX and .pte."""
    from edgeseg.export import export
    from edgeseg.recipe import ExportCfg, load_recipe
    from edgeseg.train import train

    run = args.work / model
    sets = [f"model.name={model}", f"train.threads={args.threads}"]
    if args.epochs is not None:
        sets.append(f"train.epochs={args.epochs}")
    if args.recipe is None:
        sets += [f"train.epochs={args.epochs or 6}", "train.eval_every=5", *args.train_set]
    if not (run / "train.json").exists():  # train.json marks a finished run; an interrupted one resumes
        train(load_recipe(args.recipe, sets), run, resume=(run / "last.pt").exists())
    done = run / EXPORT_DIR / "export.json"
    if done.exists():
        doc = json.loads(done.read_text())
        if not doc.get("error") and any(a["format"] == "executorch" for a in doc["artifacts"]):
            return doc
    cfg = ExportCfg(formats=["onnx", "executorch"], precisions=["fp32", "int8"], int8_policy="auto",
                    calibration={"images": args.calib_images})
    overrides = [f"data.image_size={args.size}"]
    if args.recipe is None:  # validation images rendered at SIZE (not 64 px resized up): same pixels for all
        overrides += [f"data.synthetic.size={args.size}", f"data.synthetic.num_val={args.val_images}"]
    return export(run / "model.pt", run / EXPORT_DIR, cfg=cfg, overrides=overrides)


def row_of(model: str, doc: dict[str, Any], latency: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One model's row: the four latencies, shipped flags, mIoU, and the ExecuTorch-vs-ORT ratios."""
    ms = {k: latency[f"{model}/{k}"]["p50_ms"] for k in KINDS}
    arts = {k: onnx_artifact(doc, k.split("/")[1], k.split("/")[0]) for k in KINDS}
    # Against the faster ONNX Runtime file in THIS side-by-side run, shipped or not: stricter than
    # "the fastest shipped", and independent of how busy the machine was when export decided.
    best_ort = min(KINDS[:2], key=ms.__getitem__)
    best_et = min(KINDS[2:], key=ms.__getitem__)
    et_acc, ort_acc = arts["executorch/int8"]["accuracy"], arts["onnx/int8"]["accuracy"]
    return {
        "model": model, "ms": ms, "shipped": {k: a["shipped"] for k, a in arts.items()},
        "export_decision": {k: a.get("reason", "") for k, a in arts.items() if k.endswith("int8")},
        "miou": {"onnx/fp32": ort_acc["fp32"]["miou"], "onnx/int8": ort_acc["int8"]["miou"],
                 "executorch/fp32": et_acc["fp32"]["miou"], "executorch/int8": et_acc["int8"]["miou"]},
        "val_images": et_acc["int8"]["num_images"],
        "calibration_images": arts["executorch/int8"]["calibration"]["images"],
        "fraction_delegated": {k: arts[k]["export"]["fraction_delegated"] for k in KINDS[2:]},
        "fastest_ort": best_ort, "fastest_executorch": best_et, "et_vs_ort": ms[best_ort] / ms[best_et],
        "et_int8_speedup": ms["executorch/fp32"] / ms["executorch/int8"],
        "et_int8_miou_drop_points": et_acc["miou_drop_points"],
        "et_int8_mixed_precision": arts["executorch/int8"].get("mixed_precision", {}),
        "noisy": any(latency[f"{model}/{k}"]["noisy"] for k in KINDS)}


def targets_of(rows: list[dict[str, Any]]) -> dict[str, bool | None]:
    targets = {f"{r['model']}: fastest ExecuTorch faster than fastest ONNX Runtime": r["et_vs_ort"] > 1.0
               for r in rows}
    targets.update({f"{r['model']}: ExecuTorch INT8 faster than FP32 within 0.5 mIoU points":
                    r["et_int8_speedup"] > 1.0 and r["et_int8_miou_drop_points"] <= 0.5 for r in rows})  # a gain is within
    return targets


def int8_form(r: dict[str, Any]) -> str:
    """Which INT8 .pte export chose (all-INT8 or depthwise in float) and the export-time figures."""
    mixed = r["et_int8_mixed_precision"]
    if not mixed:
        return "all INT8 (exported before float_depthwise)"
    timing = mixed.get("timing") or {}
    ms = timing.get("p50_ms", {})
    timed = f" ({' / '.join(f'{v:.1f}' for v in ms.values())}" if ms else ""
    if ms and timing.get("busy"):  # on a busy machine the median paired ratio decided, not the best p50s
        timed += f"; busy, median ratio {statistics.median(timing['ratios']):.2f}"
    timed += ")" if ms else ""
    chosen = f"{len(mixed['float_depthwise_nodes'])} depthwise float" if mixed["chosen"] != "int8" else "all INT8"
    return f"{chosen}, {mixed['float_depthwise']}{timed}"


def table_line(r: dict[str, Any]) -> str:
    cell = {k: f"{r['ms'][k]:.1f}{'' if r['shipped'][k] else '*'}" for k in KINDS}
    mi = r["miou"]
    return (f"| {r['model']} | {' | '.join(cell.values())} | {r['et_vs_ort']:.2f}x "
            f"({r['fastest_executorch'].split('/')[1]} vs {r['fastest_ort'].split('/')[1]}) | "
            f"{r['et_int8_speedup']:.2f}x | {mi['onnx/fp32']:.4f} / {mi['onnx/int8']:.4f} | "
            f"{mi['executorch/fp32']:.4f} / {mi['executorch/int8']:.4f} | {-r['et_int8_miou_drop_points']:+.2f} | "
            f"{r['fraction_delegated']['executorch/int8']:.0%} | {r['val_images']} | {int8_form(r)} |")


def markdown(rows: list[dict[str, Any]], latency: dict[str, Any], targets: dict[str, Any],
             args: argparse.Namespace) -> list[str]:
    data_note = (f"mIoU on the whole validation split of `{args.recipe}` ({rows[0]['val_images']} images, models "
                 "trained by that recipe)." if args.recipe else
                 f"mIoU on the whole synthetic-shapes validation split rendered at {args.size} px (models trained "
                 f"{args.epochs or 6} epochs at 64 px).")
    return [f"# ExecuTorch (XNNPACK) vs ONNX Runtime, CPU, batch 1, {args.size}x{args.size}, {args.threads} threads",
            "", f"Latency: median of {args.rounds} alternating rounds of p50 (ms). {data_note} INT8 calibrated on the "
            "training split. `*` = not shipped by export's int8_policy=auto (not faster than FP32 when export "
            "timed it).", "",
            "| model | ORT FP32 | ORT INT8 | ET FP32 | ET INT8 | ET best vs ORT best | ET INT8 speed-up | "
            "mIoU ORT FP32 / INT8 | mIoU ET FP32 / INT8 | ET INT8 Δ (pts) | delegated | val images | "
            "ET INT8 form (export-time ms: all-INT8 / float depthwise) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            *map(table_line, rows), "", contention_note(latency), "", targets_line(targets)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's; 6 synthetic)")
    ap.add_argument("--recipe", type=Path, default=None,
                    help="dataset recipe to train and measure on (default: the quickstart's synthetic shapes)")
    ap.add_argument("--val-images", type=int, default=32, help="validation split size (rendered at SIZE)")
    ap.add_argument("--calib-images", type=int, default=16, help="training images for INT8 calibration")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".runs" / "phone")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--prepare-only", action="store_true", help="train and export, time nothing (run it unlocked)")
    ap.add_argument("--timing-only", action="store_true", help="reuse the exports in --work; fail if missing")
    args = parse_options(ap, "executorch_vs_ort", argv, quick="unet-lite, 1 epoch, 64 px, 1 short round")
    args.train_set = []
    if args.quick:
        args.models, args.size, args.rounds, args.epochs = "unet-lite", 64, 1, 1
        args.val_images, args.calib_images, args.work = 4, 4, QUICK / "executorch_vs_ort"
        args.train_set = ["data.synthetic.num_train=16", "data.synthetic.num_val=4"]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    docs, files = {}, {}
    for model in args.models.split(","):
        if args.timing_only:
            docs[model] = json.loads((args.work / model / EXPORT_DIR / "export.json").read_text())
        else:
            docs[model] = train_and_export(model, args)
        files.update({f"{model}/{k}": Path(onnx_artifact(docs[model], k.split("/")[1], k.split("/")[0])["path"])
                      for k in KINDS})
    if args.prepare_only:
        return
    latency = side_by_side(files, (args.size, args.size), threads=args.threads, rounds=args.rounds,
                           latency=QUICK_LATENCY if args.quick else None)
    rows = [row_of(model, doc, latency) for model, doc in docs.items()]
    targets = targets_of(rows)
    record = {"input_size": [args.size, args.size], "rows": rows, "targets": targets, "latency": latency}
    write_results(args.results, record, markdown(rows, latency, targets, args), command=command_line(locked=True))


if __name__ == "__main__":
    main()
