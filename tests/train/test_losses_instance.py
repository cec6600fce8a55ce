"""YOLACT loss: target assignment, finite terms with gradients, and a tiny model that learns synthetic instances."""

from __future__ import annotations

import math

import pytest
import torch

from edgeseg.train.losses_instance import YolactLoss, assign, giou, point_grid


def test_assignment_rules() -> None:
    centres, strides, levels = point_grid((128, 128), torch.device("cpu"))
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0],  # 40 px -> P3
                          [20.0, 20.0, 36.0, 36.0],  # smaller, overlapping the first -> wins shared points
                          [100.0, 100.0, 103.0, 103.0],  # 3 px: smaller than a stride, still gets its nearest point
                          [0.0, 0.0, 100.0, 120.0]])  # 120 px -> P4
    owner = assign(boxes, centres, strides, levels, size_ranges=[(0, 64), (64, 128), (128, math.inf)],
                   center_radius=2.5)
    for j in range(4):
        assert (owner == j).sum() >= 1
    assert levels[owner == 3].eq(1).all() and levels[owner == 0].eq(0).all()
    shared = (centres[:, 0] > 20) & (centres[:, 0] < 36) & (centres[:, 1] > 20) & (centres[:, 1] < 36) & (levels == 0)
    assert owner[shared].eq(1).all()
    assert (owner == 2).sum() == 1 and centres[owner == 2].tolist() == [[100.0, 100.0]]
    assert assign(boxes[:0], centres, strides, levels, size_ranges=[(0, 64), (64, 128), (128, math.inf)],
                  center_radius=2.5).eq(-1).all()


def test_giou() -> None:
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]])
    iou, g = giou(a, b)
    assert iou.tolist() == [1.0, 0.0] and g[0] == 1.0 and g[1] == pytest.approx(-1 / 3)


def _batch(n: int = 2) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    targets = []
    for i in range(n):
        masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
        masks[0, 8:20, 10:30] = 1
        masks[1, 30 + i:60, 30:50] = 1
        targets.append({"boxes": torch.tensor([[10.0, 8, 30, 20], [30, 30 + i, 50, 60]]),
                        "labels": torch.tensor([0, 1]), "masks": masks})
    targets[-1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                   "masks": torch.zeros(0, 64, 64, dtype=torch.uint8)}  # an image without objects
    return torch.randn(n, 3, 64, 64), targets


@pytest.mark.parametrize("cls_loss", ["quality_focal", "focal"])
def test_loss_terms_and_gradients(cls_loss: str) -> None:
    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model("yolact_test", num_classes=2, semantic_head=True).train()
    x, targets = _batch(3)
    loss_fn = YolactLoss(2, cls_loss=cls_loss)
    total, parts = loss_fn(model(x), targets)
    assert torch.isfinite(total) and set(parts) == {"cls", "box", "mask", "semantic", "positives"}
    assert all(parts[k] > 0 for k in ("cls", "box", "mask", "semantic"))
    total.backward()
    for name in ("head.cls.weight", "head.box.weight", "head.coef.weight", "protonet.out.weight", "semantic.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name
    named = dict(zip(("scores", "boxes", "coefs", "protos"), model.eval()(x)))
    total2, parts2 = loss_fn(named, targets)  # dict outputs, no semantic term
    assert "semantic" not in parts2 and torch.isfinite(total2)
    with pytest.raises(ValueError, match="cls_loss"):
        YolactLoss(2, cls_loss="ohem-typo")


@pytest.mark.parametrize("cls_loss", ["quality_focal", "focal"])
def test_loss_under_mixed_precision(cls_loss: str) -> None:
    """Half-precision heads (CUDA AMP; bfloat16 autocast stands in for it on CPU) give the fp32 loss."""
    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model("yolact_test", num_classes=2).train()
    x, targets = _batch(2)
    loss_fn = YolactLoss(2, cls_loss=cls_loss)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(x)
        assert outputs[0].dtype == torch.bfloat16
        total, parts = loss_fn(outputs, targets)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    assert model.get_parameter("head.cls.weight").grad.abs().sum() > 0
    reference, _ = loss_fn([o.detach().float() for o in outputs], targets)
    assert float(total) == pytest.approx(float(reference), rel=1e-5)


def test_tiny_model_learns_synthetic_instances() -> None:
    """yolact_test on 64 px synthetic discs: mask AP50 on unseen images well above chance in ~250 steps."""
    from torch.utils.data import DataLoader

    from edgeseg.data.instances import build_instance_dataset, collate_instances
    from edgeseg.metrics.instance import InstanceEvaluator
    from edgeseg.models import create_model
    from edgeseg.models.yolact import OUTPUT_NAMES, postprocess
    from edgeseg.recipe import recipe_from_dict

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: a second thread only adds synchronisation on a busy machine
    try:
        torch.manual_seed(0)
        data = recipe_from_dict({"data": {"kind": "synthetic", "image_size": 64, "scale": [1, 1], "color_jitter": 0,
                                          "synthetic": {"num_train": 64, "num_val": 16, "size": 64,
                                                        "max_shapes": 3}}}).data
        train = build_instance_dataset(data, "train", in_channels=3, train=True, num_classes=1)
        val = build_instance_dataset(data, "val", in_channels=3, num_classes=1)
        model = create_model("yolact_test", num_classes=1)
        loss_fn = YolactLoss(1)
        steps = 250
        opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=steps, pct_start=0.1)
        step = 0
        while step < steps:
            for x, targets in DataLoader(train, batch_size=8, shuffle=True, collate_fn=collate_instances):
                model.train()
                total, _ = loss_fn(model(x), targets)
                opt.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                if step == steps:
                    break
        ev = InstanceEvaluator(val.class_names)
        model.eval()
        with torch.no_grad():
            for i in range(len(val)):
                x, t = val[i]
                det = postprocess(dict(zip(OUTPUT_NAMES, model(x[None]))), input_hw=(64, 64), image_hw=(64, 64))[0]
                ev.update(val.image_ids[i], det, {k: v.numpy() for k, v in t.items()})
        metrics = ev.compute()
    finally:
        torch.set_num_threads(threads)
    assert metrics["num_images"] == 16
    assert metrics["mask_ap50"] >= 0.5, metrics  # untrained: ~0.0
