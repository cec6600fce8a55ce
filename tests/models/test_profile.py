"""Parameter / MAC counting and the model table."""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models import create_model, list_models
from edgeseg.models.profile import count_macs, count_params, model_table


def test_count_macs_of_a_conv() -> None:
    model = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(model, (16, 16), in_channels=3) == 3 * 8 * 9 * 16 * 16
    assert count_params(model) == 3 * 8 * 9 + 8


def test_count_macs_meta_equals_real_and_leaves_model_untouched() -> None:
    model = create_model("segnet_test", num_classes=2).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.device("meta"):
        meta_model = create_model("segnet_test", num_classes=2)
    assert count_macs(model, (32, 32)) == count_macs(meta_model, (32, 32)) > 0
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_model_table_rows() -> None:
    rows = model_table((256, 256))
    assert [r["name"] for r in rows] == list_models()
    by_name = {r["name"]: r for r in rows}
    assert by_name["unet"]["params"] > 30e6 and by_name["unet"]["gmacs"] > 40
    assert {"name", "family", "task", "params", "gmacs"} <= set(rows[0])
