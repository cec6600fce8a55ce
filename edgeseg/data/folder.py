"""``ROOT/images`` + ``ROOT/masks`` matched by file stem, with list-file or seeded ratio splits.

Mask encodings (``data.mask_encoding``):
- ``index``: pixel value = class id (8/16-bit gray or paletted PNG); ``ignore_index`` allowed.
- ``binary``: 0 = class 0, any non-zero value = class 1 (0/255 masks, instance-id masks as semantic).
- ``palette``: RGB masks; ``data.palette`` maps class name -> colour (the name ``ignore`` -> ignore_index).
- ``auto`` (default): RGB masks -> palette; otherwise decided once per dataset from the first masks'
  values: values within the class table -> index; else, with two classes -> binary; else an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.data.base import DataError, _open

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif")
SPLITS = ("train", "val", "test")
AUTO_PROBE = 8


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in suffixes:
            if p.stem in files:
                raise DataError(f"{folder}: two files share the stem {p.stem!r} ({files[p.stem].name}, {p.name})")
            files[p.stem] = p
    return files


def list_pairs(root: Path, split: str, *, val_ratio: float, test_ratio: float, split_seed: int) -> list[tuple[Path, Path]]:
    """(image, mask) paths of ``split``; every listed image must have a mask and vice versa."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"recipe field data.root: {root} is not a directory (expected ROOT/images and ROOT/masks)")
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise DataError(f"{root / sub}: folder missing (a folder dataset is ROOT/images + ROOT/masks)")
    images = _by_stem(root / "images", IMAGE_SUFFIXES)
    masks = _by_stem(root / "masks", MASK_SUFFIXES)
    if not images:
        raise DataError(f"{root / 'images'}: no images ({', '.join(IMAGE_SUFFIXES)})")
    split_file = root / "splits" / f"{split}.txt"
    if (root / "splits").is_dir():
        if not split_file.is_file():
            raise DataError(f"{split_file}: no {split} split (the other split files in {root / 'splits'} exist)")
        stems = []
        for lineno, line in enumerate(split_file.read_text().splitlines(), 1):
            stem = Path(line.strip()).stem if line.strip() else ""
            if not stem or stem.startswith("#"):
                continue
            if stem not in images:
                raise DataError(f"{split_file}:{lineno}: {stem!r} has no image in {root / 'images'}")
            stems.append(stem)
    else:
        stems = _ratio_split(sorted(images), split, val_ratio, test_ratio, split_seed)
    missing = [s for s in stems if s not in masks]
    if missing:
        raise DataError(f"{images[missing[0]]}: image without mask (no {missing[0]}.png in {root / 'masks'})"
                        + (f"; {len(missing) - 1} more" if len(missing) > 1 else ""))
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise DataError(f"{masks[orphans[0]]}: mask without image in {root / 'images'}")
    if not stems:
        raise DataError(f"{root}: the {split} split is empty (val_ratio/test_ratio or split files)")
    return [(images[s], masks[s]) for s in stems]


def _ratio_split(stems: list[str], split: str, val_ratio: float, test_ratio: float, seed: int) -> list[str]:
    order = np.random.default_rng(seed).permutation(len(stems))
    n_val, n_test = round(len(stems) * val_ratio), round(len(stems) * test_ratio)
    if val_ratio > 0:
        n_val = max(1, n_val)
    if test_ratio > 0:
        n_test = max(1, n_test)
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return [stems[i] for i in sorted(parts[split])]


def probe_masks(root: Path) -> list[Path]:
    """The masks ``auto`` decoding looks at: the first few of the whole dataset, so every split decides alike."""
    return list(_by_stem(Path(root) / "masks", MASK_SUFFIXES).values())[:AUTO_PROBE]


def read_mask_array(path: Path) -> tuple[np.ndarray, str]:
    """The raw mask values and the PIL mode (``RGB`` masks come back H x W x 3)."""
    im = _open(path)
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGB" if im.mode != "LA" else "L")
    if im.mode == "CMYK":
        im = im.convert("RGB")
    return np.asarray(im), im.mode


class MaskDecoder:
    """Turns mask files into H x W int64 class maps under one encoding, validating every value."""

    def __init__(self, encoding: str, num_classes: int, ignore_index: int,
                 palette: dict[str, tuple[int, int, int]] | None, class_names: list[str]) -> None:
        self.encoding = encoding
        self.requested = encoding
        self.note = ""
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.colours: dict[tuple[int, int, int], int] = {}
        if palette:
            for name, rgb in palette.items():
                if name == "ignore":
                    self.colours[tuple(rgb)] = ignore_index
                elif name in class_names:
                    self.colours[tuple(rgb)] = class_names.index(name)
                else:
                    raise DataError(f"recipe field data.palette: {name!r} is not a class in data.classes "
                                    f"{class_names} (or 'ignore')")

    def resolve(self, samples: list[tuple[Path, np.ndarray, str]]) -> None:
        """Fix ``auto`` to a concrete encoding from a few masks' values; :attr:`note` says what was chosen."""
        if self.encoding != "auto":
            return
        if any(arr.ndim == 3 for _, arr, _ in samples):
            self.encoding = "palette"
            self.note = f"masks decoded as palette (auto: RGB masks among the first {len(samples)})"
            return
        values = set().union(*(np.unique(arr).tolist() for _, arr, _ in samples))
        allowed = set(range(self.num_classes)) | {self.ignore_index}
        binary_like = self.num_classes == 2 and 1 not in values and self.ignore_index in values
        seen = ", ".join(map(str, sorted(values)[:8])) + (", ..." if len(values) > 8 else "")
        if values <= allowed and not binary_like:
            self.encoding = "index"
            self.note = f"masks decoded as index (auto: values {{{seen}}} in the first {len(samples)} masks)"
        elif self.num_classes == 2:
            self.encoding = "binary"
            # Said aloud: a stray value in a 0/1 dataset also lands here and silently becomes class 1.
            self.note = (f"masks decoded as binary (auto: values {{{seen}}} in the first {len(samples)} masks; "
                         "0 -> class 0, every other value -> class 1); set data.mask_encoding: index to "
                         "refuse values outside the class table")
        else:
            for path, arr, _ in samples:
                bad = sorted(set(np.unique(arr).tolist()) - allowed)[:5]
                if bad:
                    raise DataError(f"{path}: label value(s) {bad} not in the class table (0..{self.num_classes - 1}, "
                                    f"ignore_index {self.ignore_index}); fix the mask, model.num_classes or "
                                    f"data.mask_encoding (index, binary, palette)")

    def __call__(self, path: Path, arr: np.ndarray) -> np.ndarray:
        if self.encoding == "palette" or arr.ndim == 3:
            return self._palette(path, arr)
        if self.encoding == "binary":
            return (arr > 0).astype(np.int64)
        labels = arr.astype(np.int64)
        bad = (labels >= self.num_classes) & (labels != self.ignore_index)
        if bad.any():
            values = sorted(np.unique(labels[bad]).tolist())[:5]
            raise DataError(f"{path}: label value(s) {values} not in the class table (0..{self.num_classes - 1}, "
                            f"ignore_index {self.ignore_index})")
        return labels

    def _palette(self, path: Path, arr: np.ndarray) -> np.ndarray:
        if arr.ndim != 3:
            raise DataError(f"{path}: expected an RGB colour mask for data.mask_encoding=palette, got one channel")
        if not self.colours:
            raise DataError(f"{path}: RGB colour mask but the recipe has no data.palette "
                            f"(class name -> [r, g, b])")
        rgb = arr[:, :, :3].astype(np.int64)
        keys = (rgb[:, :, 0] << 16) | (rgb[:, :, 1] << 8) | rgb[:, :, 2]
        lut_keys = np.array([(r << 16) | (g << 8) | b for r, g, b in self.colours], np.int64)
        lut_vals = np.array(list(self.colours.values()), np.int64)
        order = np.argsort(lut_keys)
        lut_keys, lut_vals = lut_keys[order], lut_vals[order]
        pos = np.clip(np.searchsorted(lut_keys, keys), 0, len(lut_keys) - 1)
        known = lut_keys[pos] == keys
        if not known.all():
            y, x = np.argwhere(~known)[0]
            colour = tuple(int(c) for c in rgb[y, x])
            raise DataError(f"{path}: colour {colour} at pixel (x={x}, y={y}) is not in data.palette "
                            f"({int((~known).sum())} such pixels)")
        return lut_vals[pos]


def load_pairs(pairs: list[tuple[Path, Path]], decoder: MaskDecoder, in_channels: int,
               progress: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """Decode every (image, mask) pair into memory, checking sizes and values."""
    from edgeseg.data.base import load_image
    from edgeseg.progress import track

    probe = [(m, *read_mask_array(m)) for _, m in pairs[:AUTO_PROBE]]
    decoder.resolve(probe)
    out = []
    items: Any = track(pairs, description="load data") if progress and len(pairs) > 50 else pairs
    for image_path, mask_path in items:
        image = load_image(image_path, in_channels)
        arr, _ = read_mask_array(mask_path)
        if arr.shape[:2] != image.shape[:2]:
            raise DataError(f"{mask_path}: mask is {arr.shape[1]}x{arr.shape[0]} but its image {image_path} is "
                            f"{image.shape[1]}x{image.shape[0]}")
        out.append((image, decoder(mask_path, arr)))
    return out
