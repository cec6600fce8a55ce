"""ONNX Runtime CPU latency, end to end, of maskrcnn-lite vs yolact-lite vs YOLOv8n-seg, and INT8 vs FP32 of
maskrcnn-lite, in one run.

Usage: flock /tmp/edgeseg-bench.lock python -m benchmarks.maskrcnn_vs_yolact [--sizes 320,512] [--threads 2]
           [--rounds 5] [--runs 10] [--quick]

Our models are built with random weights (latency does not depend on them; the detection count does, so
decoding keeps every slot: ``score_thresh=0``, ``max_dets=100``, the worst case for the postprocess) and
exported by edgeseg's writer (:func:`edgeseg.artifacts.onnx_export.export_onnx`) at a static
1x3xSIZExSIZE input; maskrcnn-lite INT8 is ORT static QDQ (edgeseg's CPU settings) calibrated on DSB2018
training images, with the instance task's float nodes (heads' last layers, decoding, RoiAlign) kept in
float. YOLOv8n-seg comes from ``../shared/anchors`` (320 and 640 only; its postprocess is not ours and is
not counted). End to end = network + the instance task's numpy decode (``Task.decode``). All sessions live
in one process with ``--threads`` intra-op threads and no spinning (opened by benchmarks.timing); rounds
alternate over the files, so the ratios come from one run. ``--quick``: 64 px, one round of 2 runs: a smoke
run of the script, not results. Writes benchmarks/results/maskrcnn_vs_yolact.{json,md} (benchmarks.record).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.record import ROOT, command_line, parse_options, write_results
from benchmarks.timing import open_for_timing

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


def int8_of(fp32: Path, size: int, calib: int = 8) -> Path:
    """maskrcnn-lite INT8 by ``edgeseg.quantize``, the instance task's float nodes kept in float."""
    import onnx

    from edgeseg.compress import quantize
    from edgeseg.tasks import get_task

    out = fp32.with_suffix(".int8.onnx")
    exclude = get_task("instance").int8_float_nodes(onnx.load(str(fp32)))
    quantize(fp32, out, calibration(size, calib), exclude=exclude)
    return out


def time_file(backend: Any, x: np.ndarray, runs: int, decode: Callable | None) -> tuple[list[float], list[float]]:
    """(network ms, decode ms) of ``runs`` runs."""
    net, post = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        outs = backend(x)
        t1 = time.perf_counter()
        if decode is not None:
            decode(outs)
        net.append((t1 - t0) * 1e3)
        post.append((time.perf_counter() - t1) * 1e3)
    return net, post


def build(sizes: list[int], tmp: Path, calib: int = 8) -> list[dict]:
    """Our FP32 files (and maskrcnn-lite's INT8) at every size, plus the peer's where the anchors have it."""
    rows = []
    for size in sizes:
        for name in OURS:
            path, gmacs, params = export_ours(name, size, tmp)
            rows.append({"model": name, "size": size, "precision": "fp32", "path": path, "gmacs": gmacs,
                         "params": params, "ours": True})
            if name == "maskrcnn-lite":
                rows.append({**rows[-1], "precision": "int8", "path": int8_of(path, size, calib)})
        peer = SHARED / "anchors" / f"{PEER}-{size}.onnx"
        if peer.exists():
            rows.append({"model": PEER, "size": size, "precision": "fp32", "path": peer, "gmacs": None,
                         "params": None, "ours": False})
    return rows


def prepare(rows: list[dict], threads: int) -> None:
    """Open every file (benchmarks.timing: no spinning, peers without metadata too), its input and decode."""
    from edgeseg.tasks import get_task

    task = get_task("instance")
    for r in rows:
        r["backend"] = open_for_timing(r["path"], threads)
        r["x"] = calibration(r["size"], 1)[0]
        hw = (r["size"], r["size"])
        r["decode"] = (lambda outs, hw=hw: task.decode(outs, input_hw=hw, image_hw=hw, placement="pad",
                                                       score_thresh=0.0, max_dets=100)) if r["ours"] else None
        r["net"], r["post"] = [], []
        time_file(r["backend"], r["x"], 2, r["decode"])  # warm-up


def measure(rows: list[dict], rounds: int, runs: int) -> dict[str, Any]:
    """Rounds alternating over the files; returns the process CPU and wall seconds they took."""
    cpu0 = os.times()
    for _ in range(rounds):
        for r in rows:
            net, post = time_file(r["backend"], r["x"], runs, r["decode"])
            r["net"] += net
            r["post"] += post
    cpu = os.times()
    return {"process_cpu_s": cpu.user + cpu.system - cpu0.user - cpu0.system, "wall_s": cpu.elapsed - cpu0.elapsed}


def summary(r: dict) -> dict[str, Any]:
    """One results row: figures and p50s (end to end and postprocess only for our models)."""
    ours = r["ours"]
    return {"model": r["model"], "size": r["size"], "precision": r["precision"], "gmacs": r["gmacs"],
            "params_m": r["params"] / 1e6 if r["params"] else None,
            "network_p50_ms": statistics.median(r["net"]),
            "postprocess_p50_ms": statistics.median(r["post"]) if ours else None,
            "end_to_end_p50_ms": statistics.median([a + b for a, b in zip(r["net"], r["post"])]) if ours else None}


def markdown(results: list[dict], args: argparse.Namespace, load: float) -> list[str]:
    """The table of p50s (machine, date and command come in benchmarks.record's footer)."""
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = [(f"ORT CPU (load average {load:.1f}), {args.threads} threads, batch 1, {args.rounds}x{args.runs} runs "
              "alternating (p50 ms)"), "",
             "| model | size | precision | GMACs | network | postprocess | end to end |",
             "|---|---:|---|---:|---:|---:|---:|"]
    return lines + [f"| {r['model']} | {r['size']} | {r['precision']} | {fmt(r['gmacs'])} | "
                    f"{fmt(r['network_p50_ms'])} | {fmt(r['postprocess_p50_ms'])} | {fmt(r['end_to_end_p50_ms'])} |"
                    for r in results]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="320,512")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    args = parse_options(ap, "maskrcnn_vs_yolact", argv, quick="64 px, 1 round of 2 runs, 2 calibration images")
    if args.quick:
        args.sizes, args.rounds, args.runs = "64", 1, 2
    with tempfile.TemporaryDirectory(prefix="edgeseg-mvy-") as tmp:
        rows = build([int(s) for s in args.sizes.split(",")], Path(tmp), calib=2 if args.quick else 8)
        prepare(rows, args.threads)
        cost = measure(rows, args.rounds, args.runs)
    results = [summary(r) for r in rows]
    load = os.getloadavg()
    record = {"threads": args.threads, "rounds": args.rounds, "runs": args.runs, "load_average": load, **cost,
              "results": results}
    write_results(args.results, record, markdown(results, args, load[0]), command=command_line(locked=True))


if __name__ == "__main__":
    main()
