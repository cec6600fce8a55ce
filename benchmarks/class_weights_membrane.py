"""Effect of class balancing on the ISBI 2012 membranes, where membrane is the minority class (~22%).

Usage: flock /tmp/edgeseg-bench.lock python benchmarks/class_weights_membrane.py [--epochs 6] [--size 128]
       [--repeats 4] [--out runs/class_weights] [--set k=v ...]

Trains recipes/membrane_unet_lite.yaml briefly (smaller crops, fewer epochs: a few CPU-minutes in all)
once per variant, all with the same seed, and evaluates each best checkpoint on the WHOLE validation
split (splits/val.txt, 6 images at 512x512). Variants: plain cross-entropy; cross-entropy with
median-frequency weights (SegNet's balancing); focal + Dice with median-frequency weights.
Writes benchmarks/results/class_weights_membrane.{json,md} (command, date, machine, versions).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

from edgeseg.artifacts import atomic_write_json, atomic_write_text, library_versions
from edgeseg.bench.machine import cpu_model
from edgeseg.recipe import load_recipe
from edgeseg.train import train

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "ce": ["train.loss=ce"],
    "ce + median_frequency": ["train.loss=ce", "train.class_weights=median_frequency"],
    "focal+dice + median_frequency": ["train.loss=focal+dice", "train.class_weights=median_frequency"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "membrane_unet_lite.yaml"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=128, help="training crop side")
    ap.add_argument("--repeats", type=int, default=4, help="passes over the 24 training images per epoch")
    ap.add_argument("--out", default=str(ROOT / "runs" / "class_weights"))
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "class_weights_membrane"))
    args = ap.parse_args()

    import torch

    common = [f"train.epochs={args.epochs}", f"data.image_size={args.size}", f"data.train_repeats={args.repeats}",
              f"train.eval_every={args.epochs}", "train.warmup_epochs=0.5", *args.overrides]
    runs = []
    for name, extra in VARIANTS.items():
        recipe = load_recipe(args.recipe, [*common, *extra])
        out = Path(args.out) / name.replace(" + ", "_").replace("+", "_")
        t0 = time.perf_counter()
        result = train(recipe, out)
        m = result["metrics"]
        runs.append({"variant": name, "overrides": extra, "train_seconds": round(time.perf_counter() - t0, 1),
                     "class_weights": result.get("class_weights"), "val_images": m["num_images"],
                     "miou": m["miou"], "mean_dice": m["mean_dice"], "pixel_accuracy": m["pixel_accuracy"],
                     "iou": m["iou"], "dice": m["dice"]})
        print(f"{name}: mIoU {m['miou']:.4f}, IoU {m['iou']}, Dice {m['dice']}", flush=True)

    command = "flock /tmp/edgeseg-bench.lock python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    record = {"date": date.today().isoformat(), "command": command,
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()},
              "versions": library_versions(), "common_overrides": common, "runs": runs}
    atomic_write_json(args.results + ".json", record)
    classes = list(runs[0]["iou"])
    head = " | ".join(f"{c} IoU | {c} Dice" for c in classes)
    md = [f"# Class balancing on the ISBI 2012 membranes ({args.epochs} short epochs, unet-lite)", "",
          f"- date: {record['date']}; machine: {record['machine']['cpu']}, {record['machine']['cores']} cores, "
          f"torch {record['versions'].get('torch')} ({record['machine']['torch_threads']} threads)",
          f"- command: `{command}`",
          f"- every run: `{' '.join('--set ' + o for o in common)}` on `recipes/membrane_unet_lite.yaml`, seed 0; "
          f"metrics on the whole validation split ({runs[0]['val_images']} images, 512x512, native size)", "",
          f"| variant | class weights | {head} | mIoU | train time |",
          "|---|---|" + "---|---|" * len(classes) + "---|---|"]
    for r in runs:
        cw = r["class_weights"]
        weights = ", ".join(f"{c} {w:.2f}" for c, w in zip(classes, cw["weights"])) if cw else "none"
        cells = " | ".join(f"{r['iou'][c]:.4f} | {r['dice'][c]:.4f}" for c in classes)
        md.append(f"| {r['variant']} | {weights} | {cells} | {r['miou']:.4f} | {r['train_seconds'] / 60:.1f} min |")
    atomic_write_text(args.results + ".md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
