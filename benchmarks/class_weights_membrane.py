"""Effect of class balancing on the ISBI 2012 membranes, where membrane is the minority class (~22%).

Usage: flock /tmp/edgeseg-bench.lock python -m benchmarks.class_weights_membrane [--epochs 6] [--size 128]
       [--repeats 4] [--out runs/class_weights] [--set k=v ...] [--quick]

Trains recipes/membrane_unet_lite.yaml briefly (smaller crops, fewer epochs: a few CPU-minutes in all)
once per variant with ``edgeseg.train``, all with the same seed, and reports each best checkpoint's
metrics on the WHOLE validation split (splits/val.txt, 6 images at 512x512). Variants: plain
cross-entropy; cross-entropy with median-frequency weights (SegNet's balancing); focal + Dice with
median-frequency weights. ``--quick``: 1 epoch of 64 px crops: a smoke run of the script, not results.
Writes benchmarks/results/class_weights_membrane.{json,md} (command, date, machine, versions).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.record import QUICK, ROOT, command_line, parse_options, write_results

VARIANTS = {
    "ce": ["train.loss=ce"],
    "ce + median_frequency": ["train.loss=ce", "train.class_weights=median_frequency"],
    "focal+dice + median_frequency": ["train.loss=focal+dice", "train.class_weights=median_frequency"],
}


def run_variant(recipe_path: str, common: list[str], name: str, extra: list[str], out: Path) -> dict[str, Any]:
    """Train one variant and return its row (class weights, whole-split metrics, training time)."""
    from edgeseg.recipe import load_recipe
    from edgeseg.train import train

    t0 = time.perf_counter()
    result = train(load_recipe(recipe_path, [*common, *extra]), out / name.replace(" + ", "_").replace("+", "_"))
    m = result["metrics"]
    print(f"{name}: mIoU {m['miou']:.4f}, IoU {m['iou']}, Dice {m['dice']}", flush=True)
    return {"variant": name, "overrides": extra, "train_seconds": round(time.perf_counter() - t0, 1),
            "class_weights": result.get("class_weights"), "val_images": m["num_images"],
            "miou": m["miou"], "mean_dice": m["mean_dice"], "pixel_accuracy": m["pixel_accuracy"],
            "iou": m["iou"], "dice": m["dice"]}


def markdown(runs: list[dict[str, Any]], common: list[str], epochs: int) -> list[str]:
    classes = list(runs[0]["iou"])
    head = " | ".join(f"{c} IoU | {c} Dice" for c in classes)
    md = [f"# Class balancing on the ISBI 2012 membranes ({epochs} short epochs, unet-lite)", "",
          f"Every run: `{' '.join('--set ' + o for o in common)}` on `recipes/membrane_unet_lite.yaml`, seed 0; "
          f"metrics on the whole validation split ({runs[0]['val_images']} images, 512x512, native size).", "",
          f"| variant | class weights | {head} | mIoU | train time |",
          "|---|---|" + "---|---|" * len(classes) + "---|---|"]
    for r in runs:
        cw = r["class_weights"]
        weights = ", ".join(f"{c} {w:.2f}" for c, w in zip(classes, cw["weights"])) if cw else "none"
        cells = " | ".join(f"{r['iou'][c]:.4f} | {r['dice'][c]:.4f}" for c in classes)
        md.append(f"| {r['variant']} | {weights} | {cells} | {r['miou']:.4f} | {r['train_seconds'] / 60:.1f} min |")
    return md


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "membrane_unet_lite.yaml"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=128, help="training crop side")
    ap.add_argument("--repeats", type=int, default=4, help="passes over the 24 training images per epoch")
    ap.add_argument("--out", default=str(ROOT / "runs" / "class_weights"))
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = parse_options(ap, "class_weights_membrane", argv, quick="1 epoch of 64 px crops")
    if args.quick:
        args.epochs, args.size, args.repeats, args.out = 1, 64, 1, str(QUICK / "class_weights")

    common = [f"train.epochs={args.epochs}", f"data.image_size={args.size}", f"data.train_repeats={args.repeats}",
              f"train.eval_every={args.epochs}", "train.warmup_epochs=0.5", *args.overrides]
    runs = [run_variant(args.recipe, common, name, extra, Path(args.out)) for name, extra in VARIANTS.items()]
    write_results(args.results, {"common_overrides": common, "runs": runs}, markdown(runs, common, args.epochs),
                  command=command_line(locked=True))


if __name__ == "__main__":
    main()
