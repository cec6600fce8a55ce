import math

import numpy as np
import pytest

from edgeseg.metrics import ConfusionMatrix


def test_hand_computed_two_classes():
    target = np.array([[0, 0, 1], [1, 1, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 0]])
    cm = ConfusionMatrix(2, ignore_index=255)
    cm.update(pred, target)
    m = cm.compute(["a", "b"])
    # counted pixels: 5; class0: TP1 FP1 FN1 ; class1: TP2 FP1 FN1
    assert m["pixels"] == 5
    assert m["pixel_accuracy"] == pytest.approx(3 / 5)
    assert m["iou"]["a"] == pytest.approx(1 / 3)
    assert m["iou"]["b"] == pytest.approx(2 / 4)
    assert m["dice"]["a"] == pytest.approx(2 / 4)
    assert m["dice"]["b"] == pytest.approx(4 / 6)
    assert m["miou"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert m["mean_dice"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_absent_class_is_excluded_from_mean():
    cm = ConfusionMatrix(3, ignore_index=None)
    cm.update(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]))
    m = cm.compute()
    assert m["iou"]["class2"] is None and m["dice"]["class2"] is None
    assert m["miou"] == pytest.approx(1.0) and m["mean_dice"] == pytest.approx(1.0)


def test_class_only_predicted_counts_as_zero():
    cm = ConfusionMatrix(3, ignore_index=None)
    cm.update(np.array([0, 2]), np.array([0, 0]))
    m = cm.compute()
    assert m["iou"]["class2"] == 0.0 and m["iou"]["class1"] is None
    assert m["miou"] == pytest.approx((0.5 + 0.0) / 2)


def test_merge_equals_single_update_and_errors():
    a, b, whole = ConfusionMatrix(2), ConfusionMatrix(2), ConfusionMatrix(2)
    p, t = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    a.update(p[:2], t[:2]); b.update(p[2:], t[2:]); whole.update(p, t)
    a.merge(b)
    assert (a.matrix == whole.matrix).all()
    with pytest.raises(ValueError, match="outside"):
        whole.update(np.array([0]), np.array([7]))
    with pytest.raises(ValueError, match="differ"):
        whole.update(np.array([0, 1]), np.array([0]))


def test_all_ignored_gives_nan():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 1]), np.array([255, 255]))
    assert math.isnan(cm.compute()["miou"])
