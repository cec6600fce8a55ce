"""Structured (channel) pruning over Torch-Pruning's dependency graph, then fine-tuning.

Torch-Pruning's ``BasePruner`` removes whole channels and shrinks every coupled layer with them (U-Net
skip concatenations, FCN score fusions). Two couplings it cannot see are handled here:

* SegNet's unpooling ties decoder channel c to encoder channel c through integer indices (no autograd
  edge): the model is traced with ``trace_unpool_coupling`` on, which adds a zero-valued elementwise
  edge between the two, so both sides lose the same channels.
* Class-score layers (every conv producing ``num_classes`` channels: heads, FCN score/upsampling
  layers) are ignored, so the output keeps its classes.

Targets: a channel ratio (one step), a MACs fraction (iterative steps, MACs re-counted after each) or
a latency (iterative steps, each candidate exported to ONNX and timed on ONNX Runtime on this machine).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeseg.errors import UserError
from edgeseg.models.profile import count_macs, count_params

IMPORTANCES = ("l1", "l2", "bn", "taylor")


class PruneError(UserError, ValueError):
    """A pruning request that cannot be done; the message names the option and what was expected."""


@dataclass
class PruneConfig:
    """How to prune: exactly one of ``ratio``, ``target_macs``, ``target_latency_ms``.

    Attributes:
        ratio: Fraction of channels removed per prunable layer group (0.5 halves the widths).
        target_macs: Keep at most this fraction of the model's MACs (iterative steps).
        target_latency_ms: Reach at most this batch-1 latency on ONNX Runtime CPU here (iterative steps).
        importance: l1 | l2 (group weight magnitude), bn (BatchNorm scale) or taylor (first-order, from
            gradients of the training loss on ``taylor_batches`` training batches).
        global_pruning: Rank channels across layers instead of the same ratio in every layer.
        round_to: Kept channel counts of every pruned convolution are multiples of this (SIMD-friendly;
            unaligned counts run slower), or ``"auto"``: the channel block of ONNX Runtime's CPU kernels on
            this machine (:func:`ort_cpu_block`: 16 with AVX-512, 8 otherwise). A layer narrower than
            ``round_to`` is left unpruned. Default (None): ``auto`` for a latency target (it is measured
            on ONNX Runtime here, so this CPU's block is what counts), 8 otherwise (portable: ARM NEON /
            XNNPACK and AVX2 work in 4/8-float vectors, TensorRT aligns FP16 channels to 8).
        keep: Layer-name patterns (``fnmatch``, a name also matches its sub-layers: ``decoder.0`` keeps
            ``decoder.0.0.0.0``) whose convolutions keep their output channels, and with them every layer
            coupled to them (Torch-Pruning prunes a coupled group together or not at all).
        max_ratio: Most any layer group may lose (targets only).
        steps: Iterative steps towards ``max_ratio`` (targets only); finer steps land closer to the target.
        taylor_batches: Training batches whose gradients feed the Taylor importance.
        finetune_epochs: Epochs of the normal training loop after pruning (0: none).
        finetune_lr: Learning rate for fine-tuning (default: the recipe's).
        distill: Add logit distillation from the unpruned model while fine-tuning.
        distill_weight: Weight of the distillation term.
        distill_temperature: Softmax temperature of the distillation term.
        threads: ONNX Runtime threads for latency measurements.
    """

    ratio: float | None = None
    target_macs: float | None = None
    target_latency_ms: float | None = None
    importance: str = "l2"
    global_pruning: bool = False
    round_to: int | str | None = None
    keep: list[str] = field(default_factory=list)
    max_ratio: float = 0.9
    steps: int = 18
    taylor_batches: int = 4
    finetune_epochs: int = 0
    finetune_lr: float | None = None
    distill: bool = False
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    threads: int = 2

    def __post_init__(self) -> None:
        given = [n for n in ("ratio", "target_macs", "target_latency_ms") if getattr(self, n) is not None]
        if len(given) != 1:
            raise PruneError(f"give exactly one of ratio, target_macs, target_latency_ms (got {given or 'none'})")
        for name in ("ratio", "target_macs", "max_ratio"):
            v = getattr(self, name)
            if v is not None and not 0.0 < v < 1.0:
                raise PruneError(f"{name}: expected a fraction between 0 and 1, got {v}")
        if self.target_latency_ms is not None and self.target_latency_ms <= 0:
            raise PruneError(f"target_latency_ms: expected a positive number of milliseconds, got "
                             f"{self.target_latency_ms}")
        if self.importance not in IMPORTANCES:
            raise PruneError(f"importance: expected one of {', '.join(IMPORTANCES)}, got {self.importance!r}")
        if self.round_to is None:
            self.round_to = "auto" if self.target_latency_ms is not None else 8
        self.round_to = parse_round_to(self.round_to)
        if isinstance(self.keep, str):
            self.keep = [self.keep]
        for pattern in self.keep:
            if not isinstance(pattern, str) or not pattern.strip():
                raise PruneError(f"keep: expected layer-name patterns like decoder.0 or 'encoder.0.*', got {pattern!r}")
        if self.steps < 1 or self.finetune_epochs < 0:
            raise PruneError("steps must be >= 1, finetune_epochs >= 0")

    @property
    def mode(self) -> str:
        return "ratio" if self.ratio is not None else "macs" if self.target_macs is not None else "latency"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ort_cpu_block() -> int:
    """Channel block of ONNX Runtime's NCHWc CPU kernels on this machine: 16 with AVX-512F, else 8.

    MLAS (ORT's CPU kernels) lays convolutions out as NCHWc with this block (``MlasNchwcGetBlockSize``:
    16 on AVX-512F, 8 on AVX/AVX2) and pads channel counts up to it, so on this CPU a width that is not a
    multiple of the block costs as much as the next multiple. Read from the ``avx512f`` CPU flag in
    ``/proc/cpuinfo``; where that file is missing (not Linux) the answer is 8.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 8
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith(("flags", "Features"))), [])
    return 16 if "avx512f" in flags else 8


def parse_round_to(value: int | str) -> int:
    """``round_to`` as an int: a positive integer, or ``"auto"`` (:func:`ort_cpu_block`)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return ort_cpu_block()
        if not text.isdigit():
            raise PruneError(f"round_to (--round-to): expected a positive integer or 'auto', got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PruneError(f"round_to (--round-to): expected a positive integer or 'auto', got {value!r}")
    return value


def parse_latency(text: str) -> float:
    """``"40ms"``, ``"40"`` (ms) or ``"0.04s"`` -> milliseconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*", text)
    if not m:
        raise PruneError(f"--target-latency {text!r}: expected milliseconds like 40ms or seconds like 0.04s")
    value = float(m.group(1))
    return value * 1000.0 if m.group(2) == "s" else value


def make_importance(name: str) -> Any:
    """Torch-Pruning importance criterion for ``name`` (see :data:`IMPORTANCES`)."""
    import torch_pruning as tp

    if name in ("l1", "l2"):
        return tp.importance.GroupMagnitudeImportance(p=1 if name == "l1" else 2)
    if name == "bn":
        return tp.importance.BNScaleImportance()
    return tp.importance.GroupTaylorImportance()


def output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Convs whose outputs reach a model output without passing another conv (found on the autograd graph).

    These produce channels with a fixed meaning (class scores, box sides, mask coefficients and
    prototypes), whatever the family.
    """
    by_weight = {id(m.weight): m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            outputs = model(example.requires_grad_(True))
    finally:
        model.train(was_training)
    tensors = [outputs] if isinstance(outputs, torch.Tensor) else [t for t in outputs if isinstance(t, torch.Tensor)]
    found: dict[int, nn.Module] = {}
    stack = [t.grad_fn for t in tensors if t.grad_fn is not None]
    seen: set[int] = set()
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if "Convolution" in type(fn).__name__:
            for nxt, _ in fn.next_functions:
                var = getattr(nxt, "variable", None)
                if var is not None and id(var) in by_weight:
                    found[id(var)] = by_weight[id(var)]
            continue  # stop at the first conv on this path
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return list(found.values())


def classifier_layers(model: nn.Module, example: torch.Tensor | None = None) -> list[nn.Module]:
    """Layers whose output channels are never pruned.

    Every conv producing ``num_classes`` channels (heads, FCN's score layers and their upsampling, which
    are summed before the last layer) plus, given an ``example`` input, every conv feeding a model output
    directly (:func:`output_layers`: box, coefficient and prototype convs of instance models).
    """
    k = model.num_classes
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.out_channels == k]
    if example is not None:
        layers += [m for m in output_layers(model, example) if all(m is not x for x in layers)]
    return layers


@contextlib.contextmanager
def unpool_coupling(model: nn.Module) -> Iterator[None]:
    """Make SegNet's index coupling visible while Torch-Pruning traces ``model`` (no-op for others)."""
    if not hasattr(model, "trace_unpool_coupling"):
        yield
        return
    model.trace_unpool_coupling = True
    try:
        yield
    finally:
        del model.trace_unpool_coupling  # back to the class default (False)


def kept_layers(model: nn.Module, patterns: list[str]) -> list[nn.Module]:
    """Convolutions named by ``patterns`` (``PruneConfig.keep``); a pattern matching none is an error."""
    from fnmatch import fnmatchcase

    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    kept: list[nn.Module] = []
    for pattern in patterns:
        hits = [m for n, m in convs if fnmatchcase(n, pattern) or fnmatchcase(n, pattern + ".*")]
        if not hits:
            examples = ", ".join(n for n, _ in convs[:3])
            raise PruneError(f"--keep {pattern!r}: expected a layer-name pattern matching a convolution of "
                             f"{type(model).__name__} (names look like {examples}); it matches none")
        kept += [m for m in hits if all(m is not k for k in kept)]
    return kept


def make_pruner(model: nn.Module, cfg: PruneConfig, example: torch.Tensor) -> Any:
    """A ``tp.pruner.BasePruner`` for ``cfg`` (one step for a ratio, ``cfg.steps`` steps for a target)."""
    import torch_pruning as tp

    one_step = cfg.mode == "ratio"
    ignored = classifier_layers(model, example)
    ignored += [m for m in kept_layers(model, cfg.keep) if all(m is not x for x in ignored)]
    with unpool_coupling(model):
        return tp.pruner.BasePruner(
            model, example, importance=make_importance(cfg.importance), global_pruning=cfg.global_pruning,
            pruning_ratio=cfg.ratio if one_step else cfg.max_ratio, iterative_steps=1 if one_step else cfg.steps,
            max_pruning_ratio=max(cfg.max_ratio, cfg.ratio or 0.0),
            ignored_layers=ignored, round_to=int(cfg.round_to))


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _aligned_units(kept: list[int], widths: list[int], round_to: int) -> list[int]:
    """Kept widths, multiples of ``round_to``, as close as possible to ``kept`` with the same rounded total.

    Largest-remainder apportionment in units of ``round_to``: every source keeps at least one unit and at
    most its width's whole units; the total is ``sum(kept)`` rounded to the nearest unit.
    """
    caps = [w // round_to for w in widths]
    units = [min(max(1, k // round_to), c) for k, c in zip(kept, caps)]
    rest = [k - u * round_to for k, u in zip(kept, units)]
    total = max(len(kept), round(sum(kept) / round_to))
    while sum(units) < total:
        room = [i for i in range(len(units)) if units[i] < caps[i]]
        if not room:
            break
        i = max(room, key=lambda j: rest[j])
        units[i] += 1
        rest[i] -= round_to
    while sum(units) > total:
        spare = [i for i in range(len(units)) if units[i] > 1]
        if not spare:
            break
        i = min(spare, key=lambda j: rest[j])
        units[i] -= 1
        rest[i] += round_to
    return [u * round_to for u in units]


def aligned_step(pruner: Any, round_to: int) -> None:
    """One pruner step whose every pruned convolution keeps a multiple of ``round_to`` output channels.

    Torch-Pruning rounds a *group's* kept count, but a group whose channels come from several convolutions
    (a U-Net decoder's depthwise conv over ``concat(skip, upsampled)``, FCN-style sums over a concat)
    splits its removals between them by importance, so each source keeps an arbitrary count (seen: 29 of
    32 skip channels and 3 of 32 upsampled ones on unet-lite at ratio 0.5, round_to 8). Here each such
    group is re-split: every source convolution (not depthwise: a depthwise conv follows its input) that
    loses channels keeps a multiple of ``round_to`` (largest-remainder apportionment of the group's
    rounded total), and the sources are pruned one by one, each by its own lowest-importance channels.
    A source narrower than ``round_to`` is left whole.

    Torch-Pruning also drops a whole group when its ranking would empty one of the group's layers (its
    ``check_pruning_group``): at ratio 0.75 on unet-lite, every skip/upsampled concat group ranked all of
    the weaker source's channels lowest and was left unpruned, as was every 32-wide group at round_to 16
    (8 kept, rounded down to 0). Those groups are let through here and re-split like the others (every
    source keeps at least ``round_to`` channels); each re-split piece still passes Torch-Pruning's check.
    """
    dg = pruner.DG
    check = dg.check_pruning_group
    dg.check_pruning_group = lambda group: True  # judged below, per source, after re-splitting
    try:
        for group in pruner.step(interactive=True):  # pruned one by one, as Torch-Pruning's own step does
            _prune_aligned(pruner, group, round_to, check)
    finally:
        dg.check_pruning_group = check


def _prune_aligned(pruner: Any, group: Any, round_to: int, check: Callable[[Any], bool]) -> None:
    """Prune one group of :func:`aligned_step`, re-split per source convolution where needed."""
    dg = pruner.DG
    removed: dict[nn.Module, set[int]] = {}
    for dep, idxs in group:
        m = dep.target.module
        if (isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and not _is_depthwise(m)
                and dg.is_out_channel_pruning_fn(dep.handler)):
            removed.setdefault(m, set()).update(int(i) for i in idxs)
    sources = [(m, r) for m, r in removed.items() if r]
    widths = [dg.get_out_channels(m) for m, _ in sources]
    if all(0 < w - len(r) and (w - len(r)) % round_to == 0 for (_, r), w in zip(sources, widths)):
        if check(group):
            group.prune()
        return
    # Sources tied elementwise (SegNet's unpool coupling, residual sums) share their channels: one class,
    # pruned once through its first member; concat-separated sources are classes of their own.
    outs = [{id(d.target.module) for d, _ in _full_group(dg, m, w) if dg.is_out_channel_pruning_fn(d.handler)}
            for (m, _), w in zip(sources, widths)]
    reps: list[int] = []
    for i, (m, _) in enumerate(sources):
        if not any(id(m) in outs[r] for r in reps):
            reps.append(i)
    wide = [i for i in reps if widths[i] >= round_to]  # narrower sources stay whole
    targets = dict(zip(wide, _aligned_units([widths[i] - len(sources[i][1]) for i in wide],
                                            [widths[i] for i in wide], round_to)))
    for i in wide:
        m, n_remove = sources[i][0], widths[i] - targets[i]
        if n_remove <= 0:
            continue
        full = _full_group(dg, m, widths[i])
        imp = pruner.estimate_importance(full)
        order = torch.argsort(imp) if imp is not None else torch.arange(widths[i])
        piece = dg.get_pruning_group(m, dg.get_pruner_of_module(m).prune_out_channels,
                                     sorted(int(j) for j in order[:n_remove]))
        if check(piece):
            piece.prune()


def _full_group(dg: Any, m: nn.Module, width: int) -> Any:
    return dg.get_pruning_group(m, dg.get_pruner_of_module(m).prune_out_channels, list(range(width)))


def onnx_latency_ms(model: nn.Module, meta: Any, hw: tuple[int, int], threads: int = 2,
                    **latency_kw: Any) -> float:
    """Median batch-1 latency of ``model`` exported to ONNX (static shape ``hw``), on ONNX Runtime CPU."""
    from edgeseg.bench.latency import measure_latency
    from edgeseg.artifacts.onnx_export import export_onnx
    from edgeseg.runtime.ort_rt import OrtBackend

    kw = {"warmup": 3, "min_runs": 10, "min_time_s": 1.0, "max_time_s": 30.0, **latency_kw}
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


def taylor_gradients(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                     loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Accumulate training-loss gradients of ``batches`` (what Taylor importance ranks channels by)."""
    model.train()
    model.zero_grad(set_to_none=True)
    for images, masks in batches:
        loss_fn(model(images), masks).backward()
    model.eval()


def prune_model(model: nn.Module, cfg: PruneConfig, probe: Probe, *,
                taylor_batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Prune ``model`` in place to ``cfg``'s ratio or target; returns one measured row per step (0 = before).

    Every row has params, MACs and (with a probe that measures it) validation accuracy; latency is
    measured before, after the last step, and after every step when it is the target.
    """
    if cfg.importance == "taylor" and not (taylor_batches and loss_fn):
        raise PruneError("importance 'taylor' needs training batches and a loss for its gradients")
    model.eval()
    example = torch.randn(1, model.in_channels, *probe.hw)
    rows = [probe(model, 0, 0.0)]
    pruner = make_pruner(model, cfg, example)
    base_macs = rows[0]["macs"]
    total = 1 if cfg.mode == "ratio" else cfg.steps
    for step in range(1, total + 1):
        if cfg.importance == "taylor":
            taylor_gradients(model, taylor_batches or [], loss_fn)  # type: ignore[arg-type]
        with torch.no_grad() if cfg.importance != "taylor" else contextlib.nullcontext():
            aligned_step(pruner, int(cfg.round_to))
        model.zero_grad(set_to_none=True)
        ratio = cfg.ratio if cfg.mode == "ratio" else cfg.max_ratio * step / cfg.steps
        row = probe(model, step, ratio, latency=cfg.mode == "latency")
        rows.append(row)
        lat = f", {row['latency_ms']:.2f} ms" if "latency_ms" in row else ""
        log(f"prune step {step}/{total}: {row['params']} params, {row['macs'] / base_macs:.1%} of the MACs{lat}")
        if cfg.mode == "macs" and row["macs"] <= cfg.target_macs * base_macs:
            if probe.latency is not None:
                row["latency_ms"] = probe.latency(model)
            break
        if cfg.mode == "latency" and row["latency_ms"] <= cfg.target_latency_ms:
            break
    else:
        if cfg.mode != "ratio":
            what = (f"{cfg.target_macs:.0%} of the MACs" if cfg.mode == "macs"
                    else f"{cfg.target_latency_ms} ms")
            raise PruneError(f"target {what} not reached at max_ratio {cfg.max_ratio} (last step: "
                             f"{rows[-1]['macs'] / base_macs:.1%} of the MACs"
                             + (f", {rows[-1]['latency_ms']:.2f} ms" if "latency_ms" in rows[-1] else "") + ")")
    return rows


def logit_distillation(teacher: nn.Module, *, weight: float = 0.5, temperature: float = 2.0
                       ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-pixel KL(teacher || student) of temperature-softened logits, times ``weight * T**2`` (Hinton)."""
    import torch.nn.functional as F

    teacher = teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss(images: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        teacher.to(images.device)
        with torch.no_grad():
            target = F.log_softmax(teacher(images).float() / temperature, dim=1)
        student = F.log_softmax(logits.float() / temperature, dim=1)
        kl = F.kl_div(student, target, log_target=True, reduction="none").sum(1).mean()
        return weight * temperature ** 2 * kl

    return loss


def prune(checkpoint: str | Path, out: str | Path, cfg: PruneConfig, *, recipe: str | Path | None = None,
          overrides: list[str] | None = None, measure_accuracy: bool = True,
          measure_latency: bool = True, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Prune a checkpoint into ``out`` (model.pt, prune.json), fine-tuning and distilling as ``cfg`` says.

    Args:
        checkpoint: ``model.pt`` written by `edgeseg train` (or an earlier prune).
        out: Output folder.
        cfg: What to prune and how.
        recipe: Recipe for the data (default: the one stored in the checkpoint).
        overrides: ``--set`` overrides of that recipe (``train.*`` applies to fine-tuning).
        measure_accuracy: Evaluate every step on the whole validation split.
        measure_latency: Time before/after on ONNX Runtime here (always on for a latency target); off
            where this machine is not the deployment CPU (e.g. fine-tuning on a GPU box).
        trust_checkpoint: Unpickle ``checkpoint`` fully (only for a file the user made himself).

    Returns:
        The prune.json document: config, steps (params, MACs, latency, val accuracy), before/after.
    """
    import copy

    from edgeseg.artifacts import atomic_write_json, file_sha256, provenance
    from edgeseg.recipe import checkpoint_recipe
    from edgeseg.artifacts.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

    t0 = time.perf_counter()
    ckpt = load_checkpoint(checkpoint, trust=trust_checkpoint)
    rcp, recipe_source = checkpoint_recipe(ckpt, recipe, overrides)
    model, meta = ckpt.model, ckpt.meta
    s = meta.stride
    hw = (-(-rcp.data.size_hw[0] // s) * s, -(-rcp.data.size_hw[1] // s) * s)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = copy.deepcopy(model) if cfg.distill else None
    torch.set_num_threads(max(1, cfg.threads))

    from edgeseg.tasks import get_task

    task = get_task(meta.task)
    if cfg.distill and meta.task != "semantic":
        raise PruneError(f"--distill (per-pixel logit distillation) supports semantic models only "
                         f"({meta.model_name} is {meta.task})")
    val_set = _dataset(task, rcp, meta, "val") if measure_accuracy else None
    timed = measure_latency or cfg.mode == "latency"
    latency = (lambda m: onnx_latency_ms(m, meta, hw, cfg.threads)) if timed else None
    accuracy = (lambda m: _val_accuracy(m, meta, rcp, val_set, task)) if val_set is not None else None
    probe = Probe(meta=meta, hw=hw, latency=latency, accuracy=accuracy)

    taylor, loss_fn = None, None
    if cfg.importance == "taylor":
        from edgeseg.train.losses import SegLoss

        if meta.task != "semantic":
            raise PruneError(f"importance 'taylor' supports semantic models only ({meta.model_name} is "
                             f"{meta.task}); use l1, l2 or bn")

        taylor = _train_batches(rcp, meta, cfg.taylor_batches)
        loss_fn = SegLoss(rcp.train.loss, rcp.data.ignore_index, rcp.train.class_weights)
    steps = prune_model(model, cfg, probe, taylor_batches=taylor, loss_fn=loss_fn,
                        log=lambda m: print(f"prune: {m}", flush=True))
    before, pruned = steps[0], steps[-1]

    model_pt = out / "model.pt"
    finetune: dict[str, Any] = {}
    if cfg.finetune_epochs > 0:
        from edgeseg.train.loop import train

        ft_recipe = rcp.model_copy(deep=True)
        ft_recipe.train.epochs = cfg.finetune_epochs
        ft_recipe.train.eval_every = 1
        if cfg.finetune_lr is not None:
            ft_recipe.train.lr = cfg.finetune_lr
        extra = (logit_distillation(teacher, weight=cfg.distill_weight, temperature=cfg.distill_temperature)
                 if teacher is not None else None)
        print(f"prune: fine-tuning {cfg.finetune_epochs} epochs" + (" with logit distillation" if extra else ""),
              flush=True)
        result = train(ft_recipe, out / "finetune", model=model, extra_loss=extra)
        (out / "finetune" / "model.pt").replace(model_pt)
        finetune = {"epochs": cfg.finetune_epochs, "lr": ft_recipe.train.lr, "distill": cfg.distill,
                    "train_seconds": result.get("train_seconds"), "log": str(out / "finetune" / "train_log.csv")}
        model = load_checkpoint(model_pt).model
        after = probe(model, len(steps), pruned["ratio"])
        after["stage"] = "fine-tuned"
    else:
        state = read_checkpoint(checkpoint, trust=trust_checkpoint)
        extra_state = {k: v for k, v in state.items() if k in ("epoch",)}
        save_checkpoint(model_pt, model, meta, **extra_state, metrics=pruned.get("val", {}))
        after = pruned
    # Reload from the file alone: the checkpoint must rebuild the pruned shapes.
    reloaded = load_checkpoint(model_pt).model
    check = torch.randn(1, meta.in_channels, *hw)
    with torch.no_grad():
        got, want = _as_tuple(reloaded(check)), _as_tuple(model.eval()(check))
        if len(got) != len(want) or not all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(got, want)):
            raise PruneError(f"{model_pt}: the reloaded pruned model differs from the pruned model")

    figures = {"before": before, "pruned": pruned, "after": after,
               "macs_ratio": after["macs"] / before["macs"], "params_ratio": after["params"] / before["params"],
               "speedup": before["latency_ms"] / after["latency_ms"] if timed else None, "seconds": round(time.perf_counter() - t0, 1)}
    if "val" in before and "val" in after:  # the task's own figures: mIoU and Dice, or mask AP
        for col in task.columns:
            b, a = before["val"].get(col.key), after["val"].get(col.key)
            if isinstance(b, (int, float)) and isinstance(a, (int, float)):
                figures[f"{col.key}_drop_points"] = 100 * (b - a)
    inputs = {"checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint), "recipe": recipe_source,
              "overrides": list(overrides or []), "config": cfg.to_dict(), "model": meta.model_name,
              "input_size": list(hw), "threads": cfg.threads}
    doc = provenance("prune", inputs, figures)
    doc.update(steps=steps, finetune=finetune, checkpoint=str(model_pt))
    atomic_write_json(out / "prune.json", doc)
    return doc


def _as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    """A forward result (one tensor, or a tuple of named outputs) as a tuple of tensors."""
    return (out,) if isinstance(out, torch.Tensor) else tuple(t for t in out if isinstance(t, torch.Tensor))


def _dataset(task: Any, rcp: Any, meta: Any, split: str) -> Any:
    return task.build_dataset(rcp.data, split, in_channels=meta.in_channels, train=False,
                              num_classes=meta.num_classes)


def _val_accuracy(model: nn.Module, meta: Any, rcp: Any, val_set: Any, task: Any) -> dict[str, Any]:
    """The task's metrics on the whole split (semantic: mIoU, Dice, pixel accuracy; instance: mask/box AP)."""
    from edgeseg.evaluate import dataset_samples, evaluate_arrays
    from edgeseg.runtime.torch_rt import TorchBackend

    backend = TorchBackend.from_model(model.eval(), meta)
    m = evaluate_arrays(backend, dataset_samples(val_set), num_classes=meta.num_classes,
                        ignore_index=rcp.data.ignore_index, stride=meta.stride, class_names=meta.classes,
                        total=len(val_set), description="validate", task=task)
    return {"split": "val", "num_images": m["num_images"], "task": task.name,
            **{c.key: m[c.key] for c in task.columns if c.key in m}}


def _train_batches(rcp: Any, meta: Any, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` augmented training batches (the recipe's batch size) for Taylor importance."""
    from edgeseg.data import build_dataset

    data = build_dataset(rcp.data, "train", in_channels=meta.in_channels, train=True, num_classes=meta.num_classes)
    loader = torch.utils.data.DataLoader(data, batch_size=rcp.train.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(rcp.train.seed))
    batches = []
    for images, masks in loader:
        batches.append((images, masks.long()))
        if len(batches) == count:
            break
    return batches
