"""`edgeseg run` re-trains when the data files change, and ends with the figures and report paths."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from edgeseg.data.fingerprint import dataset_fingerprint
from edgeseg.pipeline import run
from edgeseg.recipe import recipe_from_dict


def _dataset(root, n=6, seed=0):
    rng = np.random.default_rng(seed)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray((rng.random((32, 32)) > 0.5).astype(np.uint8)).save(root / "masks" / f"{i}.png")


def _recipe(root):
    return recipe_from_dict({"name": "fp", "model": {"name": "unet_test", "num_classes": 2},
                             "data": {"kind": "folder", "root": str(root), "image_size": 32, "val_ratio": 0.34},
                             "train": {"epochs": 1, "batch_size": 4}})


def test_changed_or_deleted_data_files_retrain(tmp_path):
    root = tmp_path / "data"
    _dataset(root)
    out = tmp_path / "run"
    assert run(_recipe(root), out)["stages"]["train"]["status"] == "done"
    assert run(_recipe(root), out)["stages"]["train"]["status"] == "skipped"
    mask = root / "masks" / "0.png"
    Image.fromarray(np.ones((32, 32), np.uint8)).save(mask)  # every label changed, same name
    st = mask.stat()
    os.utime(mask, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # coarse clocks: a visibly newer file
    assert run(_recipe(root), out)["stages"]["train"]["status"] == "done"
    for i in (3, 4, 5):  # half the images deleted
        (root / "images" / f"{i}.png").unlink()
        (root / "masks" / f"{i}.png").unlink()
    assert run(_recipe(root), out)["stages"]["train"]["status"] == "done"


def test_fingerprint_sees_names_sizes_times_and_split_lists(tmp_path):
    root = tmp_path / "data"
    _dataset(root, n=3)
    cfg = _recipe(root).data
    a = dataset_fingerprint(cfg)
    assert a["files"] == 6 and a == dataset_fingerprint(cfg)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("0\n1\n")
    b = dataset_fingerprint(cfg)
    (root / "splits" / "train.txt").write_text("1\n0\n")  # same size, other content
    os.utime(root / "splits" / "train.txt", ns=(0, (root / "splits" / "train.txt").stat().st_mtime_ns))
    assert len({a["sha256"], b["sha256"], dataset_fingerprint(cfg)["sha256"]}) == 3
