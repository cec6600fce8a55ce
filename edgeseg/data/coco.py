"""COCO-format instance annotations (polygons, compressed and uncompressed RLE), numpy only.

Masks are decoded with faster-coco-eval's mask API (the pycocotools C code). Every annotation is
checked; a malformed one is a one-line :class:`DataError` naming the json file and the annotation id:
a polygon with fewer than 3 points, a box outside its image, an unknown category id, an image file that
does not exist. ``iscrowd`` annotations are left out of training and evaluation targets.
Labels are 0-based in the order of the json's ``categories`` list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.data.base import DataError, load_image
from edgeseg.data.folder import _ratio_split
from edgeseg.data.instance_folder import InstanceSample

BOX_TOLERANCE = 1.0  # pixels a box may exceed its image by (rounding in exporters)


def _mask_api() -> Any:
    try:
        from faster_coco_eval.core import mask
    except ImportError:  # pragma: no cover - the coco extra is missing
        raise DataError("COCO datasets need faster-coco-eval: pip install 'edgeseg[coco]'") from None
    return mask


def read_coco(path: Path) -> dict[str, Any]:
    """The json document, with its top-level structure checked."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"recipe field data.annotations: {path} not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise DataError(f"{path}: expected a COCO document with a '{key}' list")
    return doc


def decode_segmentation(seg: Any, h: int, w: int, where: str) -> np.ndarray:
    """One annotation's ``segmentation`` (polygons or RLE) as an H x W bool mask."""
    mask = _mask_api()
    if isinstance(seg, list):
        if not seg or not all(isinstance(p, list) for p in seg):
            raise DataError(f"{where}: segmentation must be a list of polygons [x1, y1, x2, y2, ...] or an RLE dict")
        for poly in seg:
            if len(poly) < 6 or len(poly) % 2:
                raise DataError(f"{where}: polygon with {len(poly) // 2} points ({len(poly)} values); "
                                "a polygon needs at least 3 (x, y) points")
        rle = mask.merge(mask.frPyObjects(seg, h, w))
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [h, w]:
            raise DataError(f"{where}: RLE size {seg['size']} differs from the image's [height, width] [{h}, {w}]")
        rle = mask.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
    else:
        raise DataError(f"{where}: segmentation must be a list of polygons or an RLE dict with 'counts' and 'size'")
    return np.asarray(mask.decode(rle), dtype=bool)


def coco_samples(annotations: Path, root: Path, split: str, in_channels: int, *, val_ratio: float,
                 test_ratio: float, split_seed: int, whole: bool) -> tuple[list[InstanceSample], list[str]]:
    """Samples of ``split`` and the category names.

    Args:
        annotations: COCO json.
        root: Folder the images' ``file_name`` are relative to.
        whole: The json is this split's own file (no ratio split).
    """
    annotations = Path(annotations)
    doc = read_coco(annotations)
    cats = {}
    for c in doc["categories"]:
        if "id" not in c:
            raise DataError(f"{annotations}: category {c} has no 'id'")
        cats[c["id"]] = (len(cats), str(c.get("name", c["id"])))
    images = {}
    for im in doc["images"]:
        missing = [k for k in ("id", "file_name", "height", "width") if k not in im]
        if missing:
            raise DataError(f"{annotations}: image {im.get('id', im)} lacks {', '.join(missing)}")
        images[im["id"]] = im
    per_image: dict[Any, list[dict[str, Any]]] = {i: [] for i in images}
    for ann in doc["annotations"]:
        where = f"{annotations}: annotation id {ann.get('id', '?')}"
        if ann.get("image_id") not in images:
            raise DataError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        if ann.get("category_id") not in cats:
            raise DataError(f"{where}: unknown category_id {ann.get('category_id')!r} (categories: "
                            f"{sorted(cats)})")
        im = images[ann["image_id"]]
        if "bbox" in ann:
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            if (x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or bw < 0 or bh < 0 or x + bw > im["width"] + BOX_TOLERANCE
                    or y + bh > im["height"] + BOX_TOLERANCE):
                raise DataError(f"{where}: bbox {ann['bbox']} lies outside its image {im['file_name']} "
                                f"({im['width']}x{im['height']})")
        if "segmentation" not in ann:
            raise DataError(f"{where}: no 'segmentation' (instance masks need polygons or RLE)")
        per_image[ann["image_id"]].append(ann)
    ids = sorted(images, key=lambda i: str(images[i]["file_name"]))
    if not whole:
        by_name = {str(images[i]["file_name"]): i for i in ids}
        ids = [by_name[n] for n in _ratio_split(sorted(by_name), split, val_ratio, test_ratio, split_seed)]
    samples = []
    for image_id in ids:
        im = images[image_id]
        path = Path(root) / im["file_name"]
        if not path.is_file():
            raise DataError(f"{annotations}: image id {image_id}: file {path} not found (data.root + file_name)")
        image = load_image(path, in_channels)
        h, w = image.shape[:2]
        if (h, w) != (im["height"], im["width"]):
            raise DataError(f"{annotations}: image id {image_id}: {path} is {w}x{h} but the json says "
                            f"{im['width']}x{im['height']}")
        masks, labels = [], []
        for ann in per_image[image_id]:
            if ann.get("iscrowd", 0):
                continue
            m = decode_segmentation(ann["segmentation"], h, w, f"{annotations}: annotation id {ann.get('id', '?')}")
            if m.any():
                masks.append(m)
                labels.append(cats[ann["category_id"]][0])
        stack = np.stack(masks) if masks else np.zeros((0, h, w), bool)
        samples.append(InstanceSample(image, np.asarray(labels, np.int64), masks=stack, name=str(image_id)))
    if not samples:
        raise DataError(f"{annotations}: the {split} split is empty")
    return samples, [name for _, name in sorted(cats.values())]
