"""COCO instance metrics: agreement with pycocotools, edge cases, torch-free."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from edgeseg.metrics.instance import InstanceEvaluator


def _fixture(seed: int = 0) -> list[tuple[str, SimpleNamespace, dict[str, np.ndarray]]]:
    """Five images, two classes: ground-truth blobs, detections that are shifted, missed, extra or mislabelled."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(5):
        h, w = 40 + 8 * i, 56
        gts, labels = [], []
        for _ in range(rng.integers(2, 6)):
            m = np.zeros((h, w), bool)
            y, x = rng.integers(0, h - 12), rng.integers(0, w - 12)
            m[y:y + rng.integers(6, 12), x:x + rng.integers(6, 12)] = True
            gts.append(m)
            labels.append(int(rng.integers(0, 2)))
        dets, dl, ds = [], [], []
        for m, lab in zip(gts, labels):
            if rng.random() < 0.2:
                continue  # missed
            dets.append(np.roll(m, (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), (0, 1)))
            dl.append(lab if rng.random() > 0.15 else 1 - lab)
            ds.append(float(rng.uniform(0.2, 1.0)))
        for _ in range(rng.integers(0, 3)):  # false positives
            m = np.zeros((h, w), bool)
            y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
            m[y:y + 5, x:x + 5] = True
            dets.append(m)
            dl.append(int(rng.integers(0, 2)))
            ds.append(float(rng.uniform(0.0, 0.6)))
        gm = np.stack(gts)
        dm = np.stack(dets) if dets else np.zeros((0, h, w), bool)
        det = SimpleNamespace(masks=dm, labels=np.array(dl, np.int64), scores=np.array(ds, np.float32),
                              boxes=_boxes(dm))
        out.append((f"img{i}", det, {"masks": gm, "labels": np.array(labels)}))
    return out


def _boxes(masks: np.ndarray) -> np.ndarray:
    b = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        b[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    return b


def _pycocotools(fixture: list) -> dict[str, float]:
    from pycocotools import mask as mask_api
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for n, (_, det, tgt) in enumerate(fixture, 1):
        h, w = tgt["masks"].shape[1:]
        images.append({"id": n, "height": h, "width": w})
        for m, lab, b in zip(tgt["masks"], tgt["labels"], _boxes(tgt["masks"])):
            rle = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
            anns.append({"id": len(anns) + 1, "image_id": n, "category_id": int(lab) + 1, "segmentation": rle,
                         "area": float(m.sum()), "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]),
                                                          float(b[3] - b[1])], "iscrowd": 0})
        for m, lab, s, b in zip(det.masks, det.labels, det.scores, det.boxes):
            dets.append({"image_id": n, "category_id": int(lab) + 1, "score": float(s),
                         "segmentation": mask_api.encode(np.asfortranarray(m.astype(np.uint8))),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1}, {"id": 2}]}
    gt.createIndex()
    out = {}
    for prefix, iou_type in (("mask", "segm"), ("box", "bbox")):
        ev = COCOeval(gt, gt.loadRes(dets), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        out.update({f"{prefix}_ap": ev.stats[0], f"{prefix}_ap50": ev.stats[1], f"{prefix}_ap75": ev.stats[2]})
    return out


def test_agrees_with_pycocotools() -> None:
    pytest.importorskip("pycocotools")
    fixture = _fixture()
    ev = InstanceEvaluator(["a", "b"])
    for name, det, tgt in fixture:
        ev.update(name, det, tgt)
    got = ev.compute()
    ref = _pycocotools(fixture)
    assert got["num_images"] == 5 and got["num_instances"] == sum(len(t["labels"]) for _, _, t in fixture)
    for key, value in ref.items():
        assert abs(got[key] - value) < 1e-4, (key, got[key], value)
    assert 0.2 < got["mask_ap50"] < 0.95  # the fixture is neither trivial nor hopeless


def test_perfect_and_empty() -> None:
    fixture = _fixture(1)
    perfect, empty = InstanceEvaluator(["a", "b"]), InstanceEvaluator(["a", "b"])
    for name, _, tgt in fixture:
        det = SimpleNamespace(masks=tgt["masks"], labels=tgt["labels"], boxes=_boxes(tgt["masks"]),
                              scores=np.linspace(1, 0.5, len(tgt["labels"])))
        perfect.update(name, det, tgt)
        none = SimpleNamespace(masks=np.zeros((0, *tgt["masks"].shape[1:]), bool), labels=np.zeros(0),
                               boxes=np.zeros((0, 4)), scores=np.zeros(0))
        empty.update(name, none, tgt)
    p, e = perfect.compute(), empty.compute()
    assert p["mask_ap"] == pytest.approx(1.0) and p["box_ap50"] == pytest.approx(1.0)
    assert e["mask_ap"] == 0.0 and e["box_ap75"] == 0.0
    with pytest.raises(ValueError, match="already added"):
        perfect.update(fixture[0][0], fixture[0][1], fixture[0][2])


def test_metrics_module_is_torch_free() -> None:
    code = "import sys, edgeseg.metrics.instance; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
