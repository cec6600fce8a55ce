"""``SegDataset`` and ``build_dataset``: the torch side of the data package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from edgeseg.data.base import DataError, default_mean_std
from edgeseg.data.classes import resolve_classes
from edgeseg.data.preprocess import normalize
from edgeseg.data.transforms import TrainTransform


class SegDataset(Dataset):
    """In-memory (image, mask) pairs with optional training augmentation.

    Args:
        samples: (H x W x C uint8 image, H x W int64 mask) pairs.
        names: one name per sample (file stem or synthetic id).
        mean, std: normalisation per channel.
        transform: training augmentation, or None for native-resolution evaluation items.
        repeats: passes over the samples per epoch (training).
        instances: per-sample (N x H x W bool masks, N class ids), when the source has instances.
    """

    def __init__(self, samples: list[tuple[np.ndarray, np.ndarray]], names: list[str], mean: list[float],
                 std: list[float], transform: TrainTransform | None = None, repeats: int = 1,
                 instances: list[tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self.samples = samples
        self.names = names
        self.mean, self.std = mean, std
        self.transform = transform
        self.repeats = repeats
        self._instances = instances
        # What was loaded and how (kind, split, image count, mask encoding chosen): recorded by training.
        self.summary: dict[str, Any] = {"images": len(samples)}

    def __len__(self) -> int:
        return len(self.samples) * self.repeats

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        raw, mask = self.samples[index % len(self.samples)]
        image = torch.from_numpy(normalize(raw, self.mean, self.std))
        target = torch.from_numpy(mask)
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target

    def raw(self, index: int) -> np.ndarray:
        """The un-normalised H x W x C uint8 image of sample ``index``."""
        return self.samples[index % len(self.samples)][0]

    def instances(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(N x H x W bool masks, N class ids) of sample ``index`` at native resolution."""
        if self._instances is None:
            raise DataError("this dataset has semantic masks only (no per-instance masks)")
        return self._instances[index % len(self.samples)]


def build_dataset(data_cfg: Any, split: str, *, in_channels: int, train: bool = False,
                  num_classes: int | None = None) -> SegDataset:
    """The ``split`` ("train", "val", "test") of a recipe's ``data`` section.

    ``train=True`` gives augmented ``data.image_size`` crops repeated ``data.train_repeats`` times;
    otherwise whole images. ``num_classes`` (default: ``len(data.classes)``, else 4 for synthetic
    shapes and 2 for folders) bounds the valid label values.
    """
    if num_classes is None:
        num_classes = len(data_cfg.classes) or (4 if data_cfg.kind == "synthetic" else 2)
    mean, std = default_mean_std(data_cfg, in_channels)
    transform = None
    if train:
        transform = TrainTransform(size=data_cfg.size_hw, scale=tuple(data_cfg.scale), hflip=data_cfg.hflip,
                                   vflip=data_cfg.vflip, color_jitter=data_cfg.color_jitter,
                                   ignore_index=data_cfg.ignore_index)
    repeats = data_cfg.train_repeats if train else 1
    if data_cfg.kind == "synthetic":
        return _synthetic(data_cfg, split, in_channels, num_classes, mean, std, transform, repeats)
    if data_cfg.root is None:
        raise DataError("recipe field data.root: a folder dataset needs data.root (ROOT/images + ROOT/masks)")
    from edgeseg.data.folder import MaskDecoder, list_pairs, load_pairs, probe_masks, read_mask_array

    pairs = list_pairs(Path(data_cfg.root), split, val_ratio=data_cfg.val_ratio, test_ratio=data_cfg.test_ratio,
                       split_seed=data_cfg.split_seed)
    decoder = MaskDecoder(data_cfg.mask_encoding, num_classes, data_cfg.ignore_index, data_cfg.palette,
                          resolve_classes(data_cfg, num_classes))
    decoder.resolve([(m, *read_mask_array(m)) for m in probe_masks(Path(data_cfg.root))])
    samples = load_pairs(pairs, decoder, in_channels)
    ds = SegDataset(samples, [p.stem for p, _ in pairs], mean, std, transform, repeats)
    ds.summary = {"kind": "folder", "root": str(data_cfg.root), "split": split, "images": len(pairs),
                  "mask_encoding": decoder.encoding, "mask_encoding_requested": decoder.requested,
                  "note": decoder.note}
    return ds


def _synthetic(data_cfg: Any, split: str, in_channels: int, num_classes: int, mean: list[float],
               std: list[float], transform: TrainTransform | None, repeats: int) -> SegDataset:
    from edgeseg.data.synthetic import check_num_classes, generate, split_length

    check_num_classes(num_classes)
    syn = data_cfg.synthetic
    samples, instances = [], []
    for i in range(split_length(data_cfg, split)):
        s = generate(syn.seed, split, i, size=syn.size, num_classes=num_classes, max_shapes=syn.max_shapes)
        samples.append((_to_channels(s.image, in_channels), s.mask))
        instances.append((s.instance_masks, s.instance_classes))
    names = [f"{split}-{i:05d}" for i in range(len(samples))]
    ds = SegDataset(samples, names, mean, std, transform, repeats, instances)
    ds.summary = {"kind": "synthetic", "split": split, "images": len(samples), "mask_encoding": "index",
                  "mask_encoding_requested": data_cfg.mask_encoding, "note": ""}
    return ds


def _to_channels(rgb: np.ndarray, in_channels: int) -> np.ndarray:
    """Generated RGB as gray (luminance), RGB, or RGB plus extra channels derived from it."""
    if in_channels == 3:
        return rgb
    gray = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
    if in_channels == 1:
        return gray[:, :, None]
    extra = [gray] * max(0, in_channels - 3)
    return np.ascontiguousarray(np.dstack([rgb[:, :, :in_channels], *extra])[:, :, :in_channels])
