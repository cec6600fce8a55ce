"""The pruning graph: which layers Torch-Pruning may shrink, and one channel-aligned pruning step.

Torch-Pruning's ``BasePruner`` removes whole channels and shrinks every coupled layer with them (U-Net
skip concatenations, FCN score fusions). Two couplings it cannot see are handled here:

* SegNet's unpooling ties decoder channel c to encoder channel c through integer indices (no autograd
  edge): the model is traced with ``trace_unpool_coupling`` on, which adds a zero-valued elementwise
  edge between the two, so both sides lose the same channels.
* Class-score layers (every conv producing ``num_classes`` channels: heads, FCN score/upsampling
  layers) and every conv feeding a model output directly are ignored, so the outputs keep their meaning.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from edgeseg.compress.prune_config import PruneError, resolve_round_to
from edgeseg.recipe import PruneCfg


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
    """Convolutions named by ``patterns`` (``PruneCfg.keep``); a pattern matching none is an error."""
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


def make_pruner(model: nn.Module, cfg: PruneCfg, example: torch.Tensor) -> Any:
    """A ``tp.pruner.BasePruner`` for ``cfg`` (one step for a ratio, ``cfg.steps`` steps for a target).

    Parameters outside standard layers are declared by the model (``SegModel.unwrapped_parameters``):
    those with a channel axis are pruned along it, those without one (YOLACT's per-level box scale) are
    never pruned.
    """
    import torch_pruning as tp

    one_step = cfg.mode == "ratio"
    ignored: list[Any] = classifier_layers(model, example)
    ignored += [m for m in kept_layers(model, cfg.keep) if all(m is not x for x in ignored)]
    declared = model.unwrapped_parameters() if hasattr(model, "unwrapped_parameters") else []
    unwrapped = [(p, 0 if dim is None else dim) for p, dim in declared]
    ignored += [p for p, dim in declared if dim is None]
    with unpool_coupling(model):
        return tp.pruner.BasePruner(
            model, example, importance=make_importance(cfg.importance), global_pruning=cfg.global_pruning,
            pruning_ratio=cfg.ratio if one_step else cfg.max_ratio, iterative_steps=1 if one_step else cfg.steps,
            max_pruning_ratio=max(cfg.max_ratio, cfg.ratio or 0.0), ignored_layers=ignored,
            unwrapped_parameters=unwrapped, round_to=resolve_round_to(cfg))


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
