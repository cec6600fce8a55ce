"""ExecuTorch (XNNPACK) FP32/INT8 vs ONNX Runtime FP32/INT8 for the lite models, side by side in one run.

Usage: python benchmarks/executorch_vs_ort.py --prepare-only            # train + export (long; no lock)
       flock /tmp/edgeseg-bench.lock python benchmarks/executorch_vs_ort.py --timing-only
       [--size 256] [--threads 2] [--rounds 3] [--epochs 6] [--val-images 32] [--calib-images 16]
       [--work benchmarks/.runs/phone]

Each model (unet-lite, segnet-lite, fcn-lite) trains briefly on the quickstart shapes (64 px; a finished
run in --work is reused), then `edgeseg.export` writes FP32 + INT8 ONNX and FP32 + INT8 .pte with
int8_policy=auto (the INT8 .pte with export.executorch.float_depthwise=auto: all-INT8 or depthwise convs
in float, whichever export timed faster; the table says which), calibrating on the TRAINING split at SIZE x SIZE and measuring accuracy on the whole
validation split rendered at SIZE x SIZE (the same images for every artifact). The four files of every
model are then timed side by side at batch 1 and THREADS threads: rounds alternate over all files,
median of the per-round p50s; run it under `flock /tmp/edgeseg-bench.lock` on a shared machine, and
each figure records how much CPU other processes used while it was timed.
Writes benchmarks/results/executorch_vs_ort.{json,md}.
Targets (issue 11): for every model the fastest ExecuTorch artifact is faster than the fastest ONNX
Runtime artifact (FP32 or INT8, shipped or not: stricter than "shipped today"), and ExecuTorch INT8 is faster than ExecuTorch FP32 within 0.5 mIoU points.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
MODELS = ("unet-lite", "segnet-lite", "fcn-lite")
EXPORT_DIR = "export_et"  # beside a run folder's own export/, which other benchmarks may own


def train_and_export(model: str, work: Path, size: int, threads: int, epochs: int | None, val_images: int,
                     calib_images: int, recipe_path: Path | None = None) -> dict:
    from edgeseg.export import export
    from edgeseg.recipe import ExportCfg, load_recipe
    from edgeseg.train import train

    run = work / model
    sets = [f"model.name={model}", f"train.threads={threads}"]
    if epochs is not None:
        sets.append(f"train.epochs={epochs}")
    if recipe_path is None:
        sets += [f"train.epochs={epochs or 6}", "train.eval_every=5"]
    recipe = load_recipe(recipe_path, sets)
    if not (run / "train.json").exists():  # train.json marks a finished run; an interrupted one resumes
        train(recipe, run, resume=(run / "last.pt").exists())
    done = run / EXPORT_DIR / "export.json"
    if done.exists():
        doc = json.loads(done.read_text())
        if not doc.get("error") and any(a["format"] == "executorch" for a in doc["artifacts"]):
            return doc
    cfg = ExportCfg(formats=["onnx", "executorch"], precisions=["fp32", "int8"], int8_policy="auto",
                    calibration={"images": calib_images})
    if recipe_path is not None:  # a dataset recipe: its own input size and whole validation split
        return export(run / "model.pt", run / EXPORT_DIR, cfg=cfg, overrides=[f"data.image_size={size}"])
    # Validation images rendered at SIZE (not 64 px resized up): every artifact sees the same pixels.
    return export(run / "model.pt", run / EXPORT_DIR, cfg=cfg,
                  overrides=[f"data.image_size={size}", f"data.synthetic.size={size}",
                             f"data.synthetic.num_val={val_images}"])


def _artifact(doc: dict, fmt: str, precision: str) -> dict:
    return next(a for a in doc["artifacts"] if a["format"] == fmt and a["precision"] == precision)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's; 6 synthetic)")
    ap.add_argument("--recipe", type=Path, default=None,
                    help="dataset recipe to train and measure on (default: the quickstart's synthetic shapes)")
    ap.add_argument("--val-images", type=int, default=32, help="validation split size (rendered at SIZE)")
    ap.add_argument("--calib-images", type=int, default=16, help="training images for INT8 calibration")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".runs" / "phone")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--prepare-only", action="store_true", help="train and export, time nothing (run it unlocked)")
    ap.add_argument("--timing-only", action="store_true", help="reuse the exports in --work; fail if missing")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "executorch_vs_ort")
    args = ap.parse_args()

    from export_int8 import side_by_side

    from edgeseg.artifacts import atomic_write_json, atomic_write_text, library_versions
    from edgeseg.bench.machine import machine_info

    docs, files = {}, {}
    for model in args.models.split(","):
        if args.timing_only:
            docs[model] = json.loads((args.work / model / EXPORT_DIR / "export.json").read_text())
        else:
            docs[model] = train_and_export(model, args.work, args.size, args.threads, args.epochs, args.val_images,
                                           args.calib_images, args.recipe)
        for fmt in ("onnx", "executorch"):
            for precision in ("fp32", "int8"):
                files[f"{model}/{fmt}/{precision}"] = Path(_artifact(docs[model], fmt, precision)["path"])
    if args.prepare_only:
        return
    latency = side_by_side(files, args.size, args.threads, args.rounds)
    rows = []
    for model, doc in docs.items():
        ms = {k.split("/", 1)[1]: v["p50_ms"] for k, v in latency.items() if k.startswith(model + "/")}
        arts = {f"{f}/{p}": _artifact(doc, f, p) for f in ("onnx", "executorch") for p in ("fp32", "int8")}
        # Against the faster ONNX Runtime file in THIS side-by-side run, shipped or not: stricter than
        # "the fastest shipped", and independent of how busy the machine was when export decided.
        ort_all = {k: ms[k] for k in ("onnx/fp32", "onnx/int8")}
        et_all = {k: ms[k] for k in ("executorch/fp32", "executorch/int8")}
        best_ort, best_et = min(ort_all, key=ort_all.get), min(et_all, key=et_all.get)
        et_acc = arts["executorch/int8"]["accuracy"]
        ort_acc = arts["onnx/int8"]["accuracy"]
        rows.append({
            "model": model, "ms": ms, "shipped": {k: a["shipped"] for k, a in arts.items()},
            "export_decision": {k: a.get("reason", "") for k, a in arts.items() if k.endswith("int8")},
            "miou": {"onnx/fp32": ort_acc["fp32"]["miou"], "onnx/int8": ort_acc["int8"]["miou"],
                     "executorch/fp32": et_acc["fp32"]["miou"], "executorch/int8": et_acc["int8"]["miou"]},
            "val_images": et_acc["int8"]["num_images"], "calibration_images": arts["executorch/int8"]["calibration"]["images"],
            "fraction_delegated": {k: arts[k]["export"]["fraction_delegated"] for k in ("executorch/fp32", "executorch/int8")},
            "fastest_ort": best_ort, "fastest_executorch": best_et,
            "et_vs_ort": ort_all[best_ort] / et_all[best_et],
            "et_int8_speedup": ms["executorch/fp32"] / ms["executorch/int8"],
            "et_int8_miou_drop_points": et_acc["miou_drop_points"],
            "et_int8_mixed_precision": arts["executorch/int8"].get("mixed_precision", {}),
            "noisy": any(latency[f"{model}/{k}"]["noisy"] for k in ms)})
    targets = {f"{r['model']}: fastest ExecuTorch faster than fastest ONNX Runtime": r["et_vs_ort"] > 1.0
               for r in rows}
    targets.update({f"{r['model']}: ExecuTorch INT8 faster than FP32 within 0.5 mIoU points":
                    r["et_int8_speedup"] > 1.0 and r["et_int8_miou_drop_points"] <= 0.5 for r in rows})  # a gain is within
    command = "flock /tmp/edgeseg-bench.lock python benchmarks/executorch_vs_ort.py " + " ".join(
        f"--{k} {v}" for k, v in (("size", args.size), ("threads", args.threads), ("rounds", args.rounds),
                                  ("val-images", args.val_images),
                                  ("calib-images", args.calib_images), ("work", args.work))
                                 + ((("recipe", args.recipe),) if args.recipe else ()))
    record = {"command": command, "machine": machine_info(), "versions": library_versions(
        ("torch", "onnxruntime", "executorch", "torchao", "numpy")), "input_size": [args.size, args.size],
        "rows": rows, "targets": targets, "latency": latency}
    atomic_write_json(args.results.with_suffix(".json"), record)
    m, v = record["machine"], record["versions"]
    data_note = (f"mIoU on the whole validation split of `{args.recipe}` ({rows[0]['val_images']} images, models "
                 "trained by that recipe)." if args.recipe else
                 f"mIoU on the whole synthetic-shapes validation split rendered at {args.size} px (models trained "
                 f"{args.epochs or 6} epochs at 64 px).")
    md = [f"# ExecuTorch (XNNPACK) vs ONNX Runtime, CPU, batch 1, {args.size}x{args.size}, {args.threads} threads", "",
          f"Machine: {m['cpu']}, {m['usable_cores']} cores; executorch {v.get('executorch')}, onnxruntime "
          f"{v.get('onnxruntime')}, torch {v.get('torch')}. Command: `{command}`. Latency: median of "
          f"{args.rounds} alternating rounds of p50 (ms). {data_note} INT8 calibrated on the "
          "training split. `*` = not shipped by export's int8_policy=auto (not faster than FP32 when export "
          "timed it).", "",
          "| model | ORT FP32 | ORT INT8 | ET FP32 | ET INT8 | ET best vs ORT best | ET INT8 speed-up | "
          "mIoU ORT FP32 / INT8 | mIoU ET FP32 / INT8 | ET INT8 Δ (pts) | delegated | val images | "
          "ET INT8 form (export-time ms: all-INT8 / float depthwise) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]

    def form(r: dict) -> str:
        mixed = r["et_int8_mixed_precision"]
        if not mixed:
            return "all INT8 (exported before float_depthwise)"
        timing = mixed.get("timing") or {}
        ms = timing.get("p50_ms", {})
        timed = f" ({' / '.join(f'{v:.1f}' for v in ms.values())}" if ms else ""
        if ms and timing.get("busy"):  # on a busy machine the median paired ratio decided, not the best p50s
            timed += f"; busy, median ratio {statistics.median(timing['ratios']):.2f}"
        timed += ")" if ms else ""
        chosen = mixed["chosen"]
        return (f"{len(mixed['float_depthwise_nodes'])} depthwise float" if chosen != "int8" else "all INT8") + \
            f", {mixed['float_depthwise']}{timed}"

    def cell(r: dict, k: str) -> str:
        return f"{r['ms'][k]:.1f}{'' if r['shipped'][k] else '*'}"

    for r in rows:
        mi = r["miou"]
        md.append(f"| {r['model']} | {cell(r, 'onnx/fp32')} | {cell(r, 'onnx/int8')} | {cell(r, 'executorch/fp32')} | "
                  f"{cell(r, 'executorch/int8')} | {r['et_vs_ort']:.2f}x ({r['fastest_executorch'].split('/')[1]} vs "
                  f"{r['fastest_ort'].split('/')[1]}) | {r['et_int8_speedup']:.2f}x | "
                  f"{mi['onnx/fp32']:.4f} / {mi['onnx/int8']:.4f} | {mi['executorch/fp32']:.4f} / "
                  f"{mi['executorch/int8']:.4f} | {-r['et_int8_miou_drop_points']:+.2f} | "
                  f"{r['fraction_delegated']['executorch/int8']:.0%} | {r['val_images']} | {form(r)} |")
    busy = [f"{k}: {x['contention']}" for k, x in latency.items() if x["contention"]]
    md += ["", "Contention: " + ("; ".join(busy) if busy else "none (no other process used the cores while timing)")
           + ".", "", "Targets: " + "; ".join(f"{k} {'met' if ok else 'NOT met'}" for k, ok in targets.items()) + "."]
    atomic_write_text(args.results.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
