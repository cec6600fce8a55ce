"""The two instance designs on the same data and the same CPU time: maskrcnn-lite (two stages) vs yolact-lite
(one stage) on DSB2018 nuclei, each trained for the same wall-clock budget, evaluated, exported, benched and
reported together.

Usage: flock /tmp/edgeseg-bench.lock python -m benchmarks.nuclei_two_designs [--time 20m] [--threads 2]
           [--out benchmarks/.runs/nuclei_two_designs] [--quick]

Per recipe (``recipes/nuclei_yolact_lite.yaml``, ``recipes/nuclei_maskrcnn_lite.yaml``): ``edgeseg.train``
with ``train.time_budget`` (the schedule is laid over the time, so both designs get the same CPU minutes,
whatever an epoch costs each), then ``edgeseg.evaluate`` of the best checkpoint on every validation image at
native resolution (COCO mask/box AP, the recipe's ``instance.*`` thresholds), then ``edgeseg.export`` (FP32 +
INT8 ONNX: INT8 calibrated on training images, parity-checked and judged by mask AP on the val split as every
export is). Then one ``edgeseg.benchmark`` of every exported file (ORT CPU, ``--threads``, batch 1, at the
recipes' 256x256 input; accuracy on the whole val split for ours) and one ``edgeseg.report`` of those rows:
its Pareto panel is latency vs mask AP for both families. YOLOv8n-seg (``../shared/anchors``, 320x320) is
benched in the same run for latency and memory only: it is not trained on nuclei, so it has no mask AP to
put on the panel; ``benchmarks.maskrcnn_vs_yolact`` has all three at 320 and 512, end to end. Other processes' CPU use
during training is recorded (the machine is shared). A run that stopped after training reuses each finished
``train/`` and ``export/`` folder of OUT (its training figures then come from ``train.json``; the CPU use of
others was not kept). ``--quick``: 40 s of training each, 4 calibration images: a smoke run of the script, not
results. Writes benchmarks/results/nuclei_two_designs.{json,md} and the report in
benchmarks/results/report_nuclei_two_designs/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.record import QUICK, RESULTS, ROOT, command_line, parse_options, write_results

RECIPES = {"yolact-lite": ROOT / "recipes" / "nuclei_yolact_lite.yaml",
           "maskrcnn-lite": ROOT / "recipes" / "nuclei_maskrcnn_lite.yaml"}
QUICK_SET = ["data.train_repeats=1", "export.calibration.images=4"]
PEER = ROOT.parent / "shared" / "anchors" / "yolov8n-seg-320.onnx"  # static 320x320 input, no edgeseg metadata
AP_KEYS = ("mask_ap", "mask_ap50", "mask_ap75", "box_ap", "box_ap50")


def train_one(recipe_path: Path, out: Path, time_budget: str, threads: int, quick: bool) -> dict[str, Any]:
    """Train for ``time_budget``, evaluate the best checkpoint on the whole val split, export FP32 + INT8."""
    from edgeseg.bench.contention import CpuWatch
    from edgeseg.evaluate import evaluate
    from edgeseg.export import export
    from edgeseg.recipe import load_recipe
    from edgeseg.train import train

    sets = [f"train.time_budget={time_budget}", f"train.threads={threads}", *(QUICK_SET if quick else [])]
    recipe = load_recipe(recipe_path, sets)
    done = out / "train" / "train.json"
    fig: dict[str, Any] = {"recipe": str(recipe_path.relative_to(ROOT)), "overrides": sets}
    if done.is_file():  # a finished training of an interrupted run: its own record, not trained again
        result = json.loads(done.read_text())["figures"]
        fig.update(train_s=result["time_used_s"], other_processes_cores=None, reused=str(done))
    else:
        with CpuWatch() as watch:
            result = train(recipe, out / "train")
        fig.update(train_s=round(watch.wall_s, 1), other_processes_cores=watch.other_cores)
    with CpuWatch() as eval_watch:
        metrics = evaluate(out / "train" / "model.pt", threads=threads)
    t0 = time.perf_counter()
    if (out / "export" / "export.json").is_file():
        exported = json.loads((out / "export" / "export.json").read_text())
    else:
        exported = export(out / "train" / "model.pt", out / "export", precisions=["fp32", "int8"])
    return {**fig, "epochs_done": result.get("epochs_done"), "train_images": result.get("train_images"),
            "eval_s": round(eval_watch.wall_s, 1), "eval_other_processes_cores": eval_watch.other_cores,
            "metrics": metrics, "export_s": round(time.perf_counter() - t0, 1), "export": _shipped(exported)}


def _shipped(exported: dict[str, Any]) -> list[dict[str, Any]]:
    """What export wrote per precision: file, shipped or refused and why (the INT8 verdict), whether its
    input is dynamic and whether it passed parity."""
    keys = ("format", "precision", "path", "shipped", "reason", "accuracy", "latency_ms")
    return [{**{k: art.get(k) for k in keys if k in art},
             "dynamic": (art.get("export") or {}).get("dynamic"), "parity_passed": (art.get("parity") or {}).get("passed")}
            for art in exported.get("artifacts", [])]


def bench_and_report(runs: dict[str, dict[str, Any]], out: Path, threads: int, report_dir: Path) -> dict[str, Any]:
    """One bench of every exported ONNX file (and the peer) in one process, then one report of the rows."""
    from edgeseg.bench import benchmark
    from edgeseg.report import report

    files = sorted(str(p) for name in runs for p in (out / name / "export").glob("*.onnx"))
    (out / "bench.jsonl").unlink(missing_ok=True)  # rows are appended: a rerun starts a new file
    rows = benchmark(files, out=out / "bench.jsonl", backends=["onnxruntime"], threads=[threads], batch=[1])
    if PEER.is_file():  # latency and memory from the file alone: it has no mask AP on nuclei
        rows += benchmark([PEER], out=out / "bench.jsonl", backends=["onnxruntime"], threads=[threads], batch=[1],
                          accuracy=False)
    title = "Nuclei: maskrcnn-lite vs yolact-lite (+ YOLOv8n-seg, latency only)"
    written = report([out / "bench.jsonl"], report_dir, title=title)
    return {"bench_rows": [_row(r) for r in rows], "report": {k: str(v) for k, v in written.items()}}


def _row(row: dict[str, Any]) -> dict[str, Any]:
    acc, art = row.get("accuracy") or {}, row.get("artifact") or {}
    path = Path(art.get("path", "?"))
    name = path.name if path == PEER else f"{path.parent.parent.name}/{path.name}"  # RUN/<model>/export/FILE
    return {"artifact": name, "precision": art.get("precision"),
            "p50_ms": (row.get("latency") or {}).get("p50_ms"),
            "input": "x".join(map(str, row.get("input_shape", [])[2:])),
            **{k: acc.get(k) for k in ("mask_ap50", "mask_ap75", "num_images") if k in acc}}


def markdown(runs: dict[str, dict[str, Any]], bench: dict[str, Any], budget: str, threads: int) -> list[str]:
    lines = [f"# Nuclei (DSB2018): two-stage vs one-stage instance segmentation, {budget} of CPU training each", "",
             f"Trained with `train.time_budget={budget}` ({threads} torch threads), best checkpoint evaluated on the "
             "whole val split at native resolution (COCO evaluator):", "",
             "| model | epochs in the budget | train min | other cores | val images | mask AP | mask AP50 | "
             "mask AP75 | box AP | box AP50 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in runs.items():
        m = r["metrics"]
        others = "-" if r["other_processes_cores"] is None else r["other_processes_cores"]
        lines.append(f"| {name} | {r['epochs_done']} | {r['train_s'] / 60:.1f} | {others} | {m['num_images']} | "
                     + " | ".join(f"{m[k]:.3f}" for k in AP_KEYS) + " |")
    ap75 = {name: r["metrics"]["mask_ap75"] for name, r in runs.items()}
    better = max(ap75, key=lambda k: ap75[k])
    lines += ["", f"Mask AP75 (the tighter mask fit): **{better}** {ap75[better]:.3f} vs "
              + ", ".join(f"{k} {v:.3f}" for k, v in ap75.items() if k != better) + ".", "",
              f"Exported files, benched in one run (ORT CPU, {threads} threads, batch 1; ours evaluated on the whole "
              "val split):", "", "| artifact | precision | input | p50 ms | mask AP50 | mask AP75 | val images |",
              "|---|---|---|---:|---:|---:|---:|"]
    for b in bench["bench_rows"]:
        cells = [b.get(k) for k in ("mask_ap50", "mask_ap75")]
        lines.append(f"| {b['artifact']} | {b['precision']} | {b['input']} | {b['p50_ms']:.2f} | "
                     + " | ".join("-" if c is None else f"{c:.3f}" for c in cells) + f" | {b.get('num_images', '-')} |")
    static = [name for name, r in runs.items() if any(a["dynamic"] is False for a in r["export"])]
    if static:
        lines += ["", f"{', '.join(static)}: the ONNX file has a static input (export.dynamic false), so each val "
                  "image is resized to it and the result back, where PyTorch (first table) and a dynamic file run it "
                  "at native size; the gap between its PyTorch and ONNX rows is that resize (FP32 parity, at the file's "
                  "own size, is in export.json)."]
    lines += ["", "What export decided (INT8 calibrated on training images, judged by mask AP on the val split):", "",
              "| model | precision | shipped | why | val accuracy at export |", "|---|---|---|---|---|"]
    for name, r in runs.items():
        for a in r["export"]:
            acc = (a.get("accuracy") or {}).get(a.get("precision")) or {}
            figs = ", ".join(f"{k} {acc[k]:.3f}" for k in ("mask_ap50", "mask_ap75") if acc.get(k) is not None)
            lines.append(f"| {name} | {a.get('precision')} | {a.get('shipped')} | {a.get('reason') or ''} | {figs} |")
    where = bench["report"].get("md", bench["report"])
    lines += ["", f"Report (one Pareto panel, latency vs mask AP, both families): {where}"]
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", default="20m", help="training budget of each design (default 20m)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = parse_options(ap, "nuclei_two_designs", argv, quick="40 s of training each, 4 calibration images")
    budget = "40s" if args.quick else args.time
    out = args.out or (QUICK if args.quick else ROOT / "benchmarks" / ".runs") / "nuclei_two_designs"
    report_dir = (QUICK if args.quick else RESULTS) / "report_nuclei_two_designs"
    runs = {name: train_one(path, out / name, budget, args.threads, args.quick) for name, path in RECIPES.items()}
    bench = bench_and_report(runs, out, args.threads, report_dir)
    write_results(args.results, {"time_budget": budget, "threads": args.threads, "runs": runs, **bench},
                  markdown(runs, bench, budget, args.threads), command=command_line(locked=True))


if __name__ == "__main__":
    main()
