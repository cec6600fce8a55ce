"""Shared checks every registered semantic model must pass (the base tester of the families)."""

from __future__ import annotations

import pytest
import torch

from edgeseg.models import create_model, get_model_info, list_models
from edgeseg.models.registry import ModelArgsError
from edgeseg.models.base import SegModel

ALL = list_models(task="semantic", include_test=True)
# Real forward/backward passes only for the tiny and lite variants; full ones are checked on meta.
CHEAP = [n for n in ALL if n.endswith("_test") or n.endswith("-lite")]


def _size(name: str) -> tuple[int, int]:
    s = get_model_info(name).stride
    return max(32, 2 * s), max(32, 3 * s)  # non-square on purpose


def test_families_registered() -> None:
    for name in ["unet", "unet-lite", "unet_test", "segnet", "segnet-lite", "segnet_test",
                 "fcn8s", "fcn-lite", "fcn_test"]:
        assert name in ALL


@pytest.mark.parametrize("name", ALL)
def test_full_size_shapes_on_meta(name: str) -> None:
    info = get_model_info(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=3, in_channels=5).eval()
        y = model(torch.empty(1, 5, *info.input_size))
    assert isinstance(model, SegModel)
    assert model.stride == info.stride
    assert tuple(y.shape) == (1, 3, *info.input_size)
    assert model.config["name"] == name and model.config["num_classes"] == 3


@pytest.mark.parametrize("in_channels", [1, 5])
@pytest.mark.parametrize("name", CHEAP)
def test_forward_shape(name: str, in_channels: int) -> None:
    model = create_model(name, num_classes=3, in_channels=in_channels).eval()
    h, w = _size(name)
    with torch.no_grad():
        y = model(torch.randn(1, in_channels, h, w))
    assert y.shape == (1, 3, h, w)
    assert torch.isfinite(y).all()
    assert model.predict(torch.randn(1, in_channels, h, w)).shape == (1, h, w)


@pytest.mark.parametrize("name", CHEAP)
def test_backward_reaches_every_parameter(name: str) -> None:
    model = create_model(name, num_classes=2, in_channels=3).train()
    model(torch.randn(1, 3, *_size(name))).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("name", CHEAP)
def test_bad_input_raises_clear_errors(name: str) -> None:
    model = create_model(name, num_classes=2, in_channels=3).eval()
    s = model.stride
    h, w = _size(name)
    with pytest.raises(ValueError, match=f"multiples of {s}"):
        model(torch.randn(1, 3, h + 2, w))
    with pytest.raises(ValueError, match="expected 3 input channels, got 4"):
        model(torch.randn(1, 4, h, w))
    with pytest.raises(ValueError, match="N x C x H x W"):
        model(torch.randn(3, h, w))


@pytest.mark.parametrize("name", CHEAP)
def test_config_rebuilds_same_model(name: str) -> None:
    model = create_model(name, num_classes=4, in_channels=1)
    cfg = dict(model.config)
    rebuilt = create_model(cfg.pop("name"), **cfg)
    rebuilt.load_state_dict(model.state_dict())  # strict: same keys and shapes
    assert rebuilt.config == model.config


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ModelArgsError, match="bad constructor arguments"):
        create_model("unet_test", num_classes=2, no_such_arg=1)
    with pytest.raises(ValueError, match="upsample must be one of"):
        create_model("unet_test", num_classes=2, upsample="cubic")
    with pytest.raises(ValueError, match="num_classes"):
        create_model("fcn_test", num_classes=0)
