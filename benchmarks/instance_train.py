"""Train an instance recipe for a wall-clock budget on the CPU and evaluate COCO mask/box AP on its whole val split.

Usage: flock /tmp/edgeseg-bench.lock python benchmarks/instance_train.py RECIPE [--minutes 20] [--threads 2]
           [--out benchmarks/.runs/NAME] [--results benchmarks/results/NAME] [--set key=value ...]

A compact loop (AdamW, linear warm-up then cosine decay over the time budget, gradient clipping) built
from the library pieces: ``build_instance_dataset`` / ``collate_instances``, ``YolactLoss`` with the
recipe's ``instance.loss`` arguments, the model's postprocess with ``instance.*`` thresholds and
``InstanceEvaluator``. The schedule is set by TIME, not epochs: the cosine runs over ``--minutes`` of
training (evaluation excluded), so the figure answers "what does this reach in N CPU-minutes". Evaluation
runs on every validation image at native resolution, zero-padded bottom/right to a multiple of 32.
Other processes' CPU use during training is recorded (the machine is shared). Writes RESULTS.{json,md}
and OUT/model.pt (an edgeseg checkpoint: `edgeseg export` and the INT8 benchmark read it).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parents[1]


def evaluate(model: Any, dataset: Any, recipe: Any) -> dict[str, Any]:
    """COCO mask/box AP of ``model`` on every image of ``dataset`` (native size, padded to the stride)."""
    import torch

    from edgeseg.data.preprocess import pad_to_stride
    from edgeseg.metrics.instance import InstanceEvaluator
    from edgeseg.models.yolact import OUTPUT_NAMES, postprocess

    ic = recipe.instance
    ev = InstanceEvaluator(dataset.class_names, max_dets=ic.max_dets)
    model.eval()
    with torch.no_grad():
        for i in range(len(dataset)):
            image, target = dataset[i]
            padded, hw = pad_to_stride(image.numpy(), model.stride)
            outs = model(torch.from_numpy(padded)[None])
            det = postprocess(dict(zip(OUTPUT_NAMES, outs)), input_hw=padded.shape[-2:], image_hw=hw,
                              placement="pad", score_thresh=ic.score_thresh, iou_thresh=ic.iou_thresh,
                              top_k=ic.top_k, max_dets=ic.max_dets, mask_thresh=ic.mask_thresh)[0]
            ev.update(dataset.image_ids[i], det, {k: v.numpy() for k, v in target.items()})
    return ev.compute()


def train(recipe: Any, minutes: float, threads: int, out: Path, log_every: int = 20) -> dict[str, Any]:
    """Train for ``minutes`` of wall time; returns the training figures (steps, epochs, loss history)."""
    import torch
    from torch.utils.data import DataLoader

    from edgeseg.bench.contention import CpuWatch
    from edgeseg.data.instances import build_instance_dataset, collate_instances
    from edgeseg.models import create_model
    from edgeseg.train.losses_instance import YolactLoss

    torch.set_num_threads(threads)
    torch.manual_seed(recipe.train.seed)
    m = recipe.model
    model = create_model(m.name, num_classes=m.num_classes, in_channels=m.in_channels, **m.args)
    ds = build_instance_dataset(recipe.data, "train", in_channels=m.in_channels, train=True, num_classes=m.num_classes)
    loader = DataLoader(ds, batch_size=recipe.train.batch_size, shuffle=True, collate_fn=collate_instances,
                        drop_last=len(ds) > recipe.train.batch_size)
    loss_fn = YolactLoss(m.num_classes, **recipe.instance.loss)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.train.lr, weight_decay=recipe.train.weight_decay)
    budget = minutes * 60.0
    warmup = min(0.05 * budget, 60.0)
    history, steps, epochs = [], 0, 0
    start = time.perf_counter()
    done = False
    with CpuWatch() as watch:
        while not done:
            epochs += 1
            model.train()
            for images, targets in loader:
                elapsed = time.perf_counter() - start
                if elapsed >= budget:
                    done = True
                    break
                frac = elapsed / budget
                lr = recipe.train.lr * (min(1.0, elapsed / warmup) if warmup > 0 else 1.0)
                lr *= 0.5 * (1 + math.cos(math.pi * frac)) * 0.95 + 0.05
                for g in opt.param_groups:
                    g["lr"] = lr
                total, parts = loss_fn(model(images), targets)
                if not torch.isfinite(total):
                    raise RuntimeError(f"loss is {float(total)} at step {steps}: {parts}")
                opt.zero_grad(set_to_none=True)
                total.backward()
                if recipe.train.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.train.grad_clip)
                opt.step()
                steps += 1
                if steps % log_every == 0:
                    value = float(total.detach())
                    history.append({"step": steps, "t_s": round(elapsed, 1), "loss": round(value, 4),
                                    **{k: round(v, 4) for k, v in parts.items()}})
                    print(f"step {steps} ({elapsed / 60:.1f} min, epoch {epochs}): loss {value:.3f} "
                          + " ".join(f"{k} {v:.3f}" for k, v in parts.items()), flush=True)
    from edgeseg.artifacts.checkpoint import save_checkpoint
    from edgeseg.train.meta import meta_for

    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "model.pt", model, meta_for(model, recipe), epoch=epochs, steps=steps)
    return {"model": model, "steps": steps, "epochs": epochs, "train_s": round(watch.wall_s, 1),
            "other_processes_cores": watch.other_cores, "train_images": len(ds.samples),
            "history": history}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", type=Path)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    import torch

    from edgeseg.artifacts import atomic_write_json, atomic_write_text, library_versions
    from edgeseg.bench.contention import CpuWatch
    from edgeseg.bench.machine import machine_info
    from edgeseg.data.instances import build_instance_dataset
    from edgeseg.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    out = args.out or ROOT / "benchmarks" / ".runs" / recipe.name
    results = args.results or ROOT / "benchmarks" / "results" / recipe.name.replace("-", "_")
    wall0 = time.perf_counter()
    fig = train(recipe, args.minutes, args.threads, out)
    model = fig.pop("model")
    val = build_instance_dataset(recipe.data, "val", in_channels=recipe.model.in_channels,
                                 num_classes=recipe.model.num_classes)
    with CpuWatch() as watch:
        metrics = evaluate(model, val, recipe)
    command = (f"python benchmarks/instance_train.py {args.recipe} --minutes "
               f"{args.minutes} --threads {args.threads}" + "".join(f" --set {o}" for o in args.overrides))
    record = {"command": command, "recipe": recipe.to_dict(), "machine": machine_info(),
              "versions": library_versions(), "torch_threads": torch.get_num_threads(), **fig,
              "eval_s": round(watch.wall_s, 1), "eval_other_processes_cores": watch.other_cores,
              "wall_s": round(time.perf_counter() - wall0, 1), "metrics": metrics}
    atomic_write_json(results.with_suffix(".json"), record)
    md = [f"# {recipe.name}: {recipe.model.name} trained {args.minutes:g} CPU-minutes, evaluated on the whole val split",
          "", f"Command: `{command}`. Machine: {record['machine']['cpu']}, {args.threads} torch threads.", "",
          f"Training: {fig['steps']} steps ({fig['epochs']} epochs over {fig['train_images']} training images, "
          f"batch {recipe.train.batch_size}, {recipe.data.size_hw[0]}x{recipe.data.size_hw[1]} crops) in "
          f"{fig['train_s'] / 60:.1f} min; other processes used {fig['other_processes_cores']} cores on average "
          "meanwhile (the machine is shared: fewer steps than on a quiet machine).", "",
          f"Validation ({metrics['num_images']} images, {metrics['num_instances']} instances, native resolution, "
          f"maxDets {metrics['max_dets']}): mask AP50 **{metrics['mask_ap50']:.3f}**, mask AP {metrics['mask_ap']:.3f}, "
          f"mask AP75 {metrics['mask_ap75']:.3f}; box AP50 {metrics['box_ap50']:.3f}, box AP {metrics['box_ap']:.3f}.",
          "", f"Total wall time including data loading and evaluation: {record['wall_s'] / 60:.1f} min."]
    atomic_write_text(results.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
