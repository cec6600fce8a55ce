"""Instance postprocess in numpy only (no torch import): the torch-free runner and devices use this.

Semantics (identical to :func:`edgeseg.models.yolact.postprocess`, tested to agree):

1. class-wise sigmoid of ``scores`` (N x A x C logits, no background column);
2. per class, the ``top_k`` highest scores above ``score_thresh``;
3. Fast NMS per class (YOLACT's matrix form): IoU matrix of the score-sorted candidates, upper triangle,
   keep a candidate when its column maximum is below ``iou_thresh`` (no sequential loop);
4. the ``max_dets`` highest-scoring survivors over all classes;
5. mask logits ``coefs x protos`` (the ``sigmoid(protos x coefs^T)`` masks before the sigmoid),
   bilinearly upsampled (PyTorch's ``align_corners=False`` sampling) to the image, thresholded at
   ``logit(mask_thresh)`` (the same as ``sigmoid > mask_thresh``) and cropped to the box (pixel centres
   inside it).

Only the pixels inside each box are interpolated, which keeps 100 detections within a few ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgeseg.catalog import INSTANCE_DEFAULTS as _T

OUTPUT_NAMES = ("scores", "boxes", "coefs", "protos")  # the raw heads of a prototype-mask (YOLACT) model
GRAPH_OUTPUTS = ("det_boxes", "det_scores", "det_labels", "det_masks")  # postprocess inside the graph
# a two-stage (Mask R-CNN) graph: fixed detection slots, each mask at RoI resolution inside its box
ROI_OUTPUTS = ("det_boxes", "det_scores", "det_labels", "det_roi_masks")


@dataclass
class Detections:
    """Detections of one image.

    Attributes:
        boxes: D x 4 float32 x1, y1, x2, y2 in original image pixels.
        scores: D float32, descending.
        labels: D int64 0-based class indices.
        masks: D x H x W bool at the original image size.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def logit(p: float) -> float:
    """Inverse sigmoid; ``sigmoid(x) > p`` iff ``x > logit(p)``."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"mask_thresh must be in (0, 1), got {p}")
    return math.log(p / (1.0 - p))


def target_size(input_hw: tuple[int, int], image_hw: tuple[int, int],
                placement: Literal["resize", "pad"]) -> tuple[tuple[int, int], tuple[float, float]]:
    """(size the prototypes are upsampled to, (y, x) scale from input to image pixels).

    ``resize``: the image was resized to ``input_hw``; prototypes go straight to ``image_hw``.
    ``pad``: the image sits unscaled at the top-left of ``input_hw``; prototypes go to ``input_hw``
    and the result is cut to ``image_hw``.
    """
    if placement == "resize":
        return (int(image_hw[0]), int(image_hw[1])), (image_hw[0] / input_hw[0], image_hw[1] / input_hw[1])
    if placement == "pad":
        if image_hw[0] > input_hw[0] or image_hw[1] > input_hw[1]:
            raise ValueError(f"placement='pad' needs image_hw {image_hw} within input_hw {input_hw}")
        return (int(input_hw[0]), int(input_hw[1])), (1.0, 1.0)
    raise ValueError(f"placement must be 'resize' or 'pad', got {placement!r}")


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``... x n x 4`` and ``... x m x 4`` xyxy boxes -> ``... x n x m``."""
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    lt = np.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = np.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    return inter / np.maximum(area_a[..., :, None] + area_b[..., None, :] - inter, 1e-9)


def fast_nms(boxes: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Keep mask of YOLACT's Fast NMS over ``k x 4`` boxes sorted by descending score.

    Box j is kept when ``max_{i<j} IoU(i, j) < iou_thresh``; a suppressed box still suppresses others.
    """
    if len(boxes) == 0:
        return np.zeros(0, bool)
    iou = np.triu(box_iou(boxes, boxes), k=1)
    return iou.max(axis=0) < iou_thresh


def select(scores: np.ndarray, boxes: np.ndarray, *, score_thresh: float, iou_thresh: float, top_k: int,
           max_dets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-4 for one image: scores A x C logits, boxes A x 4 -> (scores D, labels D, point indices D).

    All classes are handled in one matrix: candidates sorted by (class, descending score), the per-class
    ``top_k`` kept, then one IoU matrix whose entries across classes are masked out; the result equals
    running Fast NMS class by class.
    """
    probs = sigmoid(scores.astype(np.float32, copy=False))
    point, cls = np.nonzero(probs > score_thresh)
    if len(point) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    s = probs[point, cls]
    order = np.lexsort((-s, cls))  # by class, then descending score
    point, cls, s = point[order], cls[order], s[order]
    first = np.searchsorted(cls, cls, side="left")
    rank = np.arange(len(cls)) - first
    within = rank < top_k
    point, cls, s = point[within], cls[within], s[within]
    b = boxes[point].astype(np.float32, copy=False)
    keep = np.ones(len(point), bool)
    bounds = np.flatnonzero(np.diff(cls)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(cls)]):
        if hi - lo > 1:
            keep[lo:hi] = fast_nms(b[lo:hi], iou_thresh)
    point, cls, s = point[keep], cls[keep], s[keep]
    order = np.argsort(-s, kind="stable")[:max_dets]
    return s[order], cls[order].astype(np.int64), point[order].astype(np.int64)


def _bilinear_matrix(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(out x in matrix of PyTorch's ``align_corners=False`` bilinear weights, first tap, last tap) per row."""
    scale = np.float32(in_size / out_size)
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = (src - i0).astype(np.float32)
    m = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(m, (rows, i0), np.float32(1) - w1)
    np.add.at(m, (rows, i1), w1)
    return m, i0, i1


def paste_masks(logits: np.ndarray, boxes: np.ndarray, target_hw: tuple[int, int], image_hw: tuple[int, int],
                thresh: float) -> np.ndarray:
    """D x Hp x Wp mask logits -> D x H x W bool: bilinear to ``target_hw``, cut to ``image_hw``, cropped to boxes.

    Only the pixels inside each box (centre inside, image pixels) are interpolated, as
    ``Ry[box rows] @ logits[needed rows, needed cols] @ Rx[box cols]^T`` with the bilinear matrices.
    """
    d, hp, wp = logits.shape
    masks = np.zeros((d, *image_hw), bool)
    if d == 0:
        return masks
    ry, rfirst, rlast = _bilinear_matrix(target_hw[0], hp)
    rx, cfirst, clast = _bilinear_matrix(target_hw[1], wp)
    h, w = min(image_hw[0], target_hw[0]), min(image_hw[1], target_hw[1])
    # Pixel i is inside [lo, hi] when its centre i + .5 is: rows ceil(lo - .5) .. floor(hi - .5).
    ya = np.clip(np.ceil(boxes[:, 1] - 0.5), 0, h).astype(np.int64)
    yb = np.clip(np.floor(boxes[:, 3] - 0.5) + 1, 0, h).astype(np.int64)
    xa = np.clip(np.ceil(boxes[:, 0] - 0.5), 0, w).astype(np.int64)
    xb = np.clip(np.floor(boxes[:, 2] - 0.5) + 1, 0, w).astype(np.int64)
    for j, (y0, y1, x0, x1) in enumerate(zip(ya.tolist(), yb.tolist(), xa.tolist(), xb.tolist())):
        if y0 >= y1 or x0 >= x1:
            continue
        r0, r1 = int(rfirst[y0]), int(rlast[y1 - 1]) + 1  # taps are monotonic in the output index
        c0, c1 = int(cfirst[x0]), int(clast[x1 - 1]) + 1
        vals = ry[y0:y1, r0:r1] @ logits[j, r0:r1, c0:c1] @ rx[x0:x1, c0:c1].T
        masks[j, y0:y1, x0:x1] = vals > thresh
    return masks


def postprocess(outputs: dict[str, np.ndarray], *, input_hw: tuple[int, int], image_hw: tuple[int, int],
                score_thresh: float = _T.score_thresh, iou_thresh: float = _T.iou_thresh, top_k: int = _T.top_k,
                max_dets: int = _T.max_dets, mask_thresh: float = _T.mask_thresh, placement: Literal["resize", "pad"] = "resize") -> list[Detections]:
    """Detections per image from the raw network outputs (see the module docstring for the steps).

    Args:
        outputs: ``scores`` N x A x C, ``boxes`` N x A x 4 (input pixels), ``coefs`` N x A x k,
            ``protos`` N x k x Hp x Wp.
        input_hw: Size the network saw.
        image_hw: Original image size; detections are returned at it.
        placement: ``resize``: image resized to ``input_hw`` (per-axis scale); ``pad``: image at the
            top-left of ``input_hw``, unscaled.
    """
    missing = [n for n in OUTPUT_NAMES if n not in outputs]
    if missing:
        raise KeyError(f"instance outputs need {', '.join(OUTPUT_NAMES)}; missing {', '.join(missing)}")
    scores, boxes, coefs, protos = (np.asarray(outputs[n]) for n in OUTPUT_NAMES)
    (th, tw), (sy, sx) = target_size(input_hw, image_hw, placement)
    scale = np.array([sx, sy, sx, sy], np.float32)
    thresh = logit(mask_thresh)
    results = []
    for i in range(scores.shape[0]):
        s, lab, ind = select(scores[i], boxes[i], score_thresh=score_thresh, iou_thresh=iou_thresh, top_k=top_k,
                             max_dets=max_dets)
        b = boxes[i][ind].astype(np.float32) * scale
        b[:, 0::2] = np.clip(b[:, 0::2], 0, image_hw[1])
        b[:, 1::2] = np.clip(b[:, 1::2], 0, image_hw[0])
        k, hp, wp = protos[i].shape
        logits = (coefs[i][ind].astype(np.float32) @ protos[i].reshape(k, hp * wp).astype(np.float32))
        masks = paste_masks(logits.reshape(-1, hp, wp), b, (th, tw), tuple(image_hw), thresh)
        results.append(Detections(boxes=b, scores=s, labels=lab, masks=masks))
    return results


def _roi_taps(lo: float, hi: float, m: int, start: int, stop: int) -> np.ndarray:
    """(stop - start) x m bilinear weights sampling an ``m``-cell RoI axis spanning [lo, hi] at the pixel
    centres ``start + .5 .. stop - .5`` (``align_corners=False`` cells, clamped at the edges)."""
    u = (np.arange(start, stop, dtype=np.float32) + np.float32(0.5) - lo) / max(hi - lo, 1e-6) * m - 0.5
    u = np.clip(u, 0, m - 1)
    i0 = np.floor(u).astype(np.int64)
    i1 = np.minimum(i0 + 1, m - 1)
    w1 = (u - i0).astype(np.float32)
    taps = np.zeros((stop - start, m), np.float32)
    rows = np.arange(stop - start)
    np.add.at(taps, (rows, i0), 1 - w1)
    np.add.at(taps, (rows, i1), w1)
    return taps


def paste_roi_masks(masks: np.ndarray, boxes: np.ndarray, image_hw: tuple[int, int], thresh: float) -> np.ndarray:
    """RoI masks D x m x m (probabilities) pasted into their boxes D x 4 (image pixels) -> D x H x W bool.

    Only pixels whose centre lies inside the box are set, as ``taps_y @ mask @ taps_x^T`` (bilinear).
    """
    d = len(masks)
    out = np.zeros((d, *image_hw), bool)
    h, w = image_hw
    for j in range(d):
        x1, y1, x2, y2 = (float(v) for v in boxes[j])
        ya, yb = int(np.clip(np.ceil(y1 - 0.5), 0, h)), int(np.clip(np.floor(y2 - 0.5) + 1, 0, h))
        xa, xb = int(np.clip(np.ceil(x1 - 0.5), 0, w)), int(np.clip(np.floor(x2 - 0.5) + 1, 0, w))
        if ya >= yb or xa >= xb:
            continue
        m = masks[j].astype(np.float32)
        vals = _roi_taps(y1, y2, m.shape[0], ya, yb) @ m @ _roi_taps(x1, x2, m.shape[1], xa, xb).T
        out[j, ya:yb, xa:xb] = vals > thresh
    return out


def decode_roi_outputs(outputs: dict[str, np.ndarray], *, input_hw: tuple[int, int], image_hw: tuple[int, int],
                       placement: Literal["resize", "pad"], score_thresh: float = _T.score_thresh,
                       mask_thresh: float = _T.mask_thresh, max_dets: int = _T.max_dets, **_: object) -> list[Detections]:
    """Detections from a two-stage graph (:data:`ROI_OUTPUTS`, fixed slots, score 0 when empty) at ``image_hw``."""
    boxes, scores, labels, masks = (np.asarray(outputs[k]) for k in ROI_OUTPUTS)
    _, (sy, sx) = target_size(input_hw, image_hw, placement)
    scale = np.array([sx, sy, sx, sy], np.float32)
    h, w = image_hw
    result = []
    for b in range(scores.shape[0]):
        keep = np.flatnonzero(scores[b] > score_thresh)[:max_dets]
        keep = keep[np.argsort(-scores[b][keep], kind="stable")]
        bx = boxes[b][keep].astype(np.float32) * scale
        bx[:, 0::2] = bx[:, 0::2].clip(0, w)
        bx[:, 1::2] = bx[:, 1::2].clip(0, h)
        result.append(Detections(boxes=bx, scores=scores[b][keep].astype(np.float32),
                                 labels=labels[b][keep].round().astype(np.int64),
                                 masks=paste_roi_masks(masks[b][keep], bx, (h, w), mask_thresh)))
    return result
