"""Instance-id mask folders (``ROOT/images`` + ``ROOT/masks``) and Penn-Fudan-style folders (numpy only).

An instance-id mask is one 8/16-bit PNG per image: 0 = background, every other value one instance
(``../shared/datasets/dsb2018-nuclei`` is one). Penn-Fudan keeps images in ``PNGImages/`` and the id masks
in ``PedMasks/<stem>_mask.png``. Both have one object class. Samples keep the id map (H x W int32, ids
renumbered 1..M) rather than M full-size masks: a 696x520 image with 329 nuclei would otherwise hold
119 MB of masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.data.base import DataError, load_image
from edgeseg.data.folder import IMAGE_SUFFIXES, _by_stem, _ratio_split, list_pairs, read_mask_array


@dataclass
class InstanceSample:
    """One image with its instances, as either an id map (non-overlapping) or a mask stack.

    Attributes:
        image: H x W x C uint8.
        labels: M int64, 0-based class per instance.
        ids: H x W int32 id map (0 = background, instance i has id i + 1), or None.
        masks: M x H x W bool stack (overlapping instances, e.g. COCO), or None.
        name: file stem or synthetic id.
    """

    image: np.ndarray
    labels: np.ndarray
    ids: np.ndarray | None = None
    masks: np.ndarray | None = None
    name: str = ""

    def mask_stack(self) -> np.ndarray:
        """M x H x W bool masks."""
        if self.masks is not None:
            return self.masks
        assert self.ids is not None
        return self.ids[None] == np.arange(1, len(self.labels) + 1, dtype=np.int32)[:, None, None]


def read_id_map(path: Path) -> np.ndarray:
    """An instance-id PNG as H x W int32 with ids renumbered to 1..M in order of first value."""
    arr, mode = read_mask_array(path)
    if arr.ndim != 2:
        raise DataError(f"{path}: instance-id mask must be single-channel 8/16-bit (0 = background, one value per "
                        f"instance), got mode {mode}")
    values = np.unique(arr)
    values = values[values != 0]
    lut = np.zeros(int(arr.max()) + 1 if arr.size else 1, np.int32)
    lut[values] = np.arange(1, len(values) + 1, dtype=np.int32)
    return lut[arr]


def load_id_pairs(pairs: list[tuple[Path, Path]], in_channels: int) -> list[InstanceSample]:
    """Decode (image, id mask) pairs; every instance gets class 0."""
    from edgeseg.progress import track

    out = []
    items: Any = track(pairs, description="load data") if len(pairs) > 50 else pairs
    for image_path, mask_path in items:
        image = load_image(image_path, in_channels)
        ids = read_id_map(mask_path)
        if ids.shape != image.shape[:2]:
            raise DataError(f"{mask_path}: mask is {ids.shape[1]}x{ids.shape[0]} but its image {image_path} is "
                            f"{image.shape[1]}x{image.shape[0]}")
        out.append(InstanceSample(image, np.zeros(int(ids.max()), np.int64), ids=ids, name=image_path.stem))
    return out


def instance_folder(root: Path, split: str, in_channels: int, *, val_ratio: float, test_ratio: float,
                    split_seed: int) -> list[InstanceSample]:
    """``ROOT/images`` + ``ROOT/masks`` (instance ids), split by ``ROOT/splits/<split>.txt`` or by ratio."""
    pairs = list_pairs(Path(root), split, val_ratio=val_ratio, test_ratio=test_ratio, split_seed=split_seed)
    return load_id_pairs(pairs, in_channels)


def pennfudan(root: Path, split: str, in_channels: int, *, val_ratio: float, test_ratio: float,
              split_seed: int) -> list[InstanceSample]:
    """Penn-Fudan layout: ``ROOT/PNGImages/X.png`` + ``ROOT/PedMasks/X_mask.png``, seeded ratio split."""
    root = Path(root)
    for sub in ("PNGImages", "PedMasks"):
        if not (root / sub).is_dir():
            raise DataError(f"{root / sub}: folder missing (a Penn-Fudan dataset is ROOT/PNGImages + ROOT/PedMasks)")
    images = _by_stem(root / "PNGImages", IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"{root / 'PNGImages'}: no images")
    orphans = sorted(m for m in (root / "PedMasks").glob("*_mask.png") if m.name[:-len("_mask.png")] not in images)
    if orphans:
        raise DataError(f"{orphans[0]}: mask without image (no {orphans[0].name[:-len('_mask.png')]}.* in "
                        f"{root / 'PNGImages'})")
    pairs = []
    for stem in _ratio_split(sorted(images), split, val_ratio, test_ratio, split_seed):
        mask = root / "PedMasks" / f"{stem}_mask.png"
        if not mask.is_file():
            raise DataError(f"{images[stem]}: image without mask (no {mask.name} in {root / 'PedMasks'})")
        pairs.append((images[stem], mask))
    if not pairs:
        raise DataError(f"{root}: the {split} split is empty (data.val_ratio / data.test_ratio)")
    return load_id_pairs(pairs, in_channels)
