"""Step 2 of the compression benchmark, on this CPU: export, quantize and time what step 1 trained.

Reads the run folder of compress_train_gpu.py (trained and pruned+fine-tuned checkpoints, summary.json),
exports every artifact with edgeseg's own export path (FP32, PTQ INT8, QAT INT8, mixed precision),
evaluates each on the whole validation split (6 images at 512x512) and times them all side by side on
ONNX Runtime CPU (2 threads, batch 1, 256x256, alternating rounds, best median kept, contention
recorded). The unpruned unet/segnet FP32 ONNX is timed from a freshly built model of the same
architecture (latency does not depend on the weights; ANCHORS.md) because its trained weights stay on
the GPU machine; its Dice comes from that run's whole-split validation (summary.json).

Usage: python benchmarks/compress_bench.py --runs DIR --data ROOT   (timing takes /tmp/edgeseg-bench.lock)
Writes benchmarks/results/compress.json and compress.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LATENCY_KW = {"warmup": 3, "min_runs": 10, "min_time_s": 2.0, "max_time_s": 60.0}


def time_side_by_side(paths: dict[str, Path], hw: tuple[int, int], rounds: int, threads: int = 2) -> dict[str, Any]:
    """Best p50 per file over ``rounds`` alternating rounds, with the other processes' CPU use recorded."""
    from edgeseg.bench.contention import CpuWatch, contention_reason
    from edgeseg.bench.latency import measure_latency
    from edgeseg.runtime.ort_rt import OrtBackend

    backends = {k: OrtBackend(p, device="cpu", threads=threads) for k, p in paths.items()}
    x = np.random.default_rng(0).standard_normal((1, 1, *hw)).astype(np.float32)
    best: dict[str, Any] = {}
    for r in range(rounds):
        for key, be in backends.items():
            with CpuWatch() as watch:
                stats = measure_latency(lambda be=be: be(x), sync=be.synchronize, **LATENCY_KW).to_dict()
            busy = contention_reason(watch.other_cores, threads=threads, cores=os.cpu_count() or 1,
                                     wall_s=watch.wall_s)
            row = best.setdefault(key, {"p50_ms": float("inf"), "rounds": [], "contention": []})
            row["rounds"].append(round(stats["p50_ms"], 3))
            row["contention"].append(busy)
            row["p50_ms"] = min(row["p50_ms"], stats["p50_ms"])
        print(f"latency round {r + 1}/{rounds}: " + ", ".join(f"{k} {v['rounds'][-1]:.1f}" for k, v in best.items()),
              flush=True)
    return best


def fresh_onnx(name: str, recipe: Any, path: Path, hw: tuple[int, int], ratio: float = 0.0,
               params: int | None = None) -> Path:
    """FP32 ONNX of a freshly built ``name``, pruned per layer by ``ratio`` (latency only).

    Per-layer pruning by a ratio removes the same channel counts whatever the weights, so the freshly
    pruned architecture matches the trained one (``params`` checks it, within 1%); latency does not depend
    on the weights.
    """
    import torch

    from edgeseg.compress.prune import Probe, PruneConfig, prune_model
    from edgeseg.export.torch2onnx import export_onnx
    from edgeseg.models import create_model
    from edgeseg.models.profile import count_params
    from edgeseg.train.meta import meta_for

    torch.manual_seed(0)
    model = create_model(name, num_classes=2, in_channels=1).eval()
    if ratio:
        prune_model(model, PruneConfig(ratio=ratio), Probe(meta=None, hw=hw), log=lambda _: None)
    # Within 1%: a group or two may round differently (measured: 154658 vs 154574 params for unet-lite p25).
    if params is not None and abs(count_params(model) - params) > 0.01 * params:
        raise SystemExit(f"{name} pruned by {ratio}: {count_params(model)} params, the trained one has {params}")
    export_onnx(model, meta_for(model, recipe), path, hw=hw, dynamic=True)
    return path


def export_once(ckpt: Path, out: Path, **kw: Any) -> dict[str, Any]:
    """``edgeseg.export.export``, reusing an earlier complete export.json in ``out`` (re-runs of the timing)."""
    from edgeseg.export import export

    done = out / "export.json"
    if done.is_file():
        doc = json.loads(done.read_text())
        if not doc.get("error") and all(Path(a["path"]).is_file() for a in doc["artifacts"]):
            return doc
    return export(ckpt, out, **kw)


def exported(doc: dict[str, Any], precision: str) -> dict[str, Any]:
    return next(a for a in doc["artifacts"] if a["format"] == "onnx" and a["precision"] == precision)


def main() -> None:
    from edgeseg.artifacts import library_versions
    from edgeseg.bench.machine import cpu_model
    from edgeseg.recipe import load_recipe

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True, help="output folder of compress_train_gpu.py")
    ap.add_argument("--data", required=True, help="membrane dataset root")
    ap.add_argument("--out", default="runs/compress_bench")
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--qat-repeats", type=int, default=1, help="passes over the 24 training images per QAT epoch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--qat-families", default="unet,segnet", help="families whose pruned model also gets QAT")
    ap.add_argument("--families", default="unet,segnet,unet-lite,segnet-lite")
    args = ap.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    summary = json.loads((runs / "summary.json").read_text())
    recipe = load_recipe(ROOT / "recipes" / "membrane_unet_lite.yaml", [f"data.root={args.data}"])
    hw = (256, 256)
    common = [f"data.root={args.data}", "data.workers=0", "export.calibration.images=32", "export.int8_policy=always"]
    t0 = time.time()
    files: dict[str, Path] = {}
    rows: dict[str, dict[str, Any]] = {}
    for fam in args.families.split(","):
        lite = fam.endswith("-lite")
        if not lite:
            files[f"{fam} fp32"] = fresh_onnx(fam, recipe, out / f"{fam}-fresh.onnx", hw)
            rows[f"{fam} fp32"] = {"dice": summary[fam]["val"]["mean_dice"], "miou": summary[fam]["val"]["miou"],
                                   "images": summary[fam]["val"]["num_images"], "source": "GPU run, torch"}
            tag = f"{fam}-p50"
            ptq = export_once(runs / tag / "model.pt", out / tag, precisions=["fp32", "int8"], overrides=common)
            todo = [(f"{tag} fp32", ptq, "fp32"), (f"{tag} int8 ptq", ptq, "int8")]
            if fam in args.qat_families.split(","):
                qat = export_once(runs / tag / "model.pt", out / f"{tag}-qat", precisions=["int8"],
                                  overrides=[*common, f"export.qat.epochs={args.qat_epochs}",
                                             f"data.train_repeats={args.qat_repeats}"])
                todo.append((f"{tag} int8 qat", qat, "int8"))
            for label, doc, prec in todo:
                art = exported(doc, prec)
                acc = art["accuracy"]["int8"] if prec == "int8" else exported(ptq, "int8")["accuracy"]["fp32"]
                files[label] = Path(art["path"])
                rows[label] = {"dice": acc["mean_dice"], "miou": acc["miou"], "images": acc["num_images"],
                               "source": "this CPU, ONNX Runtime"}
        else:
            # Trained lite checkpoints stayed on the GPU machine: latency from the same architectures,
            # Dice from that run's whole-split validation (torch).
            for tag, ratio in ((fam, 0.0), (f"{fam}-p25", 0.25), (f"{fam}-p50", 0.5)):
                if tag not in summary:
                    continue
                after = summary[tag]["figures"]["after"] if ratio else None
                files[f"{tag} fp32"] = fresh_onnx(fam, recipe, out / f"{tag}-fresh.onnx", hw, ratio,
                                                  after["params"] if after else None)
                val = after["val"] if after else summary[tag]["val"]
                rows[f"{tag} fp32"] = {**_acc(val), "source": "GPU run, torch"}
    prep_s = time.time() - t0
    import fcntl

    # Exports, QAT and accuracy run unlocked; only the timing holds the machine-wide bench lock.
    with open("/tmp/edgeseg-bench.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        latency = time_side_by_side(files, hw, args.rounds)
    for key, row in rows.items():
        row.update(latency_ms=latency[key]["p50_ms"], latency_rounds=latency[key]["rounds"],
                   contention=[c for c in latency[key]["contention"] if c], file=str(files[key]))
    for key, row in rows.items():  # ratios against the family's reference FP32 row
        fam = key.split(" ")[0].rsplit("-p", 1)[0]
        ref = rows[f"{fam} fp32"]
        row["speedup_vs_fp32"] = ref["latency_ms"] / row["latency_ms"]
        row["dice_drop_points"] = 100 * (ref["dice"] - row["dice"])
    doc = {"command": " ".join([sys.executable, *sys.argv]),
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": cpu_model(),
           "cores": os.cpu_count(), "threads": 2, "input": [1, 1, *hw], "versions": library_versions(),
           "training": {k: {kk: vv for kk, vv in v.items() if kk != "figures"} for k, v in summary.items()},
           "prepare_seconds": round(prep_s, 1), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compress.json").write_text(json.dumps(doc, indent=1, default=str))
    lines = [f"# Compression on membranes ({doc['date']}, {doc['machine']}, ONNX Runtime CPU, 2 threads, batch 1, "
             f"256x256; Dice on the whole val split, 6 images at 512x512)", "",
             "| artifact | latency ms | speed-up vs FP32 | mean Dice | Dice drop (pts) | busy rounds |",
             "|---|---|---|---|---|---|"]
    for key, row in rows.items():
        lines.append(f"| {key} | {row['latency_ms']:.1f} | {row['speedup_vs_fp32']:.2f}x | {row['dice']:.4f} | "
                     f"{row['dice_drop_points']:+.2f} | {len(row['contention'])}/{args.rounds} |")
    lines += ["", f"Command: `{doc['command']}`"]
    (RESULTS / "compress.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _acc(m: dict[str, Any]) -> dict[str, Any]:
    return {"dice": m["mean_dice"], "miou": m["miou"], "images": m["num_images"]}


if __name__ == "__main__":
    main()
