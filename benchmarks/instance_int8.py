"""INT8 vs FP32 accuracy of a trained instance model in ONNX Runtime: mask/box AP on the whole val split.

Usage: flock /tmp/edgeseg-bench.lock python benchmarks/instance_int8.py RECIPE --checkpoint RUN/model.pt
           [--calib 52] [--threads 2] [--results benchmarks/results/NAME_int8]

Exports the checkpoint (written by benchmarks/instance_train.py) to ONNX with dynamic height/width,
quantizes it with edgeseg's CPU INT8 settings (ORT static QDQ, u8 activations, s8 per-channel weights),
calibrated on TRAINING-split images (native size, zero-padded to multiples of 32, minmax), then runs
both models over every validation image at native resolution with the numpy postprocess beside the
runtime (the postprocess stays in float) and scores them with the COCO evaluator. Writes
RESULTS.{json,md}. Target (issue 9): INT8 mask AP within 1 point of FP32.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_checkpoint(path: Path) -> Any:
    """An edgeseg checkpoint's model in eval mode (also the bare {config, state_dict} of early runs)."""
    import torch

    from edgeseg.artifacts.checkpoint import build_from_config
    from edgeseg.artifacts.checkpoint import load_checkpoint as load

    raw = torch.load(path, map_location="cpu", weights_only=False)
    if "state_dict" in raw and "config" in raw and "meta" not in raw:
        model = build_from_config(raw["config"])
        model.load_state_dict(raw["state_dict"])
        return model.eval()
    return load(path).model.eval()


def export_dynamic(model: Any, path: Path) -> Path:
    import onnxslim
    import torch

    x = torch.randn(1, model.in_channels, 256, 256)
    prog = torch.onnx.export(model, (x,), dynamo=True, opset_version=18, input_names=["input"],
                             output_names=list(model.output_names), optimize=True, verbose=False,
                             dynamic_shapes=({0: "batch", 2: "height", 3: "width"},))
    import onnx

    onnx.save(onnxslim.slim(prog.model_proto), str(path))
    return path


def padded_images(dataset: Any, stride: int, limit: int | None = None) -> list[tuple[np.ndarray, tuple[int, int]]]:
    from edgeseg.data.preprocess import pad_to_stride

    out = []
    for i in range(len(dataset.samples) if limit is None else min(limit, len(dataset.samples))):
        image, _ = dataset[i]
        padded, hw = pad_to_stride(image.numpy(), stride)
        out.append((padded[None], hw))
    return out


def evaluate(session: Any, dataset: Any, recipe: Any, stride: int) -> dict[str, Any]:
    from edgeseg.metrics.instance import InstanceEvaluator
    from edgeseg.tasks.instance_postprocess import postprocess

    ic = recipe.instance
    ev = InstanceEvaluator(dataset.class_names, max_dets=ic.max_dets)
    names = [o.name for o in session.get_outputs()]
    for i, (x, hw) in enumerate(padded_images(dataset, stride)):
        outs = dict(zip(names, session.run(None, {"input": x})))
        det = postprocess(outs, input_hw=x.shape[-2:], image_hw=hw, placement="pad", score_thresh=ic.score_thresh,
                          iou_thresh=ic.iou_thresh, top_k=ic.top_k, max_dets=ic.max_dets, mask_thresh=ic.mask_thresh)[0]
        _, target = dataset[i]
        ev.update(dataset.image_ids[i], det, {k: v.numpy() for k, v in target.items()})
    return ev.compute()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", type=Path)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--calib", type=int, default=52, help="training images used for calibration")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--quantize-tail", action="store_true",
                    help="also quantize the decode tail after the last convolutions (default: kept in float)")
    args = ap.parse_args()

    import onnxruntime as ort

    from edgeseg.artifacts import atomic_write_json, atomic_write_text, library_versions
    from edgeseg.bench.machine import machine_info
    from edgeseg.compress.ptq import CPU_SETTINGS, calibrate, quantize
    from edgeseg.data.instances import build_instance_dataset
    from edgeseg.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    results = args.results or ROOT / "benchmarks" / "results" / f"{recipe.name.replace('-', '_')}_int8"
    model = load_checkpoint(args.checkpoint)
    m = recipe.model
    train = build_instance_dataset(recipe.data, "train", in_channels=m.in_channels, num_classes=m.num_classes)
    val = build_instance_dataset(recipe.data, "val", in_channels=m.in_channels, num_classes=m.num_classes)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory(prefix="edgeseg-inst-int8-") as tmp:
        fp32 = export_dynamic(model, Path(tmp) / "model.onnx")
        calib = [x for x, _ in padded_images(train, model.stride, args.calib)]
        ranges = calibrate(fp32, iter(calib), method="minmax", total=len(calib))
        int8 = Path(tmp) / "model.int8.onnx"
        import onnx

        from edgeseg.models.yolact import float_tail_nodes

        tail = [] if args.quantize_tail else float_tail_nodes(onnx.load(str(fp32)))
        qinfo = quantize(fp32, int8, ranges, CPU_SETTINGS, method="minmax", exclude=tail)
        metrics = {}
        for key, path in (("fp32", fp32), ("int8", int8)):
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            metrics[key] = evaluate(sess, val, recipe, model.stride)
    drop = {k: round(100 * (metrics["fp32"][k] - metrics["int8"][k]), 2) for k in ("mask_ap", "mask_ap50", "box_ap")}
    command = (f"flock /tmp/edgeseg-bench.lock python benchmarks/instance_int8.py {args.recipe} --checkpoint "
               f"{args.checkpoint} --calib {args.calib} --threads {args.threads}"
               + (" --quantize-tail" if args.quantize_tail else ""))
    record = {"command": command, "machine": machine_info(), "versions": library_versions(),
              "calibration_images": len(calib), "calibration_split": "train",
              "float_tail_nodes": len(tail), "val_images": len(val),
              "quantization": {k: v for k, v in qinfo.items() if k != "excluded"}, "metrics": metrics,
              "drop_points": drop, "target_mask_ap_within_1_point": abs(drop["mask_ap"]) <= 1.0}
    atomic_write_json(results.with_suffix(".json"), record)
    md = [f"# {recipe.name}: INT8 vs FP32 accuracy (ONNX Runtime CPU, numpy postprocess)", "",
          f"Command: `{command}`. INT8: ORT static QDQ (edgeseg CPU settings: u8 activations, s8 per-channel "
          f"7-bit weights; decode tail after the last convolutions "
          f"{'quantized too' if args.quantize_tail else f'kept in float ({len(tail)} nodes)'}), minmax calibration on {len(calib)} training images; {qinfo['quantized_nodes']} weighted "
          f"nodes in INT8, {qinfo['skipped_nodes']} in float. Evaluated on all {len(val)} validation images "
          f"({metrics['fp32']['num_instances']} instances) at native resolution, maxDets {metrics['fp32']['max_dets']}.",
          "", "| precision | mask AP | mask AP50 | mask AP75 | box AP | box AP50 |", "|---|---:|---:|---:|---:|---:|"]
    for key in ("fp32", "int8"):
        r = metrics[key]
        md.append(f"| {key.upper()} | {r['mask_ap']:.4f} | {r['mask_ap50']:.4f} | {r['mask_ap75']:.4f} | "
                  f"{r['box_ap']:.4f} | {r['box_ap50']:.4f} |")
    md += ["", f"Drop FP32 -> INT8 (points): mask AP {drop['mask_ap']:+.2f}, mask AP50 {drop['mask_ap50']:+.2f}, "
               f"box AP {drop['box_ap']:+.2f}. Target (mask AP within 1 point): "
               f"{'met' if record['target_mask_ap_within_1_point'] else 'NOT met'}."]
    atomic_write_text(results.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
