"""INT8 vs FP32 accuracy of a trained instance model in ONNX Runtime: mask/box AP on the whole val split.

Usage: flock /tmp/edgeseg-bench.lock python -m benchmarks.instance_int8 RECIPE --checkpoint RUN/model.pt
           [--calib 52] [--threads 2] [--out DIR] [--results benchmarks/results/NAME_int8] [--set k=v ...] [--quick]

``edgeseg.export`` writes the checkpoint (e.g. from ``benchmarks.instance_train``) to ONNX with dynamic
height/width and INT8 QDQ with edgeseg's CPU settings (u8 activations, s8 per-channel weights; the
task keeps the decode tail after the last convolutions in float), calibrated (minmax) on TRAINING-split
images, ``int8_policy=always``; export itself evaluates both files on every validation image at native
resolution. This script then scores both files with ``edgeseg.evaluate`` (every validation image at native
resolution, the numpy postprocess beside the runtime, the COCO evaluator: all mask and box APs).
``--quick``: 4 calibration images: a smoke run of the script (give it a quick instance_train checkpoint).
Writes RESULTS.{json,md}. Target (issue 9): INT8 mask AP within 1 point of FP32.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.export_int8 import onnx_artifact
from benchmarks.record import QUICK, ROOT, command_line, parse_options, results_stem, write_results

KEYS = ("mask_ap", "mask_ap50", "mask_ap75", "box_ap", "box_ap50")


def export_both(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """FP32 + INT8 ONNX of the checkpoint by ``edgeseg.export``, each scored by ``edgeseg.evaluate``;
    returns the INT8 artifact's record with ``metrics`` of both."""
    from edgeseg.evaluate import evaluate
    from edgeseg.export import export

    overrides = [f"export.calibration.images={args.calib}", "export.calibration.method=minmax",
                 "export.int8_policy=always", *args.overrides]
    doc = export(args.checkpoint, out, formats=["onnx"], precisions=["fp32", "int8"], recipe=args.recipe,
                 overrides=overrides)
    int8 = onnx_artifact(doc, "int8")
    files = {"fp32": onnx_artifact(doc, "fp32")["path"], "int8": int8["path"]}
    int8["metrics"] = {k: evaluate(path, recipe=args.recipe, overrides=args.overrides, threads=args.threads)
                       for k, path in files.items()}
    return int8


def markdown(name: str, int8: dict[str, Any], drop: dict[str, float]) -> list[str]:
    metrics, q = int8["metrics"], int8["quantization"]
    fp32 = metrics["fp32"]
    md = [f"# {name}: INT8 vs FP32 accuracy (ONNX Runtime CPU, numpy postprocess)", "",
          f"INT8 by `edgeseg.export`: ORT static QDQ (edgeseg CPU settings: u8 activations, s8 per-channel "
          f"weights; {len(q.get('excluded', {}))} nodes of the decode tail kept in float), minmax calibration on "
          f"{int8['calibration']['images']} training images; {q['quantized_nodes']} weighted nodes in INT8, "
          f"{q['skipped_nodes']} in float. Evaluated on all {fp32['num_images']} validation images "
          f"({fp32['num_instances']} instances) at native resolution, maxDets {fp32['max_dets']}.", "",
          "| precision | mask AP | mask AP50 | mask AP75 | box AP | box AP50 |", "|---|---:|---:|---:|---:|---:|"]
    md += [f"| {k.upper()} | " + " | ".join(f"{metrics[k][m]:.4f}" for m in KEYS) + " |" for k in ("fp32", "int8")]
    return md + ["", f"Drop FP32 -> INT8 (points): mask AP {drop['mask_ap']:+.2f}, mask AP50 {drop['mask_ap50']:+.2f}, "
                     f"box AP {drop['box_ap']:+.2f}. Target (mask AP within 1 point): "
                     f"{'met' if abs(drop['mask_ap']) <= 1.0 else 'NOT met'}."]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", type=Path)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--calib", type=int, default=52, help="training images used for calibration")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads while evaluating")
    ap.add_argument("--out", type=Path, default=None, help="export folder (default benchmarks/.runs/NAME_int8)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = parse_options(ap, None, argv, quick="4 calibration images")
    if args.quick:
        args.calib = 4

    from edgeseg.recipe import load_recipe

    name = load_recipe(args.recipe, args.overrides).name
    stem = f"{name.replace('-', '_')}_int8"
    out = args.out or (QUICK if args.quick else ROOT / "benchmarks" / ".runs") / stem
    int8 = export_both(args, out)
    acc = int8["metrics"]
    drop = {k: round(100 * (acc["fp32"][k] - acc["int8"][k]), 2) for k in ("mask_ap", "mask_ap50", "box_ap")}
    record = {"export": str(out), "calibration": int8["calibration"], "calibration_split": "train",
              "quantization": {k: v for k, v in int8["quantization"].items() if k != "excluded"},
              "float_nodes": len(int8["quantization"].get("excluded", {})), "val_images": acc["fp32"]["num_images"],
              "metrics": {k: acc[k] for k in ("fp32", "int8")}, "drop_points": drop,
              "target_mask_ap_within_1_point": abs(drop["mask_ap"]) <= 1.0}
    write_results(results_stem(args.results, stem, args.quick), record, markdown(name, int8, drop),
                  command=command_line(locked=True))


if __name__ == "__main__":
    main()
