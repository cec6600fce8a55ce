"""Pruning steps towards a target, each measured: params, MACs, and where asked latency and accuracy.

Targets: a channel ratio (one step), a MACs fraction (iterative steps, MACs re-counted after each) or
a latency (iterative steps, each candidate exported to ONNX and timed on ONNX Runtime on this machine).
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeseg.compress.prune_config import PruneError, option_name, resolve_round_to
from edgeseg.compress.prune_graph import aligned_step, make_pruner
from edgeseg.models.profile import count_macs, count_params
from edgeseg.recipe import PruneCfg

Batches = list[tuple[torch.Tensor, Any]]
LATENCY_KW = {"warmup": 3, "min_runs": 10, "min_time_s": 1.0, "max_time_s": 30.0}  # per candidate timed
LossFn = Callable[[Any, Any], torch.Tensor]


def onnx_latency_ms(model: nn.Module, meta: Any, hw: tuple[int, int], threads: int = 2,
                    **latency_kw: Any) -> float:
    """Median batch-1 latency of ``model`` exported to ONNX (static shape ``hw``), on ONNX Runtime CPU
    (measured for ``LATENCY_KW``, updated by ``latency_kw``)."""
    from edgeseg.artifacts.onnx_export import export_onnx
    from edgeseg.bench.latency import measure_latency
    from edgeseg.runtime.ort_rt import OrtBackend

    kw = {**LATENCY_KW, **latency_kw}
    with tempfile.TemporaryDirectory(prefix="edgeseg-prune-") as tmp:
        path = Path(tmp) / "candidate.onnx"
        export_onnx(model.eval(), meta, path, hw=hw, dynamic=False)
        backend = OrtBackend(path, device="cpu", threads=threads)
        x = np.random.default_rng(0).standard_normal((1, meta.in_channels, *hw)).astype(np.float32)
        return float(measure_latency(lambda: backend(x), sync=backend.synchronize, **kw).p50_ms)


@dataclass
class Probe:
    """What each pruning step is measured with: input size, metadata, optional latency and accuracy."""

    meta: Any
    hw: tuple[int, int]
    latency: Callable[[nn.Module], float] | None = None
    accuracy: Callable[[nn.Module], dict[str, Any]] | None = None

    def __call__(self, model: nn.Module, step: int, ratio: float, latency: bool = True) -> dict[str, Any]:
        row: dict[str, Any] = {"step": step, "ratio": round(ratio, 4), "params": count_params(model),
                               "macs": count_macs(model, self.hw)}
        if self.latency is not None and latency:
            row["latency_ms"] = self.latency(model)
        if self.accuracy is not None:
            row["val"] = self.accuracy(model)
        return row


def taylor_gradients(model: nn.Module, batches: Batches, loss_fn: LossFn) -> None:
    """Accumulate training-loss gradients of ``batches`` (what Taylor importance ranks channels by)."""
    model.train()
    model.zero_grad(set_to_none=True)
    for images, targets in batches:
        loss_fn(model(images), targets).backward()
    model.eval()


def prune_model(model: nn.Module, cfg: PruneCfg, probe: Probe, *, taylor_batches: Batches | None = None,
                loss_fn: LossFn | None = None, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Prune ``model`` in place to ``cfg``'s ratio or target; returns one measured row per step (0 = before).

    Every row has params, MACs and (with a probe that measures it) validation accuracy; latency is
    measured before, after the last step, and after every step when it is the target. A latency target
    the unpruned model already meets leaves it untouched (one row). Raises :class:`PruneError` when no
    channel can be removed (before any measurement but a latency target's start) and when a target is not
    reached at ``cfg.max_ratio``.
    """
    if cfg.importance == "taylor" and not (taylor_batches and loss_fn):
        raise PruneError("importance 'taylor' needs training batches and a loss for its gradients")
    model.eval()
    if cfg.mode == "ratio":
        return _prune_once(model, cfg, probe, taylor_batches, loss_fn, log)
    if cfg.mode == "latency":  # a start that meets it needs no pruning, whatever could be pruned
        if probe.latency is None:
            raise PruneError("a latency target needs a probe that measures latency")
        start_ms = probe.latency(model)
        if start_ms <= cfg.target_latency_ms:
            log(f"target {cfg.target_latency_ms:g} ms already met by the start ({start_ms:.2f} ms)")
            return [{**probe(model, 0, 0.0, latency=False), "latency_ms": start_ms}]
    check_prunable(model, cfg, probe.hw)
    rows = [probe(model, 0, 0.0, latency=cfg.mode != "latency")]
    if cfg.mode == "latency":
        rows[0]["latency_ms"] = start_ms
    pruner = make_pruner(model, cfg, torch.randn(1, model.in_channels, *probe.hw))
    for step in range(1, cfg.steps + 1):
        _step(model, pruner, cfg, taylor_batches, loss_fn)
        rows.append(probe(model, step, cfg.max_ratio * step / cfg.steps, latency=cfg.mode == "latency"))
        log(_step_line(rows[-1], rows[0], cfg.steps))
        if _reached(cfg, rows[-1], rows[0]):
            break
    else:
        raise PruneError(_not_reached(cfg, rows[-1], rows[0]))
    if probe.latency is not None and "latency_ms" not in rows[-1]:
        rows[-1]["latency_ms"] = probe.latency(model)
    return rows


def _prune_once(model: nn.Module, cfg: PruneCfg, probe: Probe, taylor_batches: Batches | None,
                loss_fn: LossFn | None, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """A ratio: one step, checked to have removed something before the start (kept aside) and the pruned
    model are measured."""
    start = copy.deepcopy(model)
    macs = count_macs(model, probe.hw)
    _step(model, make_pruner(model, cfg, torch.randn(1, model.in_channels, *probe.hw)), cfg, taylor_batches, loss_fn)
    if count_macs(model, probe.hw) >= macs:
        raise PruneError(nothing_to_prune(model, cfg))
    rows = [probe(start, 0, 0.0), probe(model, 1, float(cfg.ratio))]
    log(_step_line(rows[-1], rows[0], 1))
    return rows


def _step(model: nn.Module, pruner: Any, cfg: PruneCfg, taylor_batches: Batches | None, loss_fn: LossFn | None) -> None:
    if cfg.importance == "taylor":
        taylor_gradients(model, taylor_batches or [], loss_fn)  # type: ignore[arg-type]
    with torch.no_grad() if cfg.importance != "taylor" else contextlib.nullcontext():
        aligned_step(pruner, resolve_round_to(cfg))
    model.zero_grad(set_to_none=True)


def _step_line(row: dict[str, Any], start: dict[str, Any], total: int) -> str:
    lat = f", {row['latency_ms']:.2f} ms" if "latency_ms" in row else ""
    return f"prune step {row['step']}/{total}: {row['params']} params, {row['macs'] / start['macs']:.1%} of the MACs{lat}"


def _reached(cfg: PruneCfg, row: dict[str, Any], start: dict[str, Any]) -> bool:
    if cfg.mode == "macs":
        return row["macs"] <= cfg.target_macs * start["macs"]
    return row["latency_ms"] <= cfg.target_latency_ms


def _not_reached(cfg: PruneCfg, last: dict[str, Any], start: dict[str, Any]) -> str:
    what = f"{cfg.target_macs:.0%} of the MACs" if cfg.mode == "macs" else f"{cfg.target_latency_ms:g} ms"
    lat = (f", {last['latency_ms']:.2f} ms against {start['latency_ms']:.2f} ms unpruned"
           if "latency_ms" in last else "")
    return (f"target {what} not reached at max_ratio {cfg.max_ratio} (last step: "
            f"{last['macs'] / start['macs']:.1%} of the MACs{lat}); nothing written")


def check_prunable(model: nn.Module, cfg: PruneCfg, hw: tuple[int, int]) -> None:
    """Refuse before any measurement a request under which no channel can go: a copy of ``model`` is
    pruned once at the largest ratio ``cfg`` allows (magnitude ranking: what may go does not depend on it)."""
    trial = copy.deepcopy(model).eval()
    macs = count_macs(trial, hw)
    ratio = cfg.ratio if cfg.mode == "ratio" else cfg.max_ratio
    one = cfg.model_copy(update={"ratio": ratio, "target_macs": None, "target_latency_ms": None,
                                 "importance": "l2", "round_to": resolve_round_to(cfg)})
    pruner = make_pruner(trial, one, torch.randn(1, model.in_channels, *hw))
    with torch.no_grad():
        aligned_step(pruner, resolve_round_to(one))
    if count_macs(trial, hw) >= macs:
        raise PruneError(nothing_to_prune(model, cfg))


def nothing_to_prune(model: nn.Module, cfg: PruneCfg) -> str:
    """The one-line reason no channel could be removed, naming the options that decide it."""
    given = [f"{option_name('round_to')} {resolve_round_to(cfg)}"]
    if cfg.keep:
        given.append(f"{option_name('keep')} " + " ".join(repr(k) for k in cfg.keep))
    return (f"nothing to prune in {type(model).__name__} with {' and '.join(given)}: every convolution is kept, "
            "feeds an output, or is narrower than the channel multiple; nothing written")


__all__ = ["Probe", "check_prunable", "nothing_to_prune", "onnx_latency_ms", "prune_model", "taylor_gradients"]
