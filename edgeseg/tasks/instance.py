"""Instance segmentation: per-object masks with class and score, COCO mask AP; every instance family.

What a graph gives decides how it is decoded, never the family's name (:data:`DECODERS`): the raw heads
of a prototype model (YOLACT: ``scores``, ``boxes``, ``coefs``, ``protos``, decoded by the numpy
postprocess of :mod:`edgeseg.tasks.instance_postprocess`), fixed detection slots with image-size masks
(``det_masks``: YOLACT exported with ``export.postprocess: graph``) or with RoI-size masks
(``det_roi_masks``: a two-stage model, Mask R-CNN, whose postprocess is always in its graph; the masks
are pasted into their boxes here). The training loss is the model's (its ``loss_name``).
"""

from __future__ import annotations

import io
import json
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeseg.catalog import InstanceThresholds
from edgeseg.tasks.base import MetricColumn, ParityBars, Placement, Task, output
from edgeseg.tasks.instance_postprocess import GRAPH_OUTPUTS, ROI_OUTPUTS, box_iou
from edgeseg.tasks.instance_postprocess import OUTPUT_NAMES as HEADS

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
WEIGHTED_ATEN = ("aten.conv2d", "aten.convolution", "aten.conv_transpose2d", "aten.linear", "aten.matmul")
MATCH_IOU = 0.5  # a detection matches the reference's when labels agree and boxes overlap this much


def matched_detections(ref: Any, out: Any, iou: float = MATCH_IOU) -> int:
    """Greedy one-to-one matches (same label, box IoU >= ``iou``) between two Detections, by reference score."""
    if len(ref.scores) == 0 or len(out.scores) == 0:
        return 0
    ious = box_iou(np.asarray(ref.boxes, np.float64), np.asarray(out.boxes, np.float64))
    ious[np.asarray(ref.labels)[:, None] != np.asarray(out.labels)[None, :]] = 0.0
    used = np.zeros(ious.shape[1], bool)
    count = 0
    for i in np.argsort(-np.asarray(ref.scores), kind="stable"):
        cand = np.where(used, -1.0, ious[i])
        j = int(cand.argmax())
        if cand[j] >= iou:
            used[j] = True
            count += 1
    return count


def resize_plane(plane: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one H x W plane (float or bool) to ``hw``, as float32."""
    from PIL import Image

    plane = plane.astype(np.float32)
    if plane.shape == tuple(hw):
        return plane
    return np.asarray(Image.fromarray(plane, mode="F").resize((hw[1], hw[0]), Image.BILINEAR))


def decode_graph_outputs(outputs: dict[str, np.ndarray], *, input_hw: tuple[int, int], image_hw: tuple[int, int],
                         placement: str, score_thresh: float = 0.05, mask_thresh: float = 0.5,
                         max_dets: int = 100, **_: Any) -> list[Any]:
    """Detections from a graph that holds its postprocess (fixed slots, score 0 when empty; masks at the
    network's input size), at ``image_hw``."""
    from edgeseg.tasks.instance_postprocess import Detections

    boxes, scores, labels, masks = (np.asarray(output(outputs, k)) for k in GRAPH_OUTPUTS)
    size = tuple(image_hw) if placement == "resize" else tuple(input_hw)
    scale = np.array([size[1] / input_hw[1], size[0] / input_hw[0]] * 2, np.float32)
    h, w = image_hw
    result = []
    for b in range(scores.shape[0]):
        keep = np.flatnonzero(scores[b] > score_thresh)[:max_dets]
        mk = [resize_plane(m, size)[:h, :w] > mask_thresh for m in masks[b][keep]]
        bx = boxes[b][keep].astype(np.float32) * scale
        bx[:, 0::2] = bx[:, 0::2].clip(0, w)
        bx[:, 1::2] = bx[:, 1::2].clip(0, h)
        result.append(Detections(boxes=bx, scores=scores[b][keep].astype(np.float32),
                                 labels=labels[b][keep].round().astype(np.int64),
                                 masks=np.stack(mk) if mk else np.zeros((0, h, w), bool)))
    return result


def decode_roi_graph(outputs: dict[str, np.ndarray], **kwargs: Any) -> list[Any]:
    """Detections from a two-stage graph (RoI masks pasted into their boxes)."""
    from edgeseg.tasks.instance_postprocess import decode_roi_outputs

    return decode_roi_outputs({k: np.asarray(output(outputs, k)) for k in ROI_OUTPUTS}, **kwargs)


# an output only this kind of graph has -> its decoder; graphs with neither give the raw YOLACT heads
DECODERS = ((ROI_OUTPUTS[-1], decode_roi_graph), (GRAPH_OUTPUTS[-1], decode_graph_outputs))


def tail_nodes(model: Any, outputs: tuple[str, ...]) -> dict[str, str]:
    """Nodes between each named graph output and the last weighted layer before it (that layer included)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    initializers = {i.name for i in model.graph.initializer}
    keep: dict[str, str] = {}
    stack = [(o, o) for o in outputs if o in producer]
    while stack:
        tensor, head = stack.pop()
        node = producer.get(tensor)
        if node is None or node.name in keep:
            continue
        weighted = node.op_type in WEIGHTED_OPS
        keep[node.name] = (f"last layer of the {head!r} head" if weighted
                           else f"decodes the {head!r} head") + " (instance heads stay in float)"
        if not weighted:
            stack += [(t, head) for t in node.input if t and t not in initializers]
    return keep


def fx_tail_nodes(graph_module: Any, output_names: tuple[str, ...]) -> dict[str, str]:
    """:func:`tail_nodes` on an exported ATen graph (``torch.export``): FX node name -> why it stays float."""
    out = next(n for n in graph_module.graph.nodes if n.op == "output")
    results = out.args[0] if isinstance(out.args[0], (list, tuple)) else (out.args[0],)
    keep: dict[str, str] = {}
    stack = list(zip(results, output_names))
    while stack:
        node, head = stack.pop()
        if getattr(node, "op", None) != "call_function" or node.name in keep:
            continue
        weighted = str(node.target).startswith(WEIGHTED_ATEN)  # by name: this module imports no torch
        keep[node.name] = (f"last layer of the {head!r} head" if weighted
                           else f"decodes the {head!r} head") + " (instance heads stay in float)"
        if not weighted:
            stack += [(n, head) for n in node.all_input_nodes]
    return keep


POSTPROCESS_KEYS = tuple(f.name for f in fields(InstanceThresholds))


class _InstanceMetric:
    def __init__(self, class_names: list[str] | None, num_classes: int, max_dets: int) -> None:
        from edgeseg.metrics.instance import InstanceEvaluator

        names = list(class_names or [f"class{i}" for i in range(num_classes)])
        self.evaluator = InstanceEvaluator(names, max_dets=max_dets)

    def update(self, image_id: int, prediction: Any, target: dict[str, np.ndarray]) -> None:
        self.evaluator.update(image_id, prediction, target)

    def compute(self) -> dict[str, Any]:
        return self.evaluator.compute()


class InstanceTask(Task):
    """Per-object masks with class and score: the YOLACT and Mask R-CNN families."""

    name: ClassVar[str] = "instance"
    output_names: ClassVar[tuple[str, ...]] = HEADS
    headline: ClassVar[MetricColumn] = MetricColumn("mask_ap", "mask AP")
    columns: ClassVar[tuple[MetricColumn, ...]] = (
        MetricColumn("mask_ap", "mask AP"), MetricColumn("mask_ap50", "mask AP50"),
        MetricColumn("mask_ap75", "mask AP75"), MetricColumn("box_ap", "box AP"))
    report_columns: ClassVar[tuple[MetricColumn, ...]] = (
        MetricColumn("mask_ap", "mask AP"), MetricColumn("mask_ap50", "AP50"), MetricColumn("mask_ap75", "AP75"),
        MetricColumn("box_ap", "box AP"))
    # Detections are compared after decoding: a score near the threshold may drop one in FP32 noise.
    parity_bars: ClassVar[ParityBars] = ParityBars(fp32_max_rel_err=1e-3, fp32_min_agreement=0.95,
                                                   fp16_min_agreement=0.8, int8_min_agreement=0.5,
                                                   engine_min_agreement=0.8)
    has_postprocess: ClassVar[bool] = True
    training_outputs: ClassVar[tuple[str, ...]] = ("semantic",)  # the optional auxiliary semantic head
    report_rank: ClassVar[int] = 1
    # ExecuTorch 1.5: with the decode tail in float the XNNPACK program fails at run time (input shape propagation)
    executorch_int8_refusal: ClassVar[str] = "its INT8 program with the decode tail in float does not run on XNNPACK"

    def output_axes(self, name: str) -> dict[int, str]:
        if name == "protos":
            return {0: "batch", 2: "proto_height", 3: "proto_width"}
        return {0: "batch", 1: "anchors"}

    def int8_float_nodes(self, model: Any) -> dict[str, str]:
        return tail_nodes(model, tuple(o.name for o in model.graph.output))

    def int8_float_fx_nodes(self, graph_module: Any, output_names: tuple[str, ...]) -> dict[str, str]:
        return fx_tail_nodes(graph_module, output_names)

    def export_model(self, model: Any, recipe: Any, cfg: Any) -> Any:
        """The raw-heads model, or with ``cfg.postprocess == "graph"`` the model plus its postprocess with
        ``max_dets`` detection slots (the recipe's ``instance`` thresholds)."""
        if getattr(cfg, "postprocess", "runtime") != "graph":
            return model
        return model.with_postprocess(**self.options(getattr(recipe, "instance", None)))

    @staticmethod
    def options(section: Any) -> dict[str, Any]:
        """Postprocess keyword arguments from a recipe's ``instance`` section (object or dict; None: defaults)."""
        if section is None:
            return {}
        get = section.get if isinstance(section, dict) else lambda k: getattr(section, k, None)
        return {k: get(k) for k in POSTPROCESS_KEYS if get(k) is not None}

    def decode_options(self, meta: Any) -> dict[str, Any]:
        return self.options((meta.recipe or {}).get("instance"))

    def decode(self, outputs: dict[str, np.ndarray], *, input_hw: tuple[int, int], image_hw: tuple[int, int],
               placement: Placement, **postprocess: Any) -> list[Any]:
        for key, decoder in DECODERS:  # a postprocess inside the graph
            if key in outputs:
                return decoder(outputs, input_hw=input_hw, image_hw=image_hw, placement=placement, **postprocess)
        heads = {k: np.asarray(output(outputs, k)) for k in HEADS}
        from edgeseg.tasks.instance_postprocess import postprocess as numpy_postprocess

        return numpy_postprocess(heads, input_hw=tuple(input_hw), image_hw=tuple(image_hw), placement=placement,
                                 **postprocess)

    def metrics_table(self, metrics: dict[str, Any]) -> tuple[list[str], list[list[Any]], str]:
        header, rows, _ = super().metrics_table(metrics)
        return header, rows, (f"over {metrics.get('num_images', '?')} images, "
                              f"{metrics.get('num_instances', '?')} instances")

    def folder_samples(self, root: Any, split: str, meta: Any, *, mask_encoding: str = "auto",
                       val_ratio: float = 0.2, split_seed: int = 0) -> tuple[Any, int, list[Any]]:
        """Instance-id masks (0 = background, one value per instance, one class), e.g. ``dsb2018-nuclei``."""
        from edgeseg.data.folder import list_pairs
        from edgeseg.data.instance_folder import instance_folder
        from edgeseg.data.preprocess import normalize

        pairs = list_pairs(Path(root), split, val_ratio=val_ratio, test_ratio=0.0, split_seed=split_seed)
        loaded = instance_folder(Path(root), split, meta.in_channels, val_ratio=val_ratio, test_ratio=0.0,
                                 split_seed=split_seed)
        samples = ((normalize(s.image, meta.mean, meta.std), {"masks": s.mask_stack(), "labels": s.labels})
                   for s in loaded)
        return samples, len(loaded), pairs

    def build_dataset(self, data_cfg: Any, split: str, *, in_channels: int, train: bool,
                      num_classes: int | None) -> Any:
        from edgeseg.data.instances import build_instance_dataset

        return build_instance_dataset(data_cfg, split, in_channels=in_channels, train=train, num_classes=num_classes)

    def collate(self) -> Any:
        from edgeseg.data.instances import collate_instances

        return collate_instances

    def loss(self, recipe: Any) -> tuple[str, dict[str, Any]]:
        """YOLACT's loss unless the model names its own (``loss_name``, read by ``criterion_for``)."""
        section = getattr(recipe, "instance", None)
        return "yolact", {"num_classes": recipe.model.num_classes, **(getattr(section, "loss", None) or {})}

    def targets_to(self, targets: Any, device: Any) -> Any:
        return [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]

    def metric(self, *, num_classes: int, ignore_index: int, class_names: list[str] | None,
               options: dict[str, Any] | None = None) -> _InstanceMetric:
        return _InstanceMetric(class_names, num_classes, int((options or {}).get("max_dets", 100)))

    def parity(self, reference: list[dict[str, np.ndarray]], outputs: list[dict[str, np.ndarray]],
               inputs: list[np.ndarray]) -> dict[str, Any]:
        """Largest head error (relative to each head's range) and the share of reference detections kept."""
        errors: dict[str, float] = {}
        max_abs, max_rel, matched, total = 0.0, 0.0, 0, 0
        for ref, out, x in zip(reference, outputs, inputs):
            # an in-graph postprocess pads with empty slots (score 0) whose contents mean nothing
            slots = np.asarray(ref[GRAPH_OUTPUTS[1]]) > 0 if GRAPH_OUTPUTS[1] in ref else None
            for name in ref:
                r, o = np.asarray(output(ref, name)), np.asarray(output(out, name))
                if r.shape != o.shape:
                    raise ValueError(f"output {name!r} has shape {o.shape}, PyTorch's is {r.shape}")
                if slots is not None:
                    r, o = r[slots], o[slots]
                if r.dtype.kind in "fc":
                    err = float(np.abs(o.astype(np.float32) - r).max()) if r.size else 0.0
                    rel = err / max(float(np.abs(r).max()) if r.size else 0.0, 1e-12)
                else:  # labels, boolean masks: the share of elements that differ
                    err = rel = float((o != r).mean()) if r.size else 0.0
                errors[name] = max(errors.get(name, 0.0), rel)
                max_abs, max_rel = max(max_abs, err), max(max_rel, rel)
            hw = tuple(x.shape[-2:])
            # Every scored detection, not only those over the recipe's threshold: a weak model (few or no
            # detections over it) must not pass as "100% agreement over 0 detections".
            ref_dets = self.decode(ref, input_hw=hw, image_hw=hw, placement="pad", score_thresh=0.0)
            out_dets = self.decode(out, input_hw=hw, image_hw=hw, placement="pad", score_thresh=0.0)
            for rd, od in zip(ref_dets, out_dets):
                matched += matched_detections(rd, od)
                total += max(len(rd.scores), len(od.scores))
        return {"images": len(reference), "max_abs_err": max_abs, "max_rel_err": max_rel,
                "rel_err_by_output": errors, "detections": total, "matched_detections": matched,
                "agreement": matched / total if total else 1.0}

    def render(self, raw: np.ndarray, prediction: Any, meta: Any) -> dict[str, bytes]:
        """``overlay.png`` (masks, boxes, 'class score' labels), ``instances.png`` (16-bit ids), ``detections.json``."""
        from PIL import Image, ImageDraw

        from edgeseg.tasks.render import PALETTE, png_bytes

        rgb = np.repeat(raw, 3, axis=2) if raw.shape[2] == 1 else raw[..., :3]
        canvas = rgb.astype(np.float32)
        ids = np.zeros(rgb.shape[:2], np.uint16)
        order = np.argsort(np.asarray(prediction.scores))  # best last: drawn on top
        for rank, i in enumerate(order):
            mask = np.asarray(prediction.masks[i], bool)
            colour = PALETTE[i % len(PALETTE)].astype(np.float32)
            canvas[mask] = 0.55 * canvas[mask] + 0.45 * colour
            ids[mask] = i + 1
        image = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        names = list(meta.classes)
        dets = []
        for i in order:
            x1, y1, x2, y2 = (float(v) for v in prediction.boxes[i])
            label, score = int(prediction.labels[i]), float(prediction.scores[i])
            name = names[label] if 0 <= label < len(names) else str(label)
            colour = tuple(int(c) for c in PALETTE[i % len(PALETTE)])
            draw.rectangle([x1, y1, x2, y2], outline=colour)
            draw.text((x1 + 2, max(0.0, y1 - 11)), f"{name} {score:.2f}", fill=colour)
            dets.append({"id": int(i) + 1, "class": name, "label": label, "score": round(score, 4),
                         "box_xyxy": [round(v, 1) for v in (x1, y1, x2, y2)],
                         "area": int(np.asarray(prediction.masks[i], bool).sum())})
        buf = io.BytesIO()
        Image.fromarray(ids).save(buf, format="PNG")
        return {"overlay.png": png_bytes(np.asarray(image)), "instances.png": buf.getvalue(),
                "detections.json": (json.dumps(sorted(dets, key=lambda d: -d["score"]), indent=1) + "\n").encode()}
