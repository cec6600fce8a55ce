"""Network-only ONNX Runtime latency of yolact-lite beside YOLOv8n-seg and YOLO11n-seg, FP32 and INT8, one run.

Usage: flock /tmp/edgeseg-bench.lock python benchmarks/instance_latency.py [--size 320] [--threads 2]
           [--rounds 5] [--checkpoint RUN/model.pt] [--models yolact-lite,...]

Every model is exported here at a static 1x3xSIZExSIZE input (the anchors ship that way) and quantized
with edgeseg's CPU INT8 settings (ORT static QDQ, u8 activations, s8 per-channel 7-bit weights) from the
same calibration batch (the models' weights are random unless --checkpoint is given; latency does not
depend on the weights). All sessions live in one process with 2 intra-op threads and
``session.intra_op.allow_spinning = 0`` (spinning threads of idle sessions would steal the cores), and
the rounds alternate over all files: the ratios below come from one run. CPU time taken by other
processes while timing is recorded per file. Writes benchmarks/results/instance_latency.{json,md}.
Targets (issue 9): yolact-lite <= 1.6 GMACs, FP32 faster than YOLOv8n-seg-320, INT8 >= 1.3x faster than FP32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ROOT.parent / "shared" / "anchors"
PEERS = {"yolov8n-seg": "yolov8n-seg-{size}.onnx", "yolo11n-seg": "yolo11n-seg-{size}.onnx"}


def export_ours(name: str, size: int, out: Path, checkpoint: Path | None, num_classes: int) -> tuple[Path, float, int]:
    """Static-shape FP32 ONNX of a registered instance model; returns (path, GMACs, params)."""
    import onnx
    import onnxslim
    import torch

    from edgeseg.models import create_model
    from edgeseg.models.profile import count_macs, count_params

    if checkpoint is not None:
        from instance_int8 import load_checkpoint  # same folder: also reads instance_train.py's early format

        model = load_checkpoint(checkpoint)
    else:
        torch.manual_seed(0)
        model = create_model(name, num_classes=num_classes)
    model.eval()
    macs = count_macs(model, (size, size))
    x = torch.randn(1, 3, size, size)
    prog = torch.onnx.export(model, (x,), dynamo=True, opset_version=17, input_names=["input"],
                             output_names=list(model.output_names), optimize=True, verbose=False)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{size}.onnx"
    onnx.save(onnxslim.slim(prog.model_proto), str(path))
    return path, macs / 1e9, count_params(model)


def quantize_int8(fp32: Path, out: Path, size: int, calib: list[np.ndarray], float_tail: bool = False) -> Path:
    """INT8 QDQ with edgeseg's CPU settings, calibrated on ``calib``; ``float_tail`` keeps the decode tail
    after the last convolutions in float (what the accuracy benchmark measures for our models)."""
    import onnx

    from edgeseg.compress.ptq import CPU_SETTINGS, calibrate, quantize
    from edgeseg.models.yolact import float_tail_nodes

    proto = onnx.load(str(fp32), load_external_data=False)
    ranges = calibrate(fp32, iter(calib), method="minmax", input_name=proto.graph.input[0].name, total=len(calib))
    dst = out / fp32.name.replace(".onnx", ".int8.onnx")
    quantize(fp32, dst, ranges, CPU_SETTINGS, method="minmax", exclude=float_tail_nodes(proto) if float_tail else ())
    return dst


def session(path: Path, threads: int):  # noqa: ANN201  (onnxruntime.InferenceSession)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def side_by_side(files: dict[str, Path], size: int, threads: int, rounds: int) -> dict[str, dict]:
    """Per file: median over alternating rounds of the p50 latency, with other processes' CPU use."""
    from edgeseg.bench.contention import CpuWatch, contention_reason
    from edgeseg.bench.latency import measure_latency

    sessions = {k: session(p, threads) for k, p in files.items()}
    x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    feeds = {k: {s.get_inputs()[0].name: x} for k, s in sessions.items()}
    res: dict[str, dict] = {k: {"round_p50s": [], "other_processes_cores": [], "contention": "", "noisy": False}
                            for k in files}
    for _ in range(rounds):
        for k, s in sessions.items():
            with CpuWatch() as watch:
                st = measure_latency(lambda s=s, f=feeds[k]: s.run(None, f), warmup=3, min_runs=15, min_time_s=1.0,
                                     max_time_s=30)
            r = res[k]
            r["round_p50s"].append(st.p50_ms)
            r["other_processes_cores"].append(watch.other_cores or 0.0)
            why = contention_reason(watch.other_cores, threads=threads, cores=os.cpu_count() or 1,
                                    wall_s=watch.wall_s)
            r["contention"] = r["contention"] or why
            r["noisy"] = r["noisy"] or st.noisy or bool(why)
    for r in res.values():
        r["p50_ms"] = statistics.median(r["round_p50s"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default="yolact-lite")
    ap.add_argument("--num-classes", type=int, default=80, help="classes of our models (YOLOv8 heads have 80)")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--calib", type=int, default=8, help="calibration inputs (random normal, latency only)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "instance_latency")
    args = ap.parse_args()

    from edgeseg.artifacts import atomic_write_json, atomic_write_text, library_versions
    from edgeseg.bench.machine import machine_info

    rng = np.random.default_rng(1)
    calib = [rng.standard_normal((1, 3, args.size, args.size), dtype=np.float32) for _ in range(args.calib)]
    files: dict[str, Path] = {}
    info: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="edgeseg-instbench-") as tmp:
        out = Path(tmp)
        ours = [(name, None) for name in args.models.split(",")]
        if args.checkpoint is not None:
            ours.append((f"{args.models.split(',')[0]} (trained: {args.checkpoint.parent.name})", args.checkpoint))
        for name, ckpt in ours:
            fp32, gmacs, params = export_ours(name.split(" ")[0], args.size, out / f"m{len(info)}", ckpt,
                                              args.num_classes)
            files[f"{name}/fp32"], files[f"{name}/int8"] = fp32, quantize_int8(fp32, fp32.parent, args.size, calib,
                                                                                float_tail=True)
            info[name] = {"gmacs": round(gmacs, 3), "params": params,
                          "weights": str(ckpt) if ckpt else f"random, {args.num_classes} classes"}
        for peer, pattern in PEERS.items():
            src = ANCHORS / pattern.format(size=args.size)
            if src.exists():
                files[f"{peer}/fp32"], files[f"{peer}/int8"] = src, quantize_int8(src, out, args.size, calib)
                info[peer] = {"gmacs": None, "params": None, "file": str(src.relative_to(ROOT.parent))}
        latency = side_by_side(files, args.size, args.threads, args.rounds)
    rows = []
    for name in info:
        f, i = latency[f"{name}/fp32"], latency[f"{name}/int8"]
        rows.append({"model": name, **info[name], "fp32_ms": round(f["p50_ms"], 2), "int8_ms": round(i["p50_ms"], 2),
                     "int8_speedup": round(f["p50_ms"] / i["p50_ms"], 3), "noisy": f["noisy"] or i["noisy"]})
    ours = rows[0]
    v8 = next((r for r in rows if r["model"] == "yolov8n-seg"), None)
    targets = {"gmacs_le_1.6": ours["gmacs"] <= 1.6,
               "fp32_faster_than_yolov8n_seg": (ours["fp32_ms"] < v8["fp32_ms"]) if v8 else None,
               "int8_speedup_ge_1.3": ours["int8_speedup"] >= 1.3}
    command = (f"flock /tmp/edgeseg-bench.lock python benchmarks/instance_latency.py --size {args.size} "
               f"--threads {args.threads} --rounds {args.rounds} --models {args.models}"
               + (f" --checkpoint {args.checkpoint}" if args.checkpoint else ""))
    record = {"command": command, "machine": machine_info(), "versions": library_versions(),
              "input": [1, 3, args.size, args.size],
              "rows": rows, "targets": targets, "latency": latency}
    atomic_write_json(args.results.with_suffix(".json"), record)
    m = record["machine"]
    md = [f"# Instance models: ONNX Runtime latency, network only ({args.size}x{args.size}, batch 1, "
          f"{args.threads} threads)", "",
          f"Machine: {m['cpu']}, {m['usable_cores']} cores; onnxruntime {record['versions'].get('onnxruntime')}. "
          f"Command: `{command}`. Median of {args.rounds} alternating rounds of p50 latency, all sessions in one "
          "process (allow_spinning=0). INT8: ORT static QDQ (edgeseg CPU settings), minmax calibration; our models keep the box/score "
          "decode tail after the last convolutions in float (as in the accuracy benchmark), peers are quantized "
          "whole. "
          f"Our rows: random weights with {args.num_classes} classes (the peers' head size), plus the trained "
          "checkpoint when given; the peers' weights are random too (latency does not depend on them).", "",
          "| model | GMACs | params | FP32 ms | INT8 ms | INT8 speed-up |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        g = f"{r['gmacs']:.2f}" if r["gmacs"] is not None else "-"
        p = f"{r['params'] / 1e6:.2f}M" if r["params"] else "-"
        md.append(f"| {r['model']} | {g} | {p} | {r['fp32_ms']:.2f} | {r['int8_ms']:.2f} | {r['int8_speedup']:.2f}x |")
    if v8:
        md += ["", f"yolact-lite FP32 / YOLOv8n-seg FP32 = {ours['fp32_ms'] / v8['fp32_ms']:.2f}; "
                   f"INT8 / INT8 = {ours['int8_ms'] / v8['int8_ms']:.2f}."]
    busy = [f"{k}: {v['contention']}" for k, v in latency.items() if v["contention"]]
    cores = sorted(c for v in latency.values() for c in v["other_processes_cores"])
    md += ["", "Contention: " + ("; ".join(busy) if busy else "none flagged")
           + f" (other processes' CPU while timing: median {statistics.median(cores):.2f} cores, "
             f"max {cores[-1]:.2f}).",
           "", "Targets: " + ", ".join(f"{k} {'met' if v else 'NOT met' if v is False else 'not measured'}"
                                      for k, v in targets.items()) + "."]
    atomic_write_text(args.results.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
