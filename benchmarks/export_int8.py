"""FP32 vs INT8 ONNX Runtime latency and accuracy of unet, unet-lite, segnet, segnet-lite, in one run.

Usage: python benchmarks/export_int8.py [--size 256] [--threads 2] [--rounds 3] [--work benchmarks/.runs/int8]

Each model trains on the quickstart shapes (64 px crops; the full models, ~100x the MACs, get only 8
epochs of 256 images on this CPU: the comparison FP32 vs INT8 on the same weights is what matters; a
finished run in --work is reused, an interrupted one resumes), then `edgeseg.export` writes FP32 + INT8
QDQ ONNX with int8_policy=auto, calibrating on the TRAINING split and deciding at SIZE x SIZE. This script then times
every FP32/INT8 pair side by side (rounds alternate between all files, median of the per-round p50s)
at batch 1 and takes each artifact's mIoU on the whole validation split from export.json.
Writes benchmarks/results/export_int8.{json,md}.
Targets (issue 3): unet INT8 >= 1.7x faster than FP32 with mIoU within 0.5 points; no shipped INT8
slower than its FP32.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# (model, training overrides): full models are ~100x the MACs of the lite ones, so fewer images/epochs.
MODELS = {
    "unet-lite": ["train.epochs=40"],
    "segnet-lite": ["train.epochs=40"],
    "unet": ["train.epochs=8", "data.synthetic.num_train=256", "train.lr=0.002"],
    "segnet": ["train.epochs=8", "data.synthetic.num_train=256", "train.lr=0.002"],
}


def train_and_export(model: str, extra: list[str], work: Path, size: int, threads: int) -> dict:
    from edgeseg.export import export
    from edgeseg.recipe import ExportCfg, load_recipe
    from edgeseg.train import train

    run = work / model
    overrides = [f"model.name={model}", f"train.threads={threads}", *extra]
    recipe = load_recipe(None, overrides)
    if not (run / "train.json").exists():  # train.json marks a finished run; an interrupted one resumes
        train(recipe, run, resume=(run / "last.pt").exists())
    cfg = ExportCfg(precisions=["fp32", "int8"], int8_policy="auto", calibration={"images": 32})
    return export(run / "model.pt", run / "export", cfg=cfg, overrides=[f"data.image_size={size}"])


def side_by_side(files: dict[str, Path], size: int, threads: int, rounds: int) -> dict[str, dict]:
    """Per file: median over rounds of the p50 latency (ms); rounds alternate over all files."""
    import os

    from edgeseg import runtime
    from edgeseg.bench.contention import CpuWatch, contention_reason
    from edgeseg.bench.latency import measure_latency

    # all sessions live in this process and are timed in turn: ORT's idle threads must not spin
    backends = {k: runtime.open(p, threads=threads, **({"spinning": False} if Path(p).suffix == ".onnx" else {}))
                for k, p in files.items()}
    rng = np.random.default_rng(0)
    xs = {k: rng.standard_normal((1, be.meta.in_channels, size, size), dtype=np.float32) for k, be in backends.items()}
    p50s: dict[str, list[float]] = {k: [] for k in files}
    noisy: dict[str, bool] = {k: False for k in files}
    others: dict[str, list[float]] = {k: [] for k in files}
    busy: dict[str, str] = {k: "" for k in files}
    for _ in range(rounds):
        for k, be in backends.items():
            with CpuWatch() as watch:
                s = measure_latency(lambda be=be, x=xs[k]: be(x), warmup=3, min_runs=10, min_time_s=1.5, max_time_s=60)
            p50s[k].append(s.p50_ms)
            others[k].append(watch.other_cores or 0.0)
            why = contention_reason(watch.other_cores, threads=threads, cores=os.cpu_count() or 1,
                                    wall_s=watch.wall_s)
            busy[k] = busy[k] or why
            noisy[k] |= s.noisy or bool(why)
    return {k: {"p50_ms": statistics.median(v), "round_p50s": v, "noisy": noisy[k],
                "other_processes_cores": others[k], "contention": busy[k]} for k, v in p50s.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".runs" / "int8")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "export_int8")
    args = ap.parse_args()

    from edgeseg.artifacts import atomic_write_json, atomic_write_text, library_versions
    from edgeseg.bench.machine import machine_info

    docs, files = {}, {}
    for model in args.models.split(","):
        docs[model] = train_and_export(model, MODELS[model], args.work, args.size, args.threads)
        for a in docs[model]["artifacts"]:
            if a["format"] == "onnx" and a["precision"] in ("fp32", "int8"):
                files[f"{model}/{a['precision']}"] = Path(a["path"])
    latency = side_by_side(files, args.size, args.threads, args.rounds)
    rows = []
    for model, doc in docs.items():
        int8 = next(a for a in doc["artifacts"] if a["format"] == "onnx" and a["precision"] == "int8")
        acc = int8["accuracy"]
        fp32_ms, int8_ms = latency[f"{model}/fp32"]["p50_ms"], latency[f"{model}/int8"]["p50_ms"]
        rows.append({"model": model, "fp32_ms": fp32_ms, "int8_ms": int8_ms, "speedup": fp32_ms / int8_ms,
                     "fp32_miou": acc["fp32"]["miou"], "int8_miou": acc["int8"]["miou"],
                     "miou_drop_points": acc["miou_drop_points"], "val_images": acc["int8"]["num_images"],
                     "calibration_images": int8["calibration"]["images"], "shipped": int8["shipped"],
                     "export_decision": int8["reason"], "export_speedup": int8["speedup"],
                     "quantized_nodes": int8["quantization"]["quantized_nodes"],
                     "noisy": latency[f"{model}/fp32"]["noisy"] or latency[f"{model}/int8"]["noisy"]})
    targets = {"unet_speedup_ge_1.7": None, "unet_miou_within_0.5_points": None,
               "no_shipped_int8_slower": all(r["speedup"] >= 1.0 for r in rows if r["shipped"])}
    for r in rows:
        if r["model"] == "unet":
            targets.update({"unet_speedup_ge_1.7": r["speedup"] >= 1.7,
                            "unet_miou_within_0.5_points": abs(r["miou_drop_points"]) <= 0.5})
    record = {"command": "python benchmarks/export_int8.py " + " ".join(
                  f"--{k} {v}" for k, v in (("size", args.size), ("threads", args.threads), ("rounds", args.rounds))),
              "machine": machine_info(), "versions": library_versions(), "input": [1, 3, args.size, args.size],
              "rows": rows, "targets": targets, "latency": latency}
    atomic_write_json(args.results.with_suffix(".json"), record)
    m = record["machine"]
    md = [f"# FP32 vs INT8 (ONNX Runtime CPU, batch 1, {args.size}x{args.size}, {args.threads} threads)", "",
          f"Machine: {m['cpu']}, {m['usable_cores']} cores; onnxruntime {record['versions'].get('onnxruntime')}. "
          f"Command: `{record['command']}`. Latency: median of {args.rounds} alternating rounds of p50. "
          "mIoU on the whole synthetic-shapes validation split; INT8 calibrated on the training split.", "",
          "| model | FP32 ms | INT8 ms | speed-up | FP32 mIoU | INT8 mIoU | Δ (pts) | val images | INT8 shipped (auto) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['fp32_ms']:.1f} | {r['int8_ms']:.1f} | {r['speedup']:.2f}x | "
                  f"{r['fp32_miou']:.4f} | {r['int8_miou']:.4f} | {-r['miou_drop_points']:+.2f} | {r['val_images']} | "
                  f"{'yes' if r['shipped'] else 'no: ' + r['export_decision'].split(';')[0]} |")
    busy = [f"{k}: {v['contention']}" for k, v in latency.items() if v["contention"]]
    md += ["", "Contention: " + ("; ".join(busy) if busy else "none (no other process used the cores while timing)")
           + "."]
    md += ["", "Targets: " + ", ".join(f"{k} {'met' if v else 'NOT met' if v is False else 'not measured'}"
                                     for k, v in targets.items()) + "."]
    atomic_write_text(args.results.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
