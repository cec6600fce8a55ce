"""FCN-8s family specifics."""

from __future__ import annotations

import pytest
import torch

from edgeseg.models import create_model


def test_fcn8s_layout() -> None:
    with torch.device("meta"):
        model = create_model("fcn8s", num_classes=21, in_channels=3)
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13 and convs[-1].out_channels == 512
    assert model.stride == 32
    assert [u.up.stride for u in (model.up_fr, model.up_pool4, model.up_final)] == [(2, 2), (2, 2), (8, 8)]
    assert (model.score_pool3.in_channels, model.score_pool4.in_channels) == (256, 512)


def test_fcn_needs_five_stages() -> None:
    with pytest.raises(ValueError, match="5 stages"):
        create_model("fcn_test", num_classes=2, widths=(4, 8, 8, 8), depths=(1, 1, 1, 1))


def test_fcn_skips_contribute() -> None:
    model = create_model("fcn_test", num_classes=2).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
        torch.nn.init.zeros_(model.score_pool3.weight)
        torch.nn.init.zeros_(model.score_pool3.bias)
        assert not torch.allclose(model(x), y)
