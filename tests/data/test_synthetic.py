"""Synthetic shapes: deterministic, disjoint splits, semantic masks consistent with instances."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data import DataError, build_dataset
from edgeseg.data.synthetic import SHAPE_KINDS, class_names, generate
from edgeseg.recipe import recipe_from_dict
from tests.conftest import tiny_recipe_dict


def _data(**synthetic):
    d = tiny_recipe_dict()
    d["data"]["synthetic"].update(synthetic)
    return recipe_from_dict(d).data


def test_generation_is_deterministic_and_splits_differ():
    a = generate(0, "train", 3, size=48, num_classes=4, max_shapes=5)
    b = generate(0, "train", 3, size=48, num_classes=4, max_shapes=5)
    c = generate(0, "val", 3, size=48, num_classes=4, max_shapes=5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (48, 48, 3) and a.image.dtype == np.uint8
    assert set(np.unique(a.mask)) <= {0, 1, 2, 3}


@pytest.mark.parametrize("index", range(6))
def test_instances_match_semantic_mask(index):
    s = generate(1, "train", index, size=64, num_classes=7, max_shapes=6)
    assert s.instance_masks.shape[0] == len(s.instance_classes)
    for m, cls in zip(s.instance_masks, s.instance_classes):
        assert (s.mask[m] == cls).all()
    if len(s.instance_masks):
        assert not (s.instance_masks.sum(0) > 1).any(), "visible instance masks must not overlap"


def test_dataset_items_and_lengths():
    data = _data(num_train=5, num_val=3, size=32)
    train = build_dataset(data, "train", in_channels=3, train=True, num_classes=4)
    val = build_dataset(data, "val", in_channels=1, num_classes=4)
    assert len(val) == 3
    image, mask = val[0]
    assert image.shape == (1, 32, 32) and str(image.dtype) == "torch.float32"
    assert mask.shape == (32, 32) and str(mask.dtype) == "torch.int64"
    x, y = train[0]
    assert x.shape == (3, 64, 64) and y.shape == (64, 64)  # image_size 64 crops, padded with ignore
    assert 255 in y.unique().tolist()
    masks, classes = val.instances(0)
    assert masks.shape[1:] == (32, 32) and len(masks) == len(classes)


def test_class_names_and_limits():
    assert class_names(3) == ["background", *SHAPE_KINDS[:2]]
    with pytest.raises(DataError, match="model.num_classes"):
        class_names(len(SHAPE_KINDS) + 2)


def test_empty_split_is_a_clear_error():
    with pytest.raises(DataError, match="data.synthetic.num_test"):
        build_dataset(_data(), "test", in_channels=3)
