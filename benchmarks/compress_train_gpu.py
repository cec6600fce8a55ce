"""Step 1 of the compression benchmark, on a CUDA machine: train on membranes, prune and fine-tune.

Trains unet, segnet, unet-lite and segnet-lite on ISBI-2012 membranes (recipes/membrane_unet_lite.yaml's
data and schedule, model swapped) with ``edgeseg.train``, then prunes each (``edgeseg.prune``, L2 group
magnitude, round_to 8) and fine-tunes the pruned model with the same training loop (+ logit distillation).
Checkpoints are written with float16 weights (they load into float32 models unchanged in shape) so
they fit the transfer back; latency, INT8 and QAT are measured on the CPU by ``benchmarks.compress_bench``,
which reads OUT/summary.json.

Usage: python -m benchmarks.compress_train_gpu --data DATASET_ROOT --out DIR [--epochs N] [--ft-epochs N] [--quick]
``--quick``: unet-lite, 1 epoch, one pruning ratio, 1 fine-tuning epoch on the CPU: a smoke run, not results.
Writes OUT/summary.json (after every model) and benchmarks/results/compress_train_gpu.{json,md}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.record import QUICK, ROOT, parse_options, write_results

# model -> (epochs multiplier, pruning ratios); lite models train longer relative to their cost.
PLAN = {"unet": (1.0, [0.5]), "segnet": (1.0, [0.5]), "unet-lite": (1.5, [0.25, 0.5]),
        "segnet-lite": (1.5, [0.25, 0.5])}
QUICK_SET = ["data.image_size=64", "data.train_repeats=1", "data.workers=0", "train.eval_every=1"]


def half_checkpoint(path: Path) -> None:
    """Rewrite a checkpoint with float16 weights (layer shapes, config and meta unchanged), atomically."""
    import torch

    from edgeseg.artifacts import atomic_output_path
    from edgeseg.artifacts.checkpoint import read_checkpoint

    payload = read_checkpoint(path)
    payload["model_state"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["model_state"].items()}
    for key in ("optimizer", "scheduler", "scaler"):
        payload.pop(key, None)
    with atomic_output_path(path) as tmp:
        torch.save(payload, tmp)


def train_and_prune(name: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Train ``name``, prune it at each of its ratios with fine-tuning; the figures by run name."""
    from edgeseg.compress.prune import PruneConfig, prune
    from edgeseg.recipe import load_recipe
    from edgeseg.train import train

    mult, ratios = PLAN[name]
    epochs = max(1, int(args.epochs * mult))
    data = [f"data.root={args.data}"] if args.data else []
    recipe = load_recipe(ROOT / "recipes" / "membrane_unet_lite.yaml",
                         [f"model.name={name}", *data, f"train.epochs={epochs}", "train.eval_every=5",
                          "data.workers=6", f"name=membrane-{name}", *args.set])
    t0 = time.time()
    res = train(recipe, out / name)
    figures = {name: {"epochs": epochs, "train_s": round(time.time() - t0, 1), "val": res["metrics"]}}
    print(f"{name}: mean Dice {res['metrics']['mean_dice']:.4f}", flush=True)
    for ratio in ratios[:1] if args.quick else ratios:
        tag = f"{name}-p{int(ratio * 100)}"
        t0 = time.time()
        doc = prune(out / name / "model.pt", out / tag,
                    PruneConfig(ratio=ratio, finetune_epochs=args.ft_epochs, distill=True, threads=4),
                    overrides=[*data, "train.eval_every=5", "data.workers=6", *args.set], measure_latency=False)
        figures[tag] = {"prune_s": round(time.time() - t0, 1), "figures": doc["figures"]}
        half_checkpoint(out / tag / "model.pt")
        print(f"{tag}: mean Dice {doc['figures']['after'].get('val', {}).get('mean_dice')}", flush=True)
    half_checkpoint(out / name / "model.pt")
    return figures


def markdown(summary: dict[str, Any]) -> list[str]:
    lines = ["# Membranes: trained and pruned + fine-tuned models (whole val split)", "",
             "| run | epochs / prune s | mean Dice | mIoU |", "|---|---:|---:|---:|"]
    for tag, fig in summary.items():
        val = fig["val"] if "val" in fig else fig["figures"]["after"].get("val", {})
        lines.append(f"| {tag} | {fig.get('epochs', fig.get('prune_s'))} | {val.get('mean_dice', float('nan')):.4f} | "
                     f"{val.get('miou', float('nan')):.4f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    from edgeseg.artifacts import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="dataset root (default: the recipe's)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--ft-epochs", type=int, default=15)
    ap.add_argument("--models", default=",".join(PLAN))
    ap.add_argument("--set", action="append", default=[], help="extra recipe overrides (smoke runs)")
    args = parse_options(ap, "compress_train_gpu", argv, quick="unet-lite, 1 epoch, 1 ratio, on the CPU")
    if args.quick:
        args.models, args.epochs, args.ft_epochs = "unet-lite", 1, 1
        args.out, args.set = args.out or QUICK / "compress_train_gpu", [*QUICK_SET, *args.set]
    if args.out is None:
        ap.error("--out is required")
    summary: dict[str, Any] = {}
    for name in args.models.split(","):
        summary.update(train_and_prune(name, args, args.out))
        atomic_write_json(args.out / "summary.json", summary)  # what compress_bench reads (--runs)
    write_results(args.results, {"summary": summary},
                  markdown(summary))


if __name__ == "__main__":
    main()
