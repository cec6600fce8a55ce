"""Folder datasets: every mask encoding, list and ratio splits, and each bad input's error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.data import DataError, build_dataset, load_image, normalize, resolve_classes
from edgeseg.recipe import recipe_from_dict
from tests.conftest import SHARED_DATASETS


def _write(root: Path, stem: str, image: np.ndarray, mask: np.ndarray | None, mode: str | None = None) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{stem}.png")
    if mask is not None:
        Image.fromarray(mask, mode=mode).save(root / "masks" / f"{stem}.png") if mode else \
            Image.fromarray(mask).save(root / "masks" / f"{stem}.png")


def _cfg(root: Path, **data):
    d = {"model": {"name": "unet_test", "num_classes": data.pop("num_classes", 2)},
         "data": {"kind": "folder", "root": str(root), "image_size": 16, "val_ratio": 0.25, **data}}
    return recipe_from_dict(d)


def _rgb(h=20, w=24, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _build(root, split="train", num_classes=2, **data):
    r = _cfg(root, num_classes=num_classes, **data)
    return build_dataset(r.data, split, in_channels=3, num_classes=num_classes)


def test_binary_0_255_masks_become_0_1(tmp_path):
    for i in range(4):
        m = np.zeros((20, 24), np.uint8)
        m[5:10, 5:10] = 255
        _write(tmp_path, f"s{i}", _rgb(seed=i), m)
    ds = _build(tmp_path)
    assert len(ds) == 3  # 4 images, val_ratio 0.25 -> 1 val
    _, mask = ds[0]
    assert set(mask.unique().tolist()) == {0, 1} and int(mask.sum()) == 25


def test_index_masks_with_ignore(tmp_path):
    m = np.array([[0, 1, 2, 255]] * 4, np.uint8)
    for i in range(4):
        _write(tmp_path, f"s{i}", _rgb(4, 4, i), m)
    ds = _build(tmp_path, num_classes=3)
    assert ds[0][1].tolist()[0] == [0, 1, 2, 255]


def test_paletted_png_masks_are_indices(tmp_path):
    m = np.array([[0, 1], [2, 1]], np.uint8)
    for i in range(4):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(_rgb(2, 2, i)).save(tmp_path / "images" / f"s{i}.png")
        p = Image.fromarray(m, mode="P")
        p.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
        p.save(tmp_path / "masks" / f"s{i}.png")
    ds = _build(tmp_path, num_classes=3)
    assert ds[0][1].tolist() == [[0, 1], [2, 1]]


def test_colour_palette_masks(tmp_path):
    m = np.zeros((3, 3, 3), np.uint8)
    m[0, 0] = (255, 0, 0)
    m[1, 1] = (0, 255, 0)
    m[2, 2] = (255, 255, 255)
    for i in range(4):
        _write(tmp_path, f"s{i}", _rgb(3, 3, i), m)
    palette = {"bg": [0, 0, 0], "road": [255, 0, 0], "tree": [0, 255, 0], "ignore": [255, 255, 255]}
    ds = _build(tmp_path, num_classes=3, classes=["bg", "road", "tree"], palette=palette)
    assert ds[0][1].tolist() == [[1, 0, 0], [0, 2, 0], [0, 0, 255]]
    bad = dict(palette)
    del bad["tree"]
    with pytest.raises(DataError, match=r"colour \(0, 255, 0\).*not in data.palette"):
        _build(tmp_path, num_classes=3, classes=["bg", "road", "tree"], palette=bad)
    with pytest.raises(DataError, match="no data.palette"):
        _build(tmp_path, num_classes=3)


def test_16bit_instance_masks_as_semantic(tmp_path):
    m = np.zeros((8, 8), np.uint16)
    m[1:3, 1:3], m[5:7, 5:7] = 1, 300
    for i in range(4):
        _write(tmp_path, f"s{i}", _rgb(8, 8, i), m)
    ds = _build(tmp_path)
    assert int(ds[0][1].sum()) == 8 and ds.samples[0][1].max() == 1


def test_split_files_are_used_and_checked(tmp_path):
    for i in range(3):
        _write(tmp_path, f"s{i}", _rgb(seed=i), np.zeros((20, 24), np.uint8))
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text("s0\ns2\n")
    (tmp_path / "splits" / "val.txt").write_text("s1\n")
    assert _build(tmp_path).names == ["s0", "s2"]
    assert _build(tmp_path, "val").names == ["s1"]
    with pytest.raises(DataError, match="test.txt: no test split"):
        _build(tmp_path, "test")
    (tmp_path / "splits" / "val.txt").write_text("s1\nnope\n")
    with pytest.raises(DataError, match=r"val.txt:2: 'nope' has no image"):
        _build(tmp_path, "val")


def test_ratio_split_is_seeded_and_disjoint(tmp_path):
    for i in range(10):
        _write(tmp_path, f"s{i}", _rgb(4, 4, i), np.zeros((4, 4), np.uint8))
    kw = {"val_ratio": 0.2, "test_ratio": 0.1}
    parts = {s: set(_build(tmp_path, s, **kw).names) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [7, 2, 1]
    assert not (parts["train"] & parts["val"]) and not (parts["val"] & parts["test"])
    assert set(_build(tmp_path, "val", **kw).names) == parts["val"]


@pytest.mark.parametrize("problem, match", [
    ("no_mask", "image without mask"),
    ("size", "mask is 10x10 but its image"),
    ("value", r"label value\(s\) \[7\] not in the class table"),
    ("unreadable", "unreadable image"),
    ("empty", "no images"),
    ("no_root", "data.root"),
    ("orphan", "mask without image"),
])
def test_bad_input_names_the_file(tmp_path, problem, match):
    root = tmp_path / "ds"
    m = np.zeros((20, 24), np.uint8)
    m[0, 0] = 2
    for i in range(4):
        _write(root, f"s{i}", _rgb(seed=i), m)
    if problem == "no_mask":
        (root / "masks" / "s1.png").unlink()
    elif problem == "size":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "s0.png")
    elif problem == "value":
        bad = m.copy()
        bad[3, 3] = 7
        Image.fromarray(bad).save(root / "masks" / "s0.png")
    elif problem == "unreadable":
        (root / "images" / "s0.png").write_bytes(b"not a png")
    elif problem == "empty":
        for p in (root / "images").iterdir():
            p.unlink()
    elif problem == "no_root":
        root = tmp_path / "missing"
    elif problem == "orphan":
        Image.fromarray(m).save(root / "masks" / "zz.png")
    with pytest.raises(DataError, match=match) as err:
        _build(root, num_classes=3, val_ratio=0.0)
    if problem in ("no_mask", "size", "value", "unreadable"):
        assert str(root) in str(err.value)


def test_load_image_channels_and_normalize(tmp_path):
    p = tmp_path / "g.png"
    Image.fromarray(np.full((5, 6), 128, np.uint8)).save(p)
    assert load_image(p, 3).shape == (5, 6, 3) and load_image(p, 1).shape == (5, 6, 1)
    x = normalize(load_image(p, 1), [0.5], [0.25])
    assert x.shape == (1, 5, 6) and abs(float(x[0, 0, 0]) - (128 / 255 - 0.5) / 0.25) < 1e-6
    with pytest.raises(DataError, match="g.png: has 1 channels but model.in_channels is 2"):
        load_image(p, 2)


def test_class_names_must_match_num_classes(tmp_path):
    r = _cfg(tmp_path, classes=["a", "b", "c"])
    with pytest.raises(DataError, match="data.classes: has 3 names"):
        resolve_classes(r.data, 2)


@pytest.mark.skipif(not (SHARED_DATASETS / "isbi2012-membrane").is_dir(), reason="../shared/datasets absent")
def test_real_membrane_split_loads():
    r = recipe_from_dict({"model": {"name": "unet-lite", "num_classes": 2, "in_channels": 1},
                          "data": {"kind": "folder", "root": str(SHARED_DATASETS / "isbi2012-membrane")}})
    val = build_dataset(r.data, "val", in_channels=1, num_classes=2)
    assert val.names == [str(i) for i in range(24, 30)]
    image, mask = val[0]
    assert image.shape == (1, 512, 512) and set(mask.unique().tolist()) == {0, 1}
    assert 0.6 < float(mask.float().mean()) < 0.95  # ~78% cell interior


@pytest.mark.skipif(not (SHARED_DATASETS / "dsb2018-nuclei").is_dir(), reason="../shared/datasets absent")
def test_real_nuclei_instance_masks_load_as_binary():
    r = recipe_from_dict({"model": {"name": "unet-lite", "num_classes": 2},
                          "data": {"kind": "folder", "root": str(SHARED_DATASETS / "dsb2018-nuclei")}})
    val = build_dataset(r.data, "val", in_channels=3, num_classes=2)
    assert len(val) == 13
    assert all(set(np.unique(m).tolist()) <= {0, 1} for _, m in val.samples)
