"""Instance datasets: synthetic, COCO json, instance-id folders, Penn-Fudan; augmentation; collate; errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeseg.data.base import DataError
from edgeseg.data.instance_folder import InstanceSample
from edgeseg.data.instances import (InstanceDataset, InstanceTransform, boxes_from_masks, build_instance_dataset,
                                    collate_instances)
from edgeseg.recipe import recipe_from_dict


def _data(**kw: object):  # noqa: ANN202
    return recipe_from_dict({"data": kw}).data


def _check_target(image: torch.Tensor, t: dict[str, torch.Tensor]) -> None:
    m = len(t["labels"])
    assert t["masks"].shape == (m, *image.shape[-2:]) and t["masks"].dtype == torch.uint8
    assert t["boxes"].shape == (m, 4) and t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
    assert torch.equal(t["boxes"], boxes_from_masks(t["masks"]))
    assert (t["masks"].flatten(1).sum(1) > 0).all()


def test_boxes_from_masks_are_pixel_edges() -> None:
    m = torch.zeros(2, 10, 12, dtype=torch.uint8)
    m[0, 2:5, 3:8] = 1
    assert boxes_from_masks(m).tolist() == [[3, 2, 8, 5], [0, 0, 0, 0]]


def test_synthetic_items_and_collate() -> None:
    cfg = _data(kind="synthetic", image_size=48, synthetic={"num_train": 6, "num_val": 3, "size": 64, "max_shapes": 4})
    train = build_instance_dataset(cfg, "train", in_channels=3, train=True, num_classes=3)
    val = build_instance_dataset(cfg, "val", in_channels=1, num_classes=3)
    assert train.class_names == ["disc", "box", "triangle"] and len(val) == 3 and len(val.image_ids) == 3
    for i in range(6):
        image, t = train[i]
        assert image.shape == (3, 48, 48) and t["labels"].max() < 3
        _check_target(image, t)
    image, t = val[0]
    masks, labels = val.instances(0)
    assert image.shape == (1, 64, 64) and torch.equal(t["masks"].bool(), torch.from_numpy(masks))
    small = (torch.zeros(3, 32, 40), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                                      "masks": torch.zeros(0, 32, 40, dtype=torch.uint8)})
    items = [train[0], train[1]]
    images, targets = collate_instances(items)
    assert images.shape == (2, 3, 48, 48)
    assert [len(t["labels"]) for t in targets] == [len(t["labels"]) for _, t in items]
    mixed, mt = collate_instances([(torch.zeros(3, 64, 64), val[0][1]), small])
    assert mixed.shape == (2, 3, 64, 64) and mt[1]["masks"].shape == (0, 64, 64)


@pytest.mark.parametrize("as_ids", [True, False])
def test_augmentation_keeps_image_masks_and_boxes_aligned(as_ids: bool) -> None:
    ids = np.zeros((40, 50), np.int32)
    ids[5:15, 8:20], ids[20:38, 30:45], ids[2:6, 44:49] = 1, 2, 3
    image = np.stack([ids * 80, ids * 80, ids * 80], -1).astype(np.uint8)  # the image draws the instances
    sample = InstanceSample(image, np.array([0, 1, 0]), ids=ids if as_ids else None,
                            masks=None if as_ids else ids[None] == np.arange(1, 4)[:, None, None], name="s")
    ds = InstanceDataset([sample], ["a", "b"], [0.0] * 3, [1.0] * 3,
                         InstanceTransform((32, 32), scale=(1.0, 1.0), hflip=True, vflip=True), repeats=30)
    torch.manual_seed(0)
    for i in range(30):
        x, t = ds[i]
        _check_target(x, t)
        drawn = torch.round(x[0] * 255 / 80).long()  # the instance id each pixel was drawn with
        for mask, label in zip(t["masks"].bool(), t["labels"]):
            values = drawn[mask].unique()
            assert len(values) == 1 and int(label) == [0, 1, 0][int(values[0]) - 1]


def _write_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _id_folder(root: Path, sixteen: bool) -> None:
    rng = np.random.default_rng(0)
    for i in range(4):
        ids = np.zeros((30, 40), np.uint16 if sixteen else np.uint8)
        for j in range(i + 1):
            ids[2 + 6 * j:6 + 6 * j, 3 + 5 * j:9 + 5 * j] = 300 + 7 * j if sixteen else 10 + j
        _write_png(root / "images" / f"im{i}.png", rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
        _write_png(root / "masks" / f"im{i}.png", ids)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("im0\nim1\nim2\n")
    (root / "splits" / "val.txt").write_text("im3\n")


@pytest.mark.parametrize("sixteen", [True, False])
def test_instance_id_folder(tmp_path: Path, sixteen: bool) -> None:
    _id_folder(tmp_path, sixteen)
    cfg = _data(kind="instance_folder", root=str(tmp_path), classes=["nucleus"])
    val = build_instance_dataset(cfg, "val", in_channels=3, num_classes=1)
    train = build_instance_dataset(cfg, "train", in_channels=3, num_classes=1)
    assert len(train) == 3 and val.class_names == ["nucleus"] and val.image_ids == ["im3"]
    image, t = val[0]
    _check_target(image, t)
    assert len(t["labels"]) == 4 and t["labels"].tolist() == [0] * 4
    assert t["boxes"][0].tolist() == [3, 2, 9, 6] and t["masks"].sum() == 4 * 24
    with pytest.raises(DataError, match="model.num_classes"):
        build_instance_dataset(cfg, "val", in_channels=3, num_classes=2)


def test_pennfudan_folder(tmp_path: Path) -> None:
    for i in range(5):
        ids = np.zeros((20, 20), np.uint8)
        ids[2:8, 2:8], ids[10:18, 10:19] = 1, 2
        _write_png(tmp_path / "PNGImages" / f"FudanPed{i:05d}.png", np.full((20, 20, 3), 128, np.uint8))
        _write_png(tmp_path / "PedMasks" / f"FudanPed{i:05d}_mask.png", ids)
    cfg = _data(kind="pennfudan", root=str(tmp_path), val_ratio=0.4)
    val = build_instance_dataset(cfg, "val", in_channels=3, num_classes=1)
    assert len(val) == 2 and val.class_names == ["pedestrian"] and len(val[0][1]["labels"]) == 2
    (tmp_path / "PedMasks" / "FudanPed00000_mask.png").unlink()
    with pytest.raises(DataError, match="FudanPed00000.*without mask"):
        build_instance_dataset(_data(kind="pennfudan", root=str(tmp_path), val_ratio=0.0), "train",
                               in_channels=3, num_classes=1)


def _coco(tmp_path: Path) -> tuple[Path, np.ndarray]:
    from faster_coco_eval.core import mask as mask_api

    _write_png(tmp_path / "imgs" / "a.png", np.zeros((32, 48, 3), np.uint8))
    _write_png(tmp_path / "imgs" / "b.png", np.zeros((32, 48, 3), np.uint8))
    square = np.zeros((32, 48), np.uint8)
    square[4:12, 20:30] = 1
    rle = mask_api.encode(np.asfortranarray(square[:, :, None]))[0]
    rle["counts"] = rle["counts"].decode()
    flat = square.flatten(order="F")
    changes = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]])) if flat.any() else []
    runs = np.diff(np.r_[0, changes]).tolist() if len(changes) else [flat.size]
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": 32, "width": 48},
                      {"id": 2, "file_name": "b.png", "height": 32, "width": 48}],
           "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
           "annotations": [
               {"id": 10, "image_id": 1, "category_id": 3, "bbox": [2, 2, 10, 10], "iscrowd": 0,
                "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]},
               {"id": 11, "image_id": 1, "category_id": 7, "bbox": [20, 4, 10, 8], "iscrowd": 0, "segmentation": rle},
               {"id": 12, "image_id": 2, "category_id": 7, "bbox": [20, 4, 10, 8], "iscrowd": 0,
                "segmentation": {"size": [32, 48], "counts": runs}},
               {"id": 13, "image_id": 2, "category_id": 7, "bbox": [0, 0, 5, 5], "iscrowd": 1,
                "segmentation": [[0, 0, 5, 0, 5, 5]]}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    return path, square.astype(bool)


def test_coco_polygons_and_rle(tmp_path: Path) -> None:
    path, square = _coco(tmp_path)
    cfg = _data(kind="coco", annotations={"train": str(path), "val": str(path)}, root=str(tmp_path / "imgs"))
    ds = build_instance_dataset(cfg, "val", in_channels=3, num_classes=2)
    assert ds.class_names == ["cat", "dog"] and ds.image_ids == ["1", "2"]
    _, a = ds[0]
    assert a["labels"].tolist() == [1, 0]  # dog (category 3) is the json's second category
    assert a["boxes"][0].tolist() == [2, 2, 12, 12]  # polygon area filled
    assert torch.equal(a["masks"][1].bool(), torch.from_numpy(square))  # compressed RLE
    _, b = ds[1]
    assert len(b["labels"]) == 1 and torch.equal(b["masks"][0].bool(), torch.from_numpy(square))  # list RLE, crowd out
    train = build_instance_dataset(cfg, "train", in_channels=3, train=True, num_classes=2)
    _check_target(*train[0])


@pytest.mark.parametrize(("edit", "match"), [
    (lambda d: d["annotations"][0].update(segmentation=[[1, 1, 5, 5]]), r"annotation id 10: polygon with 2 points"),
    (lambda d: d["annotations"][1].update(bbox=[40, 4, 20, 8]), r"annotation id 11: bbox .* outside its image a.png"),
    (lambda d: d["annotations"][2].update(category_id=99), r"annotation id 12: unknown category_id 99"),
    (lambda d: d["images"][1].update(file_name="missing.png"), r"image id 2: file .*missing.png not found"),
])
def test_malformed_coco_is_one_line_error(tmp_path: Path, edit, match: str) -> None:  # noqa: ANN001
    path, _ = _coco(tmp_path)
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    cfg = _data(kind="coco", annotations=str(path), root=str(tmp_path / "imgs"), val_ratio=0.5)
    with pytest.raises(DataError, match=match) as err:
        for split in ("train", "val"):
            build_instance_dataset(cfg, split, in_channels=3, num_classes=2)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_recipe_resolves_annotation_paths(tmp_path: Path) -> None:
    from edgeseg.recipe import load_recipe

    (tmp_path / "r.yaml").write_text("data: {kind: coco, annotations: {train: a/t.json, val: v.json}}\n")
    r = load_recipe(tmp_path / "r.yaml")
    assert r.data.annotations["train"] == (tmp_path / "a" / "t.json").resolve()
    with pytest.raises(DataError, match="no instance masks"):
        build_instance_dataset(_data(kind="folder", root=str(tmp_path)), "val", in_channels=3)
