"""Instance-segmentation datasets: synthetic shapes, COCO json, instance-id folders, Penn-Fudan folders.

An item is ``(image, target)``: a normalised C x H x W float32 tensor and a dict with ``boxes`` (M x 4
float32 x1, y1, x2, y2 in pixels, box edges: a mask covering columns 3..7 has x1 = 3, x2 = 8),
``labels`` (M int64, 0-based object classes, no background class) and ``masks`` (M x H x W uint8).
Boxes are always recomputed from the masks after augmentation, so the two stay consistent. Training
items are augmented fixed-size crops (random scale, pad, crop, flips, colour jitter); evaluation items
are whole images at native resolution. :func:`collate_instances` batches variable instance counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from edgeseg.data.base import DataError, default_mean_std
from edgeseg.data.preprocess import normalize
from edgeseg.data.transforms import CropFlipAugment
from edgeseg.data.instance_folder import InstanceSample

INSTANCE_KINDS = ("synthetic", "coco", "instance_folder", "pennfudan")


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """M x H x W masks -> M x 4 float32 boxes (pixel edges; all-zero masks give zero boxes)."""
    if len(masks) == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    m = masks.bool()
    rows, cols = m.any(2), m.any(1)
    h, w = m.shape[1:]
    ar_h = torch.arange(h, device=m.device)
    ar_w = torch.arange(w, device=m.device)
    y1 = torch.where(rows, ar_h, h).min(1).values
    y2 = torch.where(rows, ar_h, -1).max(1).values + 1
    x1 = torch.where(cols, ar_w, w).min(1).values
    x2 = torch.where(cols, ar_w, -1).max(1).values + 1
    box = torch.stack([x1, y1, x2, y2], 1).float()
    return torch.where(rows.any(1)[:, None], box, torch.zeros_like(box))


@dataclass(frozen=True)
class InstanceTransform(CropFlipAugment):
    """Training augmentation keeping image and instance masks consistent (boxes follow from the masks).

    Args (besides :class:`CropFlipAugment`'s):
        min_pixels: Instances with fewer visible pixels after cropping are dropped.
    """

    min_pixels: int = 4

    def __call__(self, image: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image C x H x W float; masks K x H x W (an id map when K == 1 and ids, else a stack).

        Returns the transformed pair at ``size`` (same mask encoding).
        """
        return self.augment(image, masks, 0)


def make_target(masks: torch.Tensor, labels: torch.Tensor, min_pixels: int = 1) -> dict[str, torch.Tensor]:
    """Target dict from a mask stack (M x H x W), dropping instances under ``min_pixels``."""
    masks = masks.to(torch.uint8)
    keep = masks.flatten(1).sum(1) >= min_pixels if len(masks) else torch.zeros(0, dtype=torch.bool)
    masks, labels = masks[keep], labels[keep]
    return {"boxes": boxes_from_masks(masks), "labels": labels.long(), "masks": masks}


def _ids_to_stack(ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """H x W id map (1..M) -> (K x H x W masks, K labels) of the ids still present."""
    present = torch.unique(ids)
    present = present[present > 0]
    masks = ids[None] == present[:, None, None].to(ids.dtype)
    return masks, labels[(present - 1).long()]


class InstanceDataset(Dataset):
    """In-memory instance samples with optional training augmentation.

    Attributes:
        image_ids: One name per sample (file stem, COCO image id or synthetic id).
        class_names: Object class names (index = label).
    """

    def __init__(self, samples: list[InstanceSample], class_names: list[str], mean: list[float], std: list[float],
                 transform: InstanceTransform | None = None, repeats: int = 1) -> None:
        self.samples = samples
        self.class_names = class_names
        self.image_ids = [s.name for s in samples]
        self.mean, self.std = mean, std
        self.transform = transform
        self.repeats = repeats

    def __len__(self) -> int:
        return len(self.samples) * self.repeats

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.samples[index % len(self.samples)]
        image = torch.from_numpy(normalize(s.image, self.mean, self.std))
        labels = torch.from_numpy(s.labels)
        if s.ids is not None:
            masks = torch.from_numpy(s.ids)[None]
        else:
            masks = torch.from_numpy(s.masks if s.masks is not None else np.zeros((0, *s.image.shape[:2]), bool))
            masks = masks.to(torch.uint8)
        min_pixels = 1
        if self.transform is not None:
            image, masks = self.transform(image, masks)
            min_pixels = self.transform.min_pixels
        if s.ids is not None:
            masks, labels = _ids_to_stack(masks[0], labels)
        return image, make_target(masks, labels, min_pixels)

    def raw(self, index: int) -> np.ndarray:
        """The un-normalised H x W x C uint8 image of sample ``index``."""
        return self.samples[index % len(self.samples)].image

    def instances(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(M x H x W bool masks, M 0-based labels) of sample ``index`` at native resolution."""
        s = self.samples[index % len(self.samples)]
        return s.mask_stack(), s.labels


def collate_instances(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]
                      ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Stack images (zero-padding bottom/right to the largest, masks alike) and keep targets as a list."""
    h = max(img.shape[-2] for img, _ in batch)
    w = max(img.shape[-1] for img, _ in batch)
    images, targets = [], []
    for img, t in batch:
        ph, pw = h - img.shape[-2], w - img.shape[-1]
        if ph or pw:
            img = F.pad(img, (0, pw, 0, ph), value=0.0)
            t = {**t, "masks": F.pad(t["masks"], (0, pw, 0, ph), value=0)}
        images.append(img)
        targets.append(t)
    return torch.stack(images), targets


def _synthetic(data_cfg: Any, split: str, in_channels: int, num_classes: int) -> list[InstanceSample]:
    from edgeseg.data.dataset import _to_channels
    from edgeseg.data.synthetic import SHAPE_KINDS, generate, split_length

    if not 1 <= num_classes <= len(SHAPE_KINDS):
        raise DataError(f"recipe field model.num_classes: synthetic instances have 1..{len(SHAPE_KINDS)} object "
                        f"classes ({', '.join(SHAPE_KINDS)}), got {num_classes}")
    syn = data_cfg.synthetic
    out = []
    for i in range(split_length(data_cfg, split)):
        s = generate(syn.seed, split, i, size=syn.size, num_classes=num_classes + 1, max_shapes=syn.max_shapes)
        ids = np.zeros(s.mask.shape, np.int32)
        for j, m in enumerate(s.instance_masks):
            ids[m] = j + 1
        out.append(InstanceSample(_to_channels(s.image, in_channels), s.instance_classes - 1, ids=ids,
                                  name=f"{split}-{i:05d}"))
    return out


def _annotations(data_cfg: Any, split: str) -> tuple[Path, bool]:
    ann = data_cfg.annotations
    if ann is None:
        raise DataError("recipe field data.annotations: a coco dataset needs the COCO json path "
                        "(one file split by data.val_ratio, or {train: ..., val: ...})")
    if isinstance(ann, dict):
        if split not in ann:
            raise DataError(f"recipe field data.annotations: no '{split}' entry (have {', '.join(ann)})")
        return Path(ann[split]), True
    return Path(ann), False


def build_instance_dataset(data_cfg: Any, split: str, *, in_channels: int, train: bool = False,
                           num_classes: int | None = None) -> InstanceDataset:
    """The ``split`` of a recipe's ``data`` section for an instance model.

    ``num_classes`` counts object classes (no background); by default ``len(data.classes)``, or the
    json's categories for COCO, or 1 for folders. ``train=True`` gives augmented ``data.image_size``
    crops repeated ``data.train_repeats`` times.
    """
    kind = data_cfg.kind
    if kind not in INSTANCE_KINDS:
        raise DataError(f"recipe field data.kind: {kind!r} has no instance masks; instance models take "
                        f"{', '.join(INSTANCE_KINDS)}")
    mean, std = default_mean_std(data_cfg, in_channels)
    ratios = {"val_ratio": data_cfg.val_ratio, "test_ratio": data_cfg.test_ratio, "split_seed": data_cfg.split_seed}
    if kind == "synthetic":
        from edgeseg.data.synthetic import SHAPE_KINDS

        n = num_classes or len(data_cfg.classes) or 3
        samples, names = _synthetic(data_cfg, split, in_channels, n), list(SHAPE_KINDS[:n])
    elif kind == "coco":
        from edgeseg.data.coco import coco_samples

        path, whole = _annotations(data_cfg, split)
        root = data_cfg.root if data_cfg.root is not None else path.parent
        samples, names = coco_samples(path, Path(root), split, in_channels, whole=whole, **ratios)
    else:
        from edgeseg.data.instance_folder import instance_folder, pennfudan

        if data_cfg.root is None:
            raise DataError(f"recipe field data.root: a {kind} dataset needs data.root")
        load = instance_folder if kind == "instance_folder" else pennfudan
        samples = load(Path(data_cfg.root), split, in_channels, **ratios)
        names = ["pedestrian"] if kind == "pennfudan" else ["object"]
    if data_cfg.classes:
        if kind == "coco" and len(data_cfg.classes) != len(names):
            raise DataError(f"recipe field data.classes: {len(data_cfg.classes)} names but the COCO json has "
                            f"{len(names)} categories {names}")
        names = list(data_cfg.classes)
    if num_classes is not None and num_classes != len(names):
        raise DataError(f"recipe field model.num_classes: {num_classes} but the {kind} data has {len(names)} object "
                        f"classes {names} (instance models count no background class)")
    transform = None
    if train:
        transform = InstanceTransform(size=data_cfg.size_hw, scale=tuple(data_cfg.scale), hflip=data_cfg.hflip,
                                      vflip=data_cfg.vflip, color_jitter=data_cfg.color_jitter)
    return InstanceDataset(samples, names, mean, std, transform, data_cfg.train_repeats if train else 1)
