import torch

from edgeseg.train.losses import DiceLoss, SegLoss


def test_dice_perfect_and_ignore():
    target = torch.tensor([[[0, 1], [1, 255]]])
    logits = torch.full((1, 2, 2, 2), -20.0)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = logits[0, 1, 1, 0] = 20.0
    assert DiceLoss(255)(logits, target).item() < 1e-3
    assert SegLoss("ce+dice", 255)(logits, target).item() < 1e-3


def test_losses_decrease_when_prediction_improves():
    target = torch.randint(0, 3, (2, 8, 8))
    good = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 5
    bad = torch.zeros_like(good)
    for kind in ("ce", "dice", "ce+dice"):
        loss = SegLoss(kind, 255, [1.0, 2.0, 1.0])
        assert loss(good, target) < loss(bad, target)
