"""PyTorch backend: a checkpoint (or a live model) on CPU or CUDA, optional fp16/channels_last/compile."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from edgeseg.artifacts import ModelMeta
from edgeseg.runtime.base import BackendError, TensorSpec
from edgeseg.tasks.base import by_name


class TorchBackend:
    """Runs an ``nn.Module`` in inference mode; numpy in, numpy out like every backend."""

    name: ClassVar[str] = "torch"

    def __init__(self, path: str | Path | None = None, *, device: str = "cpu", threads: int | None = None,
                 fp16: bool = False, channels_last: bool = False, compile: bool = False,
                 model: nn.Module | None = None, meta: ModelMeta | None = None,
                 trust_checkpoint: bool = False) -> None:
        """Open a checkpoint (``trust_checkpoint``: full unpickling, for files the user made himself) or
        wrap a live ``model``."""
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("torch backend: device 'cuda' requested but torch sees no CUDA GPU")
        if threads:
            torch.set_num_threads(threads)
        if model is None:
            from edgeseg.artifacts.checkpoint import load_checkpoint

            ckpt = load_checkpoint(path, device=device, trust=trust_checkpoint)
            model, meta = ckpt.model, ckpt.meta
        assert meta is not None, "a live model needs its ModelMeta"
        self.device = device
        self.threads = threads or torch.get_num_threads()
        self.meta = meta
        self.fp16 = fp16 and device.startswith("cuda")
        self.precision = "fp16" if self.fp16 else "fp32"
        self.channels_last = channels_last
        model = model.to(device).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = torch.compile(model) if compile else model
        self.inputs = [TensorSpec("input", ("batch", meta.in_channels, "height", "width"), "float32")]
        self.output_names = list(getattr(model, "output_names", ("logits",)))
        self.name_detail = f"torch-{device.split(':')[0]}" + ("-fp16" if self.fp16 else "")

    @classmethod
    def from_model(cls, model: nn.Module, meta: ModelMeta, device: str = "cpu") -> TorchBackend:
        """Wrap a live model (e.g. during training) without copying it."""
        return cls(model=model, meta=meta, device=device)

    @torch.inference_mode()
    def run_tensor(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run on a tensor already on the device; float32 outputs by name."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            out = self.model(x)
        return {k: v.float() for k, v in by_name(self.output_names, out).items()}

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        return {k: v.cpu().numpy() for k, v in self.run_tensor(t).items()}

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
