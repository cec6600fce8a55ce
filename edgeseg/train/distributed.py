"""DDP plumbing: process group from torchrun's environment (gloo on CPU, nccl on CUDA), samplers."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from edgeseg.data.base import DataError


@dataclass
class DistContext:
    """Rank/world size and the few collective operations the loop needs (no-ops on one process)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world_size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def all_finite(self, loss: torch.Tensor) -> bool:
        """True when the loss is finite on every rank (so all ranks stop together)."""
        ok = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
        if self.world_size > 1:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item())

    def max_of(self, value: float) -> float:
        """The largest ``value`` over the ranks (so decisions read from a clock agree everywhere)."""
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def teardown(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def setup(device_cfg: str) -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistContext()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_cfg == "cuda" or (device_cfg == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    return DistContext(rank=rank, world_size=world, device=device)


def loader_factory(dataset: Dataset, batch_size: int, workers: int, seed: int,
                   ctx: DistContext, collate_fn: Callable[[list], object] | None = None) -> Callable[[int], DataLoader]:
    """A function epoch -> DataLoader whose shuffling depends only on (seed, epoch, rank); ``collate_fn``
    comes from the task (None: torch's default stacking)."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError("the training split is empty: training needs images (check data.root / data.val_ratio)")
    per_rank = max(1, min(batch_size // ctx.world_size if ctx.world_size > 1 else batch_size,
                          len(dataset) // ctx.world_size))  # type: ignore[arg-type]

    def make(epoch: int) -> DataLoader:
        if ctx.world_size > 1:
            sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                         seed=seed, drop_last=True)
            sampler.set_epoch(epoch)
        else:
            gen = torch.Generator().manual_seed(seed * 7919 + epoch)
            sampler = RandomSampler(dataset, generator=gen)
        gen_w = torch.Generator().manual_seed(seed * 104_729 + epoch * 31 + ctx.rank)
        return DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=workers, drop_last=True,
                          pin_memory=ctx.device.type == "cuda", generator=gen_w,
                          persistent_workers=False, collate_fn=collate_fn)

    return make
