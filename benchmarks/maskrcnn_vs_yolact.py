"""ONNX Runtime CPU latency, end to end, of maskrcnn-lite vs yolact-lite vs YOLOv8n-seg, and INT8 vs FP32 of
maskrcnn-lite, in one run.

Usage: flock /tmp/edgeseg-bench.lock python benchmarks/maskrcnn_vs_yolact.py [--sizes 320,512] [--threads 2]
           [--rounds 5] [--runs 10]

Our models are built with random weights (latency does not depend on them; the detection count does, so
decoding keeps every slot: ``score_thresh=0``, ``max_dets=100``, the worst case for the postprocess) and
exported by edgeseg's writer (:func:`edgeseg.artifacts.onnx_export.export_onnx`) at a static
1x3xSIZExSIZE input; maskrcnn-lite INT8 is ORT static QDQ (edgeseg's CPU settings) calibrated on DSB2018
training images, with the instance task's float nodes (heads' last layers, decoding, RoiAlign) kept in
float. YOLOv8n-seg comes from ``../shared/anchors`` (320 and 640 only; its postprocess is not ours and is
not counted). End to end = network + the instance task's numpy decode (``Task.decode``). All sessions live
in one process with ``--threads`` intra-op threads and no spinning; rounds alternate over the files, so
the ratios come from one run. Writes benchmarks/results/maskrcnn_vs_yolact.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OURS = ("maskrcnn-lite", "yolact-lite")
PEER = "yolov8n-seg"


def export_ours(name: str, size: int, out: Path) -> tuple[Path, float, int]:
    """Static FP32 ONNX of a registered model with one class; returns (path, GMACs, params)."""
    import torch

    from edgeseg.artifacts import ModelMeta
    from edgeseg.artifacts.onnx_export import export_onnx
    from edgeseg.models import create_model, get_model_info
    from edgeseg.models.profile import count_macs, count_params

    torch.manual_seed(0)
    model = create_model(name, num_classes=1).eval()
    info = get_model_info(name)
    meta = ModelMeta(model_name=name, family=info.family, task=info.task, num_classes=1, in_channels=3,
                     classes=["nucleus"], mean=[0.5] * 3, std=[0.25] * 3, input_size=[size, size], stride=info.stride,
                     output_names=list(model.output_names))
    path = out / f"{name}-{size}.onnx"
    export_onnx(model, meta, path, hw=(size, size), dynamic=False)
    return path, count_macs(model, (size, size)) / 1e9, count_params(model)


def calibration(size: int, count: int = 8) -> list[np.ndarray]:
    """DSB2018 training images resized to ``size``, normalised like the metadata above."""
    from PIL import Image

    root = SHARED / "datasets" / "dsb2018-nuclei"
    names = (root / "splits" / "train.txt").read_text().split()[:count]
    images = []
    for n in names:
        img = Image.open(root / "images" / f"{n}.png").convert("RGB").resize((size, size), Image.BILINEAR)
        x = (np.asarray(img, np.float32) / 255.0 - 0.5) / 0.25
        images.append(x.transpose(2, 0, 1)[None].astype(np.float32))
    return images


def int8_of(fp32: Path, size: int) -> Path:
    import onnx

    from edgeseg.compress import quantize
    from edgeseg.tasks import get_task

    out = fp32.with_suffix(".int8.onnx")
    exclude = get_task("instance").int8_float_nodes(onnx.load(str(fp32)))
    quantize(fp32, out, calibration(size), exclude=exclude)
    return out


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def time_file(sess, x: np.ndarray, runs: int, decode) -> tuple[list[float], list[float]]:
    """(network ms, decode ms) of ``runs`` runs."""
    name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]
    net, post = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        outs = dict(zip(names, sess.run(names, {name: x})))
        t1 = time.perf_counter()
        if decode is not None:
            decode(outs)
        net.append((t1 - t0) * 1e3)
        post.append((time.perf_counter() - t1) * 1e3)
    return net, post


def build(sizes: list[int], tmp: Path) -> list[dict]:
    rows = []
    for size in sizes:
        for name in OURS:
            path, gmacs, params = export_ours(name, size, tmp)
            rows.append({"model": name, "size": size, "precision": "fp32", "path": path, "gmacs": gmacs,
                         "params": params, "ours": True})
            if name == "maskrcnn-lite":
                rows.append({**rows[-1], "precision": "int8", "path": int8_of(path, size)})
        peer = SHARED / "anchors" / f"{PEER}-{size}.onnx"
        if peer.exists():
            rows.append({"model": PEER, "size": size, "precision": "fp32", "path": peer, "gmacs": None,
                         "params": None, "ours": False})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="320,512")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args()
    from edgeseg.tasks import get_task

    task = get_task("instance")
    with tempfile.TemporaryDirectory() as tmp:
        rows = build([int(s) for s in args.sizes.split(",")], Path(tmp))
        for r in rows:
            r["session"] = session(r["path"], args.threads)
            r["x"] = calibration(r["size"], 1)[0]
            hw = (r["size"], r["size"])
            r["decode"] = (lambda outs, hw=hw: task.decode(outs, input_hw=hw, image_hw=hw, placement="pad",
                                                           score_thresh=0.0, max_dets=100)) if r["ours"] else None
            r["net"], r["post"] = [], []
            time_file(r["session"], r["x"], 2, r["decode"])  # warm-up
        cpu0 = os.times()
        for _ in range(args.rounds):
            for r in rows:
                net, post = time_file(r["session"], r["x"], args.runs, r["decode"])
                r["net"] += net
                r["post"] += post
        cpu = os.times()
    results = [{"model": r["model"], "size": r["size"], "precision": r["precision"], "gmacs": r["gmacs"],
                "params_m": r["params"] / 1e6 if r["params"] else None,
                "network_p50_ms": statistics.median(r["net"]),
                "postprocess_p50_ms": statistics.median(r["post"]) if r["ours"] else None,
                "end_to_end_p50_ms": statistics.median([a + b for a, b in zip(r["net"], r["post"])]) if r["ours"] else None}
               for r in rows]
    write(results, args, cpu0, cpu)


def write(results: list[dict], args: argparse.Namespace, cpu0: os.times_result, cpu: os.times_result) -> None:
    import platform

    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                platform.machine())
    doc = {"threads": args.threads, "rounds": args.rounds, "runs": args.runs, "cpu": name, "cores": os.cpu_count(),
           "load_average": os.getloadavg(), "process_cpu_s": cpu.user + cpu.system - cpu0.user - cpu0.system,
           "wall_s": cpu.elapsed - cpu0.elapsed, "results": results}
    (out / "maskrcnn_vs_yolact.json").write_text(json.dumps(doc, indent=1) + "\n")
    fmt = lambda v, f=".2f": "-" if v is None else format(v, f)
    lines = [f"ORT CPU ({name}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}), {args.threads} "
             f"threads, batch 1, {args.rounds}x{args.runs} runs alternating (p50 ms)", "",
             "| model | size | precision | GMACs | network | postprocess | end to end |", "|---|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['size']} | {r['precision']} | {fmt(r['gmacs'])} | {fmt(r['network_p50_ms'])} | "
              f"{fmt(r['postprocess_p50_ms'])} | {fmt(r['end_to_end_p50_ms'])} |" for r in results]
    (out / "maskrcnn_vs_yolact.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
