"""SegNet specifics: the two unpooling forms must agree, ties included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgeseg.models import create_model, segnet
from edgeseg.models.segnet import mask_unpool, max_pool_mask


def _index_unpool(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    _, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    return F.max_unpool2d(values, idx, 2, 2)


def test_mask_unpool_equals_index_unpool_on_tie_free_input() -> None:
    x = torch.randn(2, 3, 8, 12)
    values = torch.randn(2, 3, 4, 6)
    pooled, mask = max_pool_mask(x)
    torch.testing.assert_close(pooled, F.max_pool2d(x, 2, 2), rtol=0, atol=0)
    assert torch.equal(mask.sum((2, 3)), torch.full((2, 3), 4 * 6.0))  # one mark per window
    assert torch.equal(mask_unpool(values, mask), _index_unpool(x, values))


def test_ties_keep_the_first_max_in_row_major_order_like_indices() -> None:
    """Documented tie rule: one mark per window, at the first maximum in row-major order.

    Ties are common in real nets (ReLU zeros); the naive mask ``x == upsample(pooled)`` would
    mark every tied position and copy the value into each of them, unlike index unpooling.
    """
    assert "first maximum in row-major" in (max_pool_mask.__doc__ or "")
    x = torch.tensor([[[[0., 0., 1., 5.],
                        [0., 0., 5., 5.],
                        [2., 3., 7., 1.],
                        [3., 3., 7., 7.]]]])
    values = torch.tensor([[[[10., 20.], [30., 40.]]]])
    _, mask = max_pool_mask(x)
    expected = torch.tensor([[[[1., 0., 0., 1.],
                               [0., 0., 0., 0.],
                               [0., 1., 1., 0.],
                               [0., 0., 0., 0.]]]])
    assert torch.equal(mask, expected)
    assert torch.equal(mask_unpool(values, mask), _index_unpool(x, values))
    naive = (x == F.interpolate(F.max_pool2d(x, 2, 2), scale_factor=2.0)).float()
    assert naive.sum() > mask.sum()  # the naive form would differ on exactly these ties

    relu_like = torch.randn(1, 4, 16, 16).clamp(min=0)  # many all-zero windows
    values = torch.randn(1, 4, 8, 8)
    assert torch.equal(mask_unpool(values, max_pool_mask(relu_like)[1]), _index_unpool(relu_like, values))


@pytest.mark.parametrize("name", ["segnet_test", "segnet-lite"])
def test_compare_and_indices_models_agree(name: str) -> None:
    torch.manual_seed(0)
    by_indices = create_model(name, num_classes=3, in_channels=2, unpool="indices")
    by_compare = create_model(name, num_classes=3, in_channels=2, unpool="compare")
    by_compare.load_state_dict(by_indices.state_dict())
    by_arith = create_model(name, num_classes=3, in_channels=2, unpool="arith")  # the form ExecuTorch ships
    by_arith.load_state_dict(by_indices.state_dict())
    x0 = torch.randn(1, 2, 32, 64)
    with torch.no_grad():  # eval mode: post-ReLU zero ties galore
        assert torch.equal(by_indices.eval()(x0), by_arith.eval()(x0))
    x = torch.randn(2, 2, 32, 64)
    for train in (True, False):  # train mode: batch-stat BN; eval mode: post-ReLU zero ties galore
        by_indices.train(train), by_compare.train(train)
        with torch.no_grad():
            assert torch.equal(by_indices(x), by_compare(x))
    by_indices.train(), by_compare.train()
    by_indices(x).square().sum().backward()
    by_compare(x).square().sum().backward()
    for (n, a), b in zip(by_indices.named_parameters(), by_compare.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=n)


def test_segnet_vgg16_layout() -> None:
    with torch.device("meta"):
        model = create_model("segnet", num_classes=2, in_channels=3)
    enc = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in enc] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    dec = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(dec) == 12 and model.stride == 32


def test_width_mult_and_bad_unpool() -> None:
    model = create_model("segnet_test", num_classes=2, widths=(64, 128), width_mult=0.25)
    assert model.encoder[1][0][0].out_channels == 32
    with pytest.raises(ValueError, match="unpool must be one of"):
        create_model("segnet_test", num_classes=2, unpool="scatter")
    assert segnet.UNPOOL_MODES == ("indices", "compare", "arith")


def test_export_form_is_a_compare_twin_with_identical_outputs() -> None:
    from edgeseg.models.shapes import layer_shapes

    model = create_model("segnet_test", num_classes=3, in_channels=1).eval()
    form = model.export_form()
    assert form is not model and form.unpool == "compare" and form.config["unpool"] == "compare"
    assert model.unpool == "indices" and layer_shapes(form) == layer_shapes(model)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(form(x), model(x))
    assert form.export_form() is form
    with pytest.raises(ValueError, match="unpool must be one of"):
        model.with_unpool("bogus")
