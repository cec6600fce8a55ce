"""Step 1 of the compression benchmark, on a CUDA machine: train on membranes, prune 50% and fine-tune.

Trains unet, segnet, unet-lite and segnet-lite on ISBI-2012 membranes (recipes/membrane_unet_lite.yaml's
data and schedule, model swapped), then prunes each (``edgeseg.compress.prune``, L2 group magnitude,
round_to 8) and fine-tunes the pruned model with the same training loop (+ logit distillation).
Checkpoints are written with float16 weights (they load into float32 models unchanged in shape) so
they fit the transfer back; latency, INT8 and QAT are measured on the CPU by compress_bench.py.

Usage: python benchmarks/compress_train_gpu.py --data DATASET_ROOT --out DIR [--epochs N] [--ft-epochs N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# model -> (epochs multiplier, pruning ratios); lite models train longer relative to their cost.
PLAN = {"unet": (1.0, [0.5]), "segnet": (1.0, [0.5]), "unet-lite": (1.5, [0.25, 0.5]),
        "segnet-lite": (1.5, [0.25, 0.5])}


def half_checkpoint(path: Path) -> None:
    """Rewrite a checkpoint with float16 weights (layer shapes, config and meta unchanged)."""
    from edgeseg.artifacts.checkpoint import read_checkpoint

    payload = read_checkpoint(path)
    payload["model_state"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["model_state"].items()}
    for key in ("optimizer", "scheduler", "scaler"):
        payload.pop(key, None)
    torch.save(payload, path)


def main() -> None:
    from edgeseg.compress.prune import PruneConfig, prune
    from edgeseg.recipe import load_recipe
    from edgeseg.train import train

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--ft-epochs", type=int, default=15)
    ap.add_argument("--models", default=",".join(PLAN))
    ap.add_argument("--set", action="append", default=[], help="extra recipe overrides (smoke runs)")
    args = ap.parse_args()
    out = Path(args.out)
    summary = {}
    for name in args.models.split(","):
        mult, ratios = PLAN[name]
        epochs = int(args.epochs * mult)
        recipe = load_recipe(ROOT / "recipes" / "membrane_unet_lite.yaml",
                             [f"model.name={name}", f"data.root={args.data}", f"train.epochs={epochs}",
                              "train.eval_every=5", "data.workers=6", f"name=membrane-{name}", *args.set])
        t0 = time.time()
        res = train(recipe, out / name)
        summary[name] = {"epochs": epochs, "train_s": round(time.time() - t0, 1), "val": res["metrics"]}
        print(json.dumps({name: summary[name]["val"]["mean_dice"]}), flush=True)
        for ratio in ratios:
            tag = f"{name}-p{int(ratio * 100)}"
            t0 = time.time()
            doc = prune(out / name / "model.pt", out / tag,
                        PruneConfig(ratio=ratio, finetune_epochs=args.ft_epochs, distill=True, threads=4),
                        overrides=[f"data.root={args.data}", "train.eval_every=5", "data.workers=6", *args.set],
                        measure_latency=False)
            summary[tag] = {"prune_s": round(time.time() - t0, 1), "figures": doc["figures"]}
            half_checkpoint(out / tag / "model.pt")
            print(json.dumps({tag: doc["figures"]["after"].get("val", {}).get("mean_dice")}), flush=True)
        half_checkpoint(out / name / "model.pt")
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
