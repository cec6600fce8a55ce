"""Class balancing: weights from the training masks, recorded with the run, used by the loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeseg.recipe import RecipeError, recipe_from_dict
from edgeseg.train.class_weights import compute_class_weights
from edgeseg.train.losses import FocalLoss, SegLoss
from tests.conftest import tiny_recipe_dict


def _masks() -> list[np.ndarray]:
    a = np.zeros((4, 4), np.int64)
    a[0] = 1  # image A: 12 px class 0, 4 px class 1
    b = np.zeros((4, 4), np.int64)
    b[1:3, :3] = 2  # image B: 8 px class 0, 6 px class 2, 2 px ignored
    b[3, :2] = 255
    return [a, b]


def test_median_frequency_follows_segnet():
    cw = compute_class_weights("median_frequency", _masks(), num_classes=4, ignore_index=255)
    # freq(c) = pixels of c / pixels of the images holding c: 20/30, 4/16, 6/14; median 6/14.
    med = 6 / 14
    assert cw.weights == pytest.approx([med / (20 / 30), med / (4 / 16), 1.0, 1.0])  # class 3 absent -> 1
    assert cw.pixels == [20, 4, 6, 0] and cw.images == 2 and cw.method == "median_frequency"


def test_inverse_sqrt_over_labelled_pixels():
    cw = compute_class_weights("inverse_sqrt", _masks(), num_classes=4, ignore_index=255)
    raw = np.array([20, 4, 6]) / 30.0
    raw = raw ** -0.5 / np.median(raw ** -0.5)
    assert cw.weights == pytest.approx([*raw, 1.0]) and max(cw.weights) == pytest.approx(cw.weights[1])


def test_given_weights_and_bad_specs():
    assert compute_class_weights([1, 2], [], num_classes=2, ignore_index=255).weights == [1.0, 2.0]
    with pytest.raises(RecipeError, match="expected 3 positive numbers"):
        compute_class_weights([1, 2], [], num_classes=3, ignore_index=255)
    with pytest.raises(RecipeError, match="one weight per class"):
        recipe_from_dict({"model": {"num_classes": 3}, "train": {"class_weights": [1.0, 2.0]}})
    with pytest.raises(RecipeError, match="train.class_weights"):
        recipe_from_dict({"train": {"class_weights": "median"}})


def test_focal_is_weighted_ce_at_gamma_zero_and_favours_rare_classes():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, 0, :4] = 255
    w = torch.tensor([0.5, 2.0, 1.0])
    ce = torch.nn.functional.cross_entropy(logits, target, weight=w, ignore_index=255)
    assert FocalLoss(0.0, 255, w)(logits, target).item() == pytest.approx(ce.item(), rel=1e-5)
    # Confident correct pixels contribute less under focal loss than under cross-entropy.
    sharp = torch.nn.functional.one_hot(torch.where(target == 255, 0, target), 3).permute(0, 3, 1, 2) * 3.0
    assert FocalLoss(2.0, 255)(sharp, target) < 0.2 * torch.nn.functional.cross_entropy(sharp, target, ignore_index=255)
    # A mistake on the rare (heavily weighted) class costs more than the same mistake on a common one.
    t = torch.zeros(1, 4, 4, dtype=torch.long)
    t[0, 0, 0] = 1
    wrong_rare = torch.zeros(1, 2, 4, 4)
    wrong_rare[:, 0] = 2.0  # predicts class 0 everywhere: wrong on the class-1 pixel
    loss = SegLoss("focal", 255, [1.0, 10.0])
    assert loss(wrong_rare, t) > 5 * SegLoss("focal", 255)(wrong_rare, t)


def test_training_records_and_uses_the_weights(tmp_path):
    from edgeseg.artifacts.checkpoint import read_checkpoint
    from edgeseg.data import build_dataset
    from edgeseg.tasks import get_task
    from edgeseg.models import get_model_info
    from edgeseg.train.losses import criterion_for
    from edgeseg.train.loop import _with_weights, train, training_class_weights

    tree = tiny_recipe_dict()
    tree["data"]["synthetic"].update(num_train=8, num_val=2, size=32)
    tree["data"]["image_size"] = 32
    tree["train"].update(class_weights="median_frequency", loss="focal+dice", epochs=1)
    recipe = recipe_from_dict(tree)
    train_set = build_dataset(recipe.data, "train", in_channels=3, num_classes=4)
    want = compute_class_weights("median_frequency", [m for _, m in train_set.samples], num_classes=4,
                                 ignore_index=255)
    assert len(set(np.round(want.weights, 6))) > 1  # the fixture is unbalanced

    got = training_class_weights(recipe, train_set)
    assert got.weights == pytest.approx(want.weights)
    loss = criterion_for(get_task(get_model_info("unet_test")), _with_weights(recipe, got)).loss
    assert loss.focal.class_weights.tolist() == pytest.approx(want.weights)
    assert loss.dice.class_weights.tolist() == pytest.approx(want.weights)

    train(recipe, tmp_path / "run")
    for name in ("model.pt", "last.pt"):
        stored = read_checkpoint(tmp_path / "run" / name)["class_weights"]
        assert stored["method"] == "median_frequency" and stored["weights"] == pytest.approx(want.weights, abs=1e-6)
        assert stored["pixels"] == want.pixels
    figures = json.loads((tmp_path / "run" / "train.json").read_text())["figures"]
    assert figures["class_weights"]["weights"] == pytest.approx(want.weights, abs=1e-6)
