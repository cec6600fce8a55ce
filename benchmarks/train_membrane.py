"""Train recipes/membrane_unet_lite.yaml and record its validation metrics and training throughput.

Usage: python benchmarks/train_membrane.py [--recipe R] [--out runs/bench_membrane] [--set k=v ...]
Writes benchmarks/results/membrane_unet_lite.json and .md (machine, versions, date, figures).
Target (issue 2): mean Dice >= 0.87 on splits/val.txt at 512x512 within 15 CPU-minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
from datetime import date
from pathlib import Path

from edgeseg.artifacts import atomic_write_json, atomic_write_text, library_versions
from edgeseg.bench.machine import cpu_model
from edgeseg.recipe import load_recipe
from edgeseg.train import train

ROOT = Path(__file__).resolve().parents[1]


def write_overlay_figure(model_pt: Path, recipe, path: Path) -> Path:
    """Prediction overlay of the first validation image beside its ground truth, as one PNG."""
    import tempfile

    from PIL import Image

    from edgeseg.predict import predict

    root = Path(recipe.data.root)
    stem = (root / "splits" / "val.txt").read_text().split()[0]
    with tempfile.TemporaryDirectory() as tmp:
        written = predict(model_pt, [root / "images" / f"{stem}.png"], tmp)
        overlay = Image.open(written[0]["overlay"]).convert("RGB")
    truth = Image.open(root / "masks" / f"{stem}.png").convert("RGB")
    w, h = overlay.size
    canvas = Image.new("RGB", (2 * w + 8, h), "white")
    canvas.paste(overlay, (0, 0))
    canvas.paste(truth, (w + 8, 0))
    canvas = canvas.resize((canvas.width // 2, canvas.height // 2), Image.LANCZOS)
    canvas.save(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "membrane_unet_lite.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_membrane"))
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "membrane_unet_lite"))
    args = ap.parse_args()

    import os
    import torch

    recipe = load_recipe(args.recipe, args.overrides)
    result = train(recipe, args.out)
    rows = list(csv.DictReader((Path(args.out) / "train_log.csv").open()))
    imgs_per_s = sum(float(r["images_per_s"]) for r in rows) / len(rows)
    m = result["metrics"]
    record = {
        "date": date.today().isoformat(), "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                                                      "torch_threads": torch.get_num_threads()},
        "versions": library_versions(), "recipe": recipe.to_dict(), "overrides": args.overrides,
        "train_seconds": result["train_seconds"], "train_images_per_s": round(imgs_per_s, 2),
        "epochs": recipe.train.epochs, "val_images": m["num_images"], "miou": m["miou"], "mean_dice": m["mean_dice"],
        "pixel_accuracy": m["pixel_accuracy"], "iou": m["iou"], "dice": m["dice"],
    }
    atomic_write_json(args.results + ".json", record)
    dice = ", ".join(f"{k} {v:.3f}" for k, v in m["dice"].items() if v is not None)
    md = (f"# membrane_unet_lite training benchmark\n\n"
          f"- date: {record['date']}; machine: {record['machine']['cpu']}, {record['machine']['cores']} cores, "
          f"torch {record['versions'].get('torch')} ({record['machine']['torch_threads']} threads)\n"
          f"- command: `python benchmarks/train_membrane.py {' '.join('--set ' + o for o in args.overrides)}`\n\n"
          f"| model | epochs | train time | train images/s | val images | mIoU | mean Dice | per-class Dice |\n"
          f"|---|---|---|---|---|---|---|---|\n"
          f"| {recipe.model.name} | {recipe.train.epochs} | {result['train_seconds'] / 60:.1f} min | "
          f"{imgs_per_s:.1f} | {m['num_images']} | {m['miou']:.4f} | {m['mean_dice']:.4f} | {dice} |\n")
    figure = write_overlay_figure(Path(args.out) / "model.pt", recipe, Path(args.results + "_val.png"))
    md += (f"\n![prediction overlay (left) and ground truth (right) of the first validation image]"
           f"({figure.name})\n")
    atomic_write_text(args.results + ".md", md)
    print(md)


if __name__ == "__main__":
    main()
