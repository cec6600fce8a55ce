"""Network-only ONNX Runtime latency of yolact-lite beside YOLOv8n-seg and YOLO11n-seg, FP32 and INT8, one run.

Usage: flock /tmp/edgeseg-bench.lock python -m benchmarks.instance_latency [--size 320] [--threads 2]
           [--rounds 5] [--checkpoint RUN/model.pt] [--models yolact-lite,...] [--quick]

Every model is exported here at a static 1x3xSIZExSIZE input (the anchors ship that way; ours by the
library's ONNX writer, ``edgeseg.artifacts.onnx_export.export_onnx``) and quantized with
``edgeseg.quantize`` (edgeseg's CPU INT8 settings: ORT static QDQ, u8 activations, s8 per-channel
weights) from the same calibration batch (the models' weights are random unless --checkpoint is given;
latency does not depend on the weights). All sessions live in one process with THREADS intra-op threads
and ``session.intra_op.allow_spinning = 0`` and the rounds alternate over all files (benchmarks.timing):
the ratios below come from one run. CPU time taken by other processes while timing is recorded per file.
``--quick``: 64 px (no peer files at that size), one short round: a smoke run of the script, not results.
Writes benchmarks/results/instance_latency.{json,md}.
Targets (issue 9): yolact-lite <= 1.6 GMACs, FP32 faster than YOLOv8n-seg-320, INT8 >= 1.3x faster than FP32.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.export_int8 import QUICK_LATENCY
from benchmarks.record import ROOT, command_line, parse_options, write_results
from benchmarks.timing import contention_note, side_by_side, targets_line

ANCHORS = ROOT.parent / "shared" / "anchors"
PEERS = {"yolov8n-seg": "yolov8n-seg-{size}.onnx", "yolo11n-seg": "yolo11n-seg-{size}.onnx"}
RECIPE = ROOT / "recipes" / "yolact_lite.yaml"
LATENCY_KW = {"warmup": 3, "min_runs": 15, "min_time_s": 1.0, "max_time_s": 30.0}


def our_model(name: str, checkpoint: Path | None, num_classes: int) -> tuple[Any, Any]:
    """(model, metadata): the checkpoint's (safe loader), or a seeded random ``name`` with ``num_classes``."""
    import torch

    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.models import create_model
    from edgeseg.recipe import load_recipe
    from edgeseg.train.meta import meta_for

    if checkpoint is not None:
        loaded = load_checkpoint(checkpoint)
        return loaded.model.eval(), loaded.meta
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes).eval()
    classes = "[" + ",".join(f"class{i}" for i in range(num_classes)) + "]"
    recipe = load_recipe(RECIPE, [f"model.name={name}", f"model.num_classes={num_classes}", f"data.classes={classes}"])
    return model, meta_for(model, recipe)


def export_ours(name: str, size: int, out: Path, checkpoint: Path | None, num_classes: int) -> tuple[Path, dict]:
    """Static-shape FP32 ONNX of a registered instance model; returns (path, figures: GMACs, params, weights)."""
    from edgeseg.artifacts.onnx_export import export_onnx
    from edgeseg.models.profile import count_macs, count_params

    model, meta = our_model(name, checkpoint, num_classes)
    path = out / f"{name}-{size}.onnx"
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(model, meta, path, hw=(size, size), dynamic=False)
    return path, {"gmacs": round(count_macs(model, (size, size)) / 1e9, 3), "params": count_params(model),
                  "weights": str(checkpoint) if checkpoint else f"random, {num_classes} classes"}


def quantize_int8(fp32: Path, out: Path, calib: list[np.ndarray], float_tail: bool = False) -> Path:
    """INT8 QDQ of ``fp32`` into ``out`` by ``edgeseg.quantize``; ``float_tail`` keeps the decode tail after the last
    convolutions in float (what export does for our models)."""
    import onnx

    from edgeseg.compress import quantize
    from edgeseg.tasks import get_task

    proto = onnx.load(str(fp32), load_external_data=False)
    tail = get_task("instance").int8_float_nodes(proto) if float_tail else {}
    dst = out / fp32.name.replace(".onnx", ".int8.onnx")
    quantize(fp32, dst, calib, exclude=tail, input_name=proto.graph.input[0].name)
    return dst


def build_files(args: argparse.Namespace, out: Path) -> tuple[dict[str, Path], dict[str, dict]]:
    """FP32 and INT8 files of our models (and the checkpoint's) and of the peers found in the anchors."""
    rng = np.random.default_rng(1)
    calib = [rng.standard_normal((1, 3, args.size, args.size), dtype=np.float32) for _ in range(args.calib)]
    ours = [(name, None) for name in args.models.split(",")]
    if args.checkpoint is not None:
        ours.append((f"{args.models.split(',')[0]} (trained: {args.checkpoint.parent.name})", args.checkpoint))
    files: dict[str, Path] = {}
    info: dict[str, dict] = {}
    for name, ckpt in ours:
        fp32, info[name] = export_ours(name.split(" ")[0], args.size, out / f"m{len(info)}", ckpt, args.num_classes)
        files[f"{name}/fp32"], files[f"{name}/int8"] = fp32, quantize_int8(fp32, fp32.parent, calib, float_tail=True)
    for peer, pattern in PEERS.items():
        src = ANCHORS / pattern.format(size=args.size)
        if src.exists():
            files[f"{peer}/fp32"], files[f"{peer}/int8"] = src, quantize_int8(src, out, calib)
            info[peer] = {"gmacs": None, "params": None, "file": str(src.relative_to(ROOT.parent))}
    return files, info


def rows_and_targets(info: dict[str, dict], latency: dict[str, Any]) -> tuple[list[dict], dict[str, Any]]:
    rows = []
    for name in info:
        f, i = latency[f"{name}/fp32"], latency[f"{name}/int8"]
        rows.append({"model": name, **info[name], "fp32_ms": round(f["p50_ms"], 2), "int8_ms": round(i["p50_ms"], 2),
                     "int8_speedup": round(f["p50_ms"] / i["p50_ms"], 3), "noisy": f["noisy"] or i["noisy"]})
    ours = rows[0]
    v8 = next((r for r in rows if r["model"] == "yolov8n-seg"), None)
    return rows, {"gmacs_le_1.6": ours["gmacs"] <= 1.6,
                  "fp32_faster_than_yolov8n_seg": (ours["fp32_ms"] < v8["fp32_ms"]) if v8 else None,
                  "int8_speedup_ge_1.3": ours["int8_speedup"] >= 1.3}


def markdown(rows: list[dict], latency: dict[str, Any], targets: dict[str, Any], args: argparse.Namespace) -> list[str]:
    md = [f"# Instance models: ONNX Runtime latency, network only ({args.size}x{args.size}, batch 1, "
          f"{args.threads} threads)", "",
          f"Median of {args.rounds} alternating rounds of p50 latency, all sessions in one process "
          "(allow_spinning=0). INT8: `edgeseg.quantize` (ORT static QDQ, edgeseg CPU settings), minmax calibration; "
          "our models keep the box/score decode tail after the last convolutions in float (as export does), "
          f"peers are quantized whole. Our rows: random weights with {args.num_classes} classes (the peers' head "
          "size), plus the trained checkpoint when given; the peers' weights are random too.", "",
          "| model | GMACs | params | FP32 ms | INT8 ms | INT8 speed-up |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        g = f"{r['gmacs']:.2f}" if r["gmacs"] is not None else "-"
        p = f"{r['params'] / 1e6:.2f}M" if r["params"] else "-"
        md.append(f"| {r['model']} | {g} | {p} | {r['fp32_ms']:.2f} | {r['int8_ms']:.2f} | {r['int8_speedup']:.2f}x |")
    v8 = next((r for r in rows if r["model"] == "yolov8n-seg"), None)
    if v8:
        md += ["", f"yolact-lite FP32 / YOLOv8n-seg FP32 = {rows[0]['fp32_ms'] / v8['fp32_ms']:.2f}; "
                   f"INT8 / INT8 = {rows[0]['int8_ms'] / v8['int8_ms']:.2f}."]
    return md + ["", contention_note(latency), "", targets_line(targets)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default="yolact-lite")
    ap.add_argument("--num-classes", type=int, default=80, help="classes of our models (YOLOv8 heads have 80)")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--calib", type=int, default=8, help="calibration inputs (random normal, latency only)")
    args = parse_options(ap, "instance_latency", argv, quick="64 px, 1 short round")
    if args.quick:
        args.size, args.rounds, args.calib = 64, 1, 2
    with tempfile.TemporaryDirectory(prefix="edgeseg-instbench-") as tmp:
        files, info = build_files(args, Path(tmp))
        latency = side_by_side(files, (args.size, args.size), threads=args.threads, rounds=args.rounds,
                               latency=QUICK_LATENCY if args.quick else LATENCY_KW)
    rows, targets = rows_and_targets(info, latency)
    record = {"input": [1, 3, args.size, args.size], "rows": rows, "targets": targets, "latency": latency}
    write_results(args.results, record,
                  markdown(rows, latency, targets, args), command=command_line(locked=True))


if __name__ == "__main__":
    main()
