"""SegNet's unpooling graph forms in ONNX Runtime, FP32 and PTQ INT8, timed side by side in one run.

Forms (same weights, same outputs; edgeseg/models/segnet.py):

* ``indices``: MaxPool with an indices output + ScatterND (what the dynamo exporter writes for
  ``max_unpool2d``);
* ``compare-slices``: the mask form edgeseg exported until 2026-11-26: ``x == resize(maxpool(x))``,
  first maximum by four strided slices and products, back to full size by DepthToSpace. Kept here (not in
  the package) only to measure what the change bought;
* ``previous``: ``compare-slices`` as INT8 was made before the same change: every reader of a compared
  tensor kept float and the mask reading the pools' float outputs (the INT8 file export wrote then);
* ``compare``: the mask form export writes now: maxima weighted 4/3/2/1 by window position, a second
  max-pool picks the first one (only whole-tensor ops).

Every form's INT8 model is made by ``edgeseg.compress.ptq.quantize`` from one calibration (the training
images, ``--calib-method``), so each gets the package's comparison handling (the slices form needs its
paths in float; the new form stays on one grid). Outputs are checked: every FP32 form must match
``indices`` exactly in argmax on the validation images, and the INT8 argmax agreement with FP32 is printed.
Timing: ONNX Runtime CPU, ``--threads``, batch 1, ``--size``, alternating rounds, best median, the other
processes' CPU use per round (benchmarks.timing.side_by_side); holds /tmp/edgeseg-bench.lock.

Usage: python -m benchmarks.segnet_unpool_forms CKPT [CKPT ...] --data ROOT --out OUT [--quick]
Writes benchmarks/results/segnet_unpool_forms.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.record import QUICK, parse_options, write_results
from benchmarks.export_int8 import QUICK_LATENCY
from benchmarks.timing import bench_lock, side_by_side

if TYPE_CHECKING:
    import torch

FORMS = ("indices", "compare-slices", "compare")


def slices_mask(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The previous ``segnet.max_pool_mask``: strided slices + products + pixel_shuffle (DepthToSpace)."""
    import torch
    import torch.nn.functional as F

    pooled = F.max_pool2d(x, 2, 2)
    eq = (x == F.interpolate(pooled, scale_factor=2.0, mode="nearest")).to(x.dtype)
    e00, e01 = eq[..., 0::2, 0::2], eq[..., 0::2, 1::2]
    e10, e11 = eq[..., 1::2, 0::2], eq[..., 1::2, 1::2]
    k01 = e01 * (1 - e00)
    k10 = e10 * (1 - e00) * (1 - e01)
    k11 = e11 * (1 - e00) * (1 - e01) * (1 - e10)
    return pooled, F.pixel_shuffle(torch.stack([e00, k01, k10, k11], dim=2).flatten(1, 2), 2)


def export_form(ckpt: Path, form: str, path: Path, hw: tuple[int, int]) -> Path:
    """FP32 ONNX of the checkpoint's SegNet in ``form``."""
    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.artifacts.onnx_export import export_onnx
    from edgeseg.models import segnet
    from edgeseg.recipe import recipe_from_dict
    from edgeseg.train.meta import meta_for

    loaded = load_checkpoint(ckpt)
    net = loaded.model.eval().with_unpool("indices" if form == "indices" else "compare")
    original = segnet.max_pool_mask
    if form == "compare-slices":
        segnet.max_pool_mask = slices_mask
    try:
        export_onnx(net, meta_for(net, recipe_from_dict(loaded.meta.recipe)), path, hw=hw, dynamic=True)
    finally:
        segnet.max_pool_mask = original
    return path


def val_images(ckpt: Path, data: str | None, count: int) -> list[np.ndarray]:
    """Up to ``count`` normalised validation images (1 x C x H x W), resized to 256 like the bench."""
    import torch
    import torch.nn.functional as F

    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.evaluate import dataset_samples
    from edgeseg.recipe import stored_recipe
    from edgeseg.tasks import get_task

    meta = load_checkpoint(ckpt).meta
    rcp = stored_recipe(meta.recipe, [f"data.root={data}"] if data else [], source=str(ckpt))
    ds = get_task("semantic").build_dataset(rcp.data, "val", in_channels=meta.in_channels, train=False,
                                            num_classes=meta.num_classes)
    out = []
    for image, _ in dataset_samples(ds):
        t = torch.from_numpy(image)[None]
        out.append(F.interpolate(t, size=(256, 256), mode="bilinear", align_corners=False).numpy())
        if len(out) == count:
            break
    return out


def argmax_of(path: Path, images: list[np.ndarray]) -> np.ndarray:
    """Class-index maps of ``path`` (ONNX Runtime through edgeseg.runtime) on every image."""
    from edgeseg import runtime

    backend = runtime.open(path)
    return np.stack([next(iter(backend(x).values())).argmax(1) for x in images])


def prepare(ckpt: Path, out: Path, args: argparse.Namespace) -> dict[str, Path]:
    """FP32 and INT8 ONNX of every form (cached by file), with their output checks printed."""
    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.compress.calibration import calibration_images
    from edgeseg.compress.ptq import CPU_SETTINGS, calibrate, quantize
    from edgeseg.recipe import stored_recipe

    hw = (args.size, args.size)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for form in FORMS:
        path = out / f"{form}.onnx"
        files[f"{form} fp32"] = path if path.is_file() else export_form(ckpt, form, path, hw)
    meta = load_checkpoint(ckpt).meta
    rcp = stored_recipe(meta.recipe, [f"data.root={args.data}"] if args.data else [], source=str(ckpt))
    images: list[np.ndarray] = []
    ranges: dict[str, Any] = {}

    def form_ranges(form: str) -> Any:
        """Calibration of ``form``'s FP32 graph (its own tensor names) on the same training images."""
        if not images:
            batches, _ = calibration_images(rcp.data, meta.in_channels, num_classes=meta.num_classes,
                                            count=args.calibration, size=hw, seed=rcp.train.seed)
            images.extend(batches)
        if form not in ranges:
            ranges[form] = calibrate(files[f"{form} fp32"], images, method=args.calib_method)
        return ranges[form]

    for form in FORMS:
        int8 = out / f"{form}.int8.onnx"
        if not int8.is_file():
            info = quantize(files[f"{form} fp32"], int8, form_ranges(form), CPU_SETTINGS, method=args.calib_method)
            print(f"{ckpt.parent.name} {form} int8: {info['quantized_nodes']} convs INT8, comparisons "
                  f"{info['comparisons']}", flush=True)
        files[f"{form} int8"] = int8
    previous = out / "compare-slices.int8-float-mask.onnx"
    if not previous.is_file():  # what export wrote before: slices form, whole mask path float
        import onnx

        from edgeseg.compress.ptq import float_comparison_paths, self_comparison_nodes

        src = files["compare-slices fp32"]
        quantize(src, previous, form_ranges("compare-slices"), CPU_SETTINGS, method=args.calib_method,
                 exclude=self_comparison_nodes(onnx.load(src)))
        model = onnx.load(previous)
        float_comparison_paths(model)
        onnx.save(model, previous)
    files["previous int8"] = previous
    images = val_images(ckpt, args.data, args.val_images)
    ref = argmax_of(files["indices fp32"], images)
    for key, path in files.items():
        agree = float((argmax_of(path, images) == ref).mean())
        print(f"{ckpt.parent.name} {key}: argmax agreement with indices FP32 {agree:.6f} ({len(images)} val images)")
        if key.endswith("fp32") and agree != 1.0:
            raise SystemExit(f"{key} of {ckpt} differs from the indices form")
    return files


def markdown(latency: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines = [f"# SegNet unpooling forms in ONNX Runtime ({args.threads} threads, batch 1, {args.size}x{args.size}; "
             "best median of alternating rounds)", "",
             "| model | form | FP32 ms | INT8 ms | INT8 speed-up | busy rounds |", "|---|---|---:|---:|---:|---:|"]
    for model in dict.fromkeys(k.split(" ")[0] for k in latency):
        for form in (*FORMS[:2], "previous", FORMS[2]):
            fp = latency[f"{model} {'compare-slices' if form == 'previous' else form} fp32"]
            q = latency[f"{model} {form} int8"]
            busy = sum(bool(c) for c in fp["contention"] + q["contention"])
            lines.append(f"| {model} | {form} | {fp['best_p50_ms']:.1f} | {q['best_p50_ms']:.1f} | "
                         f"{fp['best_p50_ms'] / q['best_p50_ms']:.2f}x | {busy}/{len(fp['rounds']) * 2} |")
    return lines + ["", "Rounds (ms): `" + json.dumps({k: v["rounds"] for k, v in latency.items()}) + "`"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path, help="SegNet model.pt files (pruned ones too)")
    ap.add_argument("--data", help="dataset root (default: the one in each checkpoint's recipe)")
    ap.add_argument("--out", default="runs/segnet_unpool_forms", help="ONNX cache")
    ap.add_argument("--calibration", type=int, default=32)
    ap.add_argument("--calib-method", default="percentile")
    ap.add_argument("--val-images", type=int, default=6)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prepare-only", action="store_true")
    args = parse_options(ap, "segnet_unpool_forms", argv, quick="4 calibration and 2 val images, 64 px, 1 round")
    if args.quick:
        args.calibration, args.val_images, args.size, args.rounds = 4, 2, 64, 1
        args.out = str(QUICK / "segnet_unpool_forms")
    files: dict[str, Path] = {}
    for ckpt in args.checkpoints:
        name = ckpt.parent.name
        files.update({f"{name} {k}": p for k, p in prepare(ckpt, Path(args.out) / name, args).items()})
    if args.prepare_only:
        return
    with bench_lock():
        latency = side_by_side(files, (args.size, args.size), threads=args.threads, rounds=args.rounds,
                               latency=QUICK_LATENCY if args.quick else None)
    record = {"threads": args.threads, "size": args.size, "rows": latency}
    write_results(args.results, record, markdown(latency, args))


if __name__ == "__main__":
    main()
