"""Train recipes/membrane_unet_lite.yaml and record its validation metrics and training throughput.

Usage: python -m benchmarks.train_membrane [--recipe R] [--out runs/bench_membrane] [--set k=v ...] [--quick]
``--quick``: 1 epoch of 64 px crops: a smoke run of the script, not results.
Writes benchmarks/results/membrane_unet_lite.json and .md (machine, versions, date, figures).
Target (issue 2): mean Dice >= 0.87 on splits/val.txt at 512x512 within 15 CPU-minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from benchmarks.record import QUICK, ROOT, parse_options, write_results

QUICK_SET = ["train.epochs=1", "data.image_size=64", "data.train_repeats=1"]


def write_overlay_figure(model_pt: Path, recipe: Any, path: Path) -> Path:
    """Prediction overlay of the first validation image beside its ground truth, as one PNG."""
    import tempfile

    from PIL import Image

    from edgeseg.artifacts import atomic_output_path
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
    with atomic_output_path(path) as dst:
        canvas.save(dst, format="PNG")
    return path


def markdown(recipe: Any, result: dict[str, Any], imgs_per_s: float, figure: Path) -> list[str]:
    m = result["metrics"]
    dice = ", ".join(f"{k} {v:.3f}" for k, v in m["dice"].items() if v is not None)
    return ["# membrane_unet_lite training benchmark", "",
            "| model | epochs | train time | train images/s | val images | mIoU | mean Dice | per-class Dice |",
            "|---|---|---|---|---|---|---|---|",
            f"| {recipe.model.name} | {recipe.train.epochs} | {result['train_seconds'] / 60:.1f} min | "
            f"{imgs_per_s:.1f} | {m['num_images']} | {m['miou']:.4f} | {m['mean_dice']:.4f} | {dice} |", "",
            f"![prediction overlay (left) and ground truth (right) of the first validation image]({figure.name})"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "membrane_unet_lite.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_membrane"))
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = parse_options(ap, "membrane_unet_lite", argv, quick="1 epoch of 64 px crops")
    if args.quick:
        args.out = str(QUICK / "train_membrane")
        args.overrides = [*QUICK_SET, *args.overrides]

    from edgeseg.recipe import load_recipe
    from edgeseg.train import train

    recipe = load_recipe(args.recipe, args.overrides)
    result = train(recipe, args.out)
    rows = list(csv.DictReader((Path(args.out) / "train_log.csv").open()))
    imgs_per_s = sum(float(r["images_per_s"]) for r in rows) / len(rows)
    stem = args.results
    figure = write_overlay_figure(Path(args.out) / "model.pt", recipe, stem.with_name(stem.name + "_val.png"))
    m = result["metrics"]
    record = {"recipe": recipe.to_dict(), "overrides": args.overrides, "train_seconds": result["train_seconds"],
              "train_images_per_s": round(imgs_per_s, 2), "epochs": recipe.train.epochs,
              "val_images": m["num_images"], "miou": m["miou"], "mean_dice": m["mean_dice"],
              "pixel_accuracy": m["pixel_accuracy"], "iou": m["iou"], "dice": m["dice"]}
    write_results(stem, record, markdown(recipe, result, imgs_per_s, figure))


if __name__ == "__main__":
    main()
