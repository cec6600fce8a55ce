"""COCO instance-segmentation metrics (mask and box AP) with faster-coco-eval; numpy only, no torch.

Definitions are COCO's: AP averaged over IoU 0.50:0.05:0.95 (``mask_ap``, ``box_ap``), at IoU 0.50
(``*_ap50``) and 0.75 (``*_ap75``), all areas, at most ``max_dets`` detections per image (COCO: 100;
raise it for images with more objects, e.g. nuclei). Ground truth and detections are accumulated image
by image (masks RLE-encoded at once, so memory stays small), evaluated at :meth:`compute`. A figure
COCO leaves undefined (no ground truth at all) is NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

KEYS = ("mask_ap", "mask_ap50", "mask_ap75", "box_ap", "box_ap50", "box_ap75")


def _rle(masks: np.ndarray) -> list[dict[str, Any]]:
    from faster_coco_eval.core import mask as mask_api

    if len(masks) == 0:
        return []
    rles = mask_api.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for r in rles:
        if isinstance(r["counts"], bytes):
            r["counts"] = r["counts"].decode("ascii")
    return rles


def _xywh(boxes: np.ndarray) -> list[list[float]]:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1).tolist()


def _boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    out = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(ys):
            out[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    return out


class InstanceEvaluator:
    """Accumulates detections and ground truth per image; :meth:`compute` gives COCO mask and box AP.

    Args:
        class_names: Object class names (label i -> COCO category id i + 1).
        max_dets: COCO ``maxDets`` of the headline figures.
    """

    def __init__(self, class_names: list[str], max_dets: int = 100) -> None:
        self.class_names = list(class_names)
        self.max_dets = max_dets
        self.images: list[dict[str, Any]] = []
        self.gts: list[dict[str, Any]] = []
        self.dts: list[dict[str, Any]] = []
        self._ids: dict[Any, int] = {}

    def update(self, image_id: Any, detections: Any, target: dict[str, np.ndarray]) -> None:
        """Add one image.

        Args:
            image_id: Any hashable name, unique per image.
            detections: Object with ``boxes`` (D x 4 xyxy), ``scores``, ``labels``, ``masks`` (D x H x W bool).
            target: ``masks`` (M x H x W), ``labels`` (M, 0-based), optional ``boxes`` (M x 4 xyxy).
        """
        if image_id in self._ids:
            raise ValueError(f"image {image_id!r} was already added")
        gt_masks = np.asarray(target["masks"]).astype(bool)
        h, w = gt_masks.shape[-2:] if gt_masks.ndim == 3 else np.asarray(detections.masks).shape[-2:]
        num = len(self.images) + 1
        self._ids[image_id] = num
        self.images.append({"id": num, "height": int(h), "width": int(w), "file_name": str(image_id)})
        labels = np.asarray(target["labels"]).astype(np.int64).reshape(-1)
        boxes = np.asarray(target["boxes"]) if target.get("boxes") is not None else _boxes_from_masks(gt_masks)
        # An image without instances adds none (numpy cannot reshape its empty stack to (0, -1)).
        areas = gt_masks.sum(axis=(1, 2)) if gt_masks.ndim == 3 else np.zeros(0)
        for rle, box, lab, area in zip(_rle(gt_masks), _xywh(boxes), labels, areas):
            self.gts.append({"id": len(self.gts) + 1, "image_id": num, "category_id": int(lab) + 1,
                             "segmentation": rle, "bbox": box, "area": float(area), "iscrowd": 0})
        det_masks = np.asarray(detections.masks).astype(bool)
        if det_masks.shape[1:] != (h, w) and len(det_masks):
            raise ValueError(f"image {image_id!r}: detection masks are {det_masks.shape[1:]} but the target is {(h, w)}")
        for rle, box, lab, score in zip(_rle(det_masks), _xywh(detections.boxes), np.asarray(detections.labels),
                                        np.asarray(detections.scores)):
            self.dts.append({"image_id": num, "category_id": int(lab) + 1, "segmentation": rle, "bbox": box,
                             "score": float(score)})

    def _evaluate(self, iou_type: str) -> list[float]:
        from faster_coco_eval import COCO, COCOeval_faster

        if not self.dts:
            return [0.0, 0.0, 0.0] if self.gts else [float("nan")] * 3
        gt = COCO()
        gt.dataset = {"images": self.images, "annotations": self.gts,
                      "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]}
        gt.createIndex()
        dt = gt.loadRes([dict(d) for d in self.dts])
        ev = COCOeval_faster(gt, dt, iou_type, print_function=lambda *a, **k: None)
        ev.params.maxDets = [1, 10, self.max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return [float(v) if v >= 0 else float("nan") for v in ev.stats[:3]]

    def compute(self) -> dict[str, Any]:
        """``mask_ap``, ``mask_ap50``, ``mask_ap75``, ``box_ap``, ``box_ap50``, ``box_ap75``, counts."""
        if not self.images:
            raise ValueError("no images were added to the evaluator")
        out: dict[str, Any] = {}
        for prefix, iou_type in (("mask", "segm"), ("box", "bbox")):
            ap, ap50, ap75 = self._evaluate(iou_type)
            out.update({f"{prefix}_ap": ap, f"{prefix}_ap50": ap50, f"{prefix}_ap75": ap75})
        out.update({"num_images": len(self.images), "num_instances": len(self.gts), "max_dets": self.max_dets})
        return out
