"""Export fixtures: tiny checkpoints with data-fitted weights, exported once per module."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import make_checkpoint

QUICK_LATENCY = {"warmup": 1, "min_runs": 3, "min_time_s": 0.0, "max_time_s": 5.0}


def fitted_checkpoint(path: Path, model: str = "unet_test", steps: int = 150, **kwargs: object) -> Path:
    """A ``make_checkpoint`` checkpoint briefly fitted to its synthetic training split.

    Random-init logits are near ties everywhere; a few optimiser steps give separated logits, so INT8
    agreement and mIoU figures mean something.
    """
    from edgeseg.data import build_dataset
    from edgeseg.recipe import recipe_from_dict
    from edgeseg.artifacts.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

    make_checkpoint(path, model=model, **kwargs)
    ckpt = load_checkpoint(path)
    data = build_dataset(recipe_from_dict(ckpt.meta.recipe).data, "train", in_channels=ckpt.meta.in_channels,
                         train=False, num_classes=ckpt.meta.num_classes)
    images = torch.stack([torch.as_tensor(data[i][0]) for i in range(len(data))])
    masks = torch.stack([torch.as_tensor(data[i][1]) for i in range(len(data))]).long()
    net = ckpt.model.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the same weights whatever thread count an earlier test left behind
    try:
        for _ in range(steps):
            idx = torch.randint(0, len(images), (4,))
            loss = torch.nn.functional.cross_entropy(net(images[idx]), masks[idx], ignore_index=255)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    state = read_checkpoint(path)
    extra = {k: v for k, v in state.items() if k not in ("format", "version", "model_config", "model_state", "meta")}
    return save_checkpoint(path, net.eval(), ckpt.meta, **extra)


@pytest.fixture
def quick_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short latency measurements for the INT8 policy (tiny models; the decision logic is tested apart)."""
    monkeypatch.setattr("edgeseg.export.onnx2int8.LATENCY_KW", QUICK_LATENCY)
    monkeypatch.setattr("edgeseg.export.onnx2int8.LATENCY_ROUNDS", 1)
