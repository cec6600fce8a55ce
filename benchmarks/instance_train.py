"""Train an instance recipe on the CPU with `edgeseg.train` and evaluate COCO mask/box AP on its whole val split.

Usage: flock /tmp/edgeseg-bench.lock python -m benchmarks.instance_train RECIPE [--epochs N] [--threads 2]
           [--out benchmarks/.runs/NAME] [--results benchmarks/results/NAME] [--set key=value ...] [--quick]

Training is the library's loop (``edgeseg.train``: the recipe's optimizer, warm-up and schedule, YOLACT
loss with ``instance.loss``), for the recipe's epochs unless ``--epochs`` is given. Evaluation is
``edgeseg.evaluate`` of the best checkpoint on every validation image at native resolution (zero-padded
to the stride, ``instance.*`` thresholds, COCO evaluator). Other processes' CPU use during training is
recorded (the machine is shared). Writes RESULTS.{json,md} and OUT/model.pt (an edgeseg checkpoint:
`edgeseg export` and ``benchmarks.instance_int8`` read it). Results committed before 2026-12 came from an
earlier script that trained for a wall-clock budget (``--minutes``); their command lines say so.
``--quick``: 1 epoch on 32 training / 8 validation images: a smoke run of the script, not results.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.record import QUICK, ROOT, command_line, parse_options, results_stem, write_results

QUICK_SET = ["train.epochs=1", "data.synthetic.num_train=32", "data.synthetic.num_val=8", "train.batch_size=8"]


def train_and_evaluate(recipe: Any, out: Path) -> dict[str, Any]:
    """Train ``recipe`` into ``out`` and evaluate its best checkpoint on the whole val split."""
    from edgeseg.bench.contention import CpuWatch
    from edgeseg.evaluate import evaluate
    from edgeseg.train import train

    with CpuWatch() as watch:
        result = train(recipe, out)
    with CpuWatch() as eval_watch:
        metrics = evaluate(out / "model.pt", threads=recipe.train.threads)
    return {"train_s": round(watch.wall_s, 1), "other_processes_cores": watch.other_cores,
            "epochs": recipe.train.epochs, "train_images": result.get("train_images"),
            "eval_s": round(eval_watch.wall_s, 1), "eval_other_processes_cores": eval_watch.other_cores,
            "metrics": metrics}


def markdown(recipe: Any, fig: dict[str, Any]) -> list[str]:
    m = fig["metrics"]
    return [f"# {recipe.name}: {recipe.model.name} trained {fig['epochs']} epochs on the CPU, evaluated on the "
            "whole val split", "",
            f"Training (`edgeseg.train`, {recipe.train.threads or 'all'} torch threads): {fig['epochs']} epochs, "
            f"batch {recipe.train.batch_size}, {recipe.data.size_hw[0]}x{recipe.data.size_hw[1]} crops, in "
            f"{fig['train_s'] / 60:.1f} min; other processes used {fig['other_processes_cores']} cores on average "
            "meanwhile (the machine is shared).", "",
            f"Validation ({m['num_images']} images, {m['num_instances']} instances, native resolution, "
            f"maxDets {m['max_dets']}): mask AP50 **{m['mask_ap50']:.3f}**, mask AP {m['mask_ap']:.3f}, "
            f"mask AP75 {m['mask_ap75']:.3f}; box AP50 {m['box_ap50']:.3f}, box AP {m['box_ap']:.3f}."]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", type=Path)
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = parse_options(ap, None, argv, quick="1 epoch on 32 images")

    from edgeseg.recipe import load_recipe

    sets = [f"train.threads={args.threads}", *([f"train.epochs={args.epochs}"] if args.epochs else []),
            *(QUICK_SET if args.quick else []), *args.overrides]
    recipe = load_recipe(args.recipe, sets)
    name = recipe.name.replace("-", "_")
    out = args.out or (QUICK if args.quick else ROOT / "benchmarks" / ".runs") / recipe.name
    wall0 = time.perf_counter()
    fig = train_and_evaluate(recipe, out)
    record = {"recipe": recipe.to_dict(), "overrides": sets, "checkpoint": str(out / "model.pt"), **fig,
              "wall_s": round(time.perf_counter() - wall0, 1)}
    write_results(results_stem(args.results, name, args.quick), record, markdown(recipe, fig),
                  command=command_line(locked=True))


if __name__ == "__main__":
    main()
