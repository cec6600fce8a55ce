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
            if not all(_number(v) for v in poly):
                raise DataError(f"{where}: polygon {poly[:6]}... has a value that is not a number; expected "
                                "[x1, y1, x2, y2, ...] numbers")
        rle = mask.merge(mask.frPyObjects(seg, h, w))
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [h, w]:
            raise DataError(f"{where}: RLE size {seg['size']} differs from the image's [height, width] [{h}, {w}]")
        try:
            rle = mask.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
            return np.asarray(mask.decode(rle), dtype=bool)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise DataError(f"{where}: RLE 'counts' do not decode to a {h}x{w} mask ({exc})") from None
    else:
        raise DataError(f"{where}: segmentation must be a list of polygons or an RLE dict with 'counts' and 'size'")
    return np.asarray(mask.decode(rle), dtype=bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _entries(doc: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    """``doc[key]``, each entry checked to be a JSON object."""
    for n, entry in enumerate(doc[key]):
        if not isinstance(entry, dict):
            raise DataError(f"{path}: {key}[{n}] is {type(entry).__name__}; expected an object")
    return doc[key]


def _categories(doc: dict[str, Any], path: Path) -> dict[Any, tuple[int, str]]:
    """category id -> (0-based label in the json's order, name)."""
    cats: dict[Any, tuple[int, str]] = {}
    for c in _entries(doc, "categories", path):
        if "id" not in c:
            raise DataError(f"{path}: category {c} has no 'id'")
        if c["id"] in cats:
            raise DataError(f"{path}: category id {c['id']!r} is declared twice; expected unique ids")
        cats[c["id"]] = (len(cats), str(c.get("name", c["id"])))
    if not cats:
        raise DataError(f"{path}: field 'categories' is empty; expected at least one object class")
    return cats


def _images(doc: dict[str, Any], path: Path) -> dict[Any, dict[str, Any]]:
    """image id -> image entry, with ``file_name`` and positive integer ``height``/``width`` checked."""
    images: dict[Any, dict[str, Any]] = {}
    for im in _entries(doc, "images", path):
        missing = [k for k in ("id", "file_name", "height", "width") if k not in im]
        if missing:
            raise DataError(f"{path}: image {im.get('id', im)} lacks {', '.join(missing)}")
        for k in ("height", "width"):
            if not isinstance(im[k], int) or isinstance(im[k], bool) or im[k] < 1:
                raise DataError(f"{path}: image id {im['id']}: field '{k}' is {im[k]!r}; expected a positive integer")
        if im["id"] in images:
            raise DataError(f"{path}: image id {im['id']!r} appears twice in 'images'; expected unique ids")
        images[im["id"]] = im
    return images


def _check_bbox(ann: dict[str, Any], im: dict[str, Any], where: str) -> None:
    box = ann["bbox"]
    if not isinstance(box, list) or len(box) != 4 or not all(_number(v) for v in box):
        raise DataError(f"{where}: field 'bbox' is {box!r}; expected [x, y, width, height] numbers")
    x, y, bw, bh = (float(v) for v in box)
    if (x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or bw < 0 or bh < 0 or x + bw > im["width"] + BOX_TOLERANCE
            or y + bh > im["height"] + BOX_TOLERANCE):
        raise DataError(f"{where}: bbox {box} lies outside its image {im['file_name']} ({im['width']}x{im['height']})")


def _annotations_by_image(doc: dict[str, Any], path: Path, cats: dict[Any, tuple[int, str]],
                          images: dict[Any, dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    """image id -> its annotations, each checked against the declared images and categories."""
    anns = _entries(doc, "annotations", path)
    if not anns:
        raise DataError(f"{path}: field 'annotations' is empty; expected the instance annotations of its images "
                        "(an image without objects is fine, a json without any is the wrong file)")
    per_image: dict[Any, list[dict[str, Any]]] = {i: [] for i in images}
    for ann in anns:
        where = f"{path}: annotation id {ann.get('id', '?')}"
        if ann.get("image_id") not in images:
            raise DataError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        if ann.get("category_id") not in cats:
            raise DataError(f"{where}: unknown category_id {ann.get('category_id')!r} (categories: {sorted(cats)})")
        if "bbox" in ann:
            _check_bbox(ann, images[ann["image_id"]], where)
        if "segmentation" not in ann:
            raise DataError(f"{where}: no 'segmentation' (instance masks need polygons or RLE)")
        per_image[ann["image_id"]].append(ann)
    return per_image


def _sample(path: Path, root: Path, im: dict[str, Any], anns: list[dict[str, Any]],
            cats: dict[Any, tuple[int, str]], in_channels: int) -> InstanceSample:
    """One image with its non-crowd instances (an image without any is a valid, empty sample)."""
    file = Path(root) / im["file_name"]
    if not file.is_file():
        raise DataError(f"{path}: image id {im['id']}: file {file} not found (data.root + file_name)")
    image = load_image(file, in_channels)
    h, w = image.shape[:2]
    if (h, w) != (im["height"], im["width"]):
        raise DataError(f"{path}: image id {im['id']}: {file} is {w}x{h} but the json says "
                        f"{im['width']}x{im['height']} (fields 'width', 'height')")
    masks, labels = [], []
    for ann in anns:
        if ann.get("iscrowd", 0):
            continue
        m = decode_segmentation(ann["segmentation"], h, w, f"{path}: annotation id {ann.get('id', '?')}")
        if m.any():
            masks.append(m)
            labels.append(cats[ann["category_id"]][0])
    stack = np.stack(masks) if masks else np.zeros((0, h, w), bool)
    return InstanceSample(image, np.asarray(labels, np.int64), masks=stack, name=str(im["id"]))


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
    cats = _categories(doc, annotations)
    images = _images(doc, annotations)
    per_image = _annotations_by_image(doc, annotations, cats, images)
    ids = sorted(images, key=lambda i: str(images[i]["file_name"]))
    if not whole:
        by_name = {str(images[i]["file_name"]): i for i in ids}
        ids = [by_name[n] for n in _ratio_split(sorted(by_name), split, val_ratio, test_ratio, split_seed)]
    samples = [_sample(annotations, root, images[i], per_image[i], cats, in_channels) for i in ids]
    if not samples:
        raise DataError(f"{annotations}: the {split} split is empty")
    return samples, [name for _, name in sorted(cats.values())]
