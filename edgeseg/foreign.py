"""Bring-your-own ONNX: what a file without edgeseg metadata needs to be benched, evaluated or predicted with.

Such a file is opened with ``foreign=True`` (ONNX Runtime), which takes channels, a fixed input size and
the class count from its graph. Latency and memory need nothing more than an input size (whatever its
outputs: a detector's boxes and prototypes too); accuracy and predictions need the recipe the model was
trained for (``--data RECIPE``): its class names, normalisation, ignore index and image size. `bench`,
`eval` and `predict` all go through :func:`adopt_foreign`, so the three read a foreign file the same
way. It is read as a semantic model: one N x K x H x W output (named ``logits`` when there are several).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgeseg.errors import UserError


class ForeignModelError(UserError, ValueError):
    """An ONNX file without edgeseg metadata lacks what the command needs (a recipe, an input size)."""


def adopt_foreign(backend: Any, recipe: str | Path | None, size: tuple[int, int] | None = None, *,
                  overrides: list[str] | None = None, need_recipe: str = "") -> str:
    """Complete ``backend.meta`` of a foreign ONNX file in place; returns a one-line note saying how.

    Args:
        backend: an ``OrtBackend`` opened with ``foreign=True`` whose ``foreign`` flag is set.
        recipe: recipe giving classes, normalisation, ignore index and (for dynamic axes) input size.
        overrides: ``--set`` overrides applied to ``recipe``.
        size: (H, W) input for dynamic spatial axes when there is no recipe (bench's ``--size``).
        need_recipe: the command, when it cannot work without ``recipe`` (``eval``, ``predict``).

    Raises:
        ForeignModelError: no recipe where one is needed, a class count that contradicts the recipe, a
            graph that is not one logits output, or a dynamic input size with neither ``size`` nor ``recipe``.
    """
    path, meta = Path(backend.path), backend.meta
    names = list(getattr(backend, "output_names", []) or [])
    unreadable = len(names) > 1 and "logits" not in names  # e.g. a detector's boxes + prototypes
    if unreadable and (recipe is not None or need_recipe):
        raise ForeignModelError(f"{path}: no edgeseg metadata and {len(names)} outputs {names}; a file without "
                                "metadata is evaluated as a semantic model with one N x K x H x W output "
                                "(`edgeseg bench FILE` without --data still times it)")
    if recipe is None and need_recipe:
        raise ForeignModelError(f"{path}: no edgeseg metadata; `edgeseg {need_recipe}` needs --data RECIPE (its "
                                "classes, normalisation and image size are used)")
    if recipe is not None:
        from edgeseg.data import default_mean_std, resolve_classes
        from edgeseg.recipe import load_recipe

        rcp = load_recipe(recipe, overrides)
        n = rcp.model.num_classes
        if meta.num_classes and meta.num_classes != n:
            raise ForeignModelError(f"{path}: the file outputs {meta.num_classes} classes but {recipe} has "
                                    f"model.num_classes {n}")
        mean, std = default_mean_std(rcp.data, meta.in_channels)
        meta = dataclasses.replace(meta, num_classes=n, classes=resolve_classes(rcp.data, n), mean=mean, std=std,
                                   ignore_index=rcp.data.ignore_index, input_size=tuple(rcp.data.size_hw),
                                   recipe=rcp.to_dict(), recipe_hash=rcp.hash())
    fixed = backend.inputs[0].fixed_hw
    hw = fixed or size or (meta.input_size if recipe is not None else None)
    if not hw:
        raise ForeignModelError(f"{path}: no edgeseg metadata and a dynamic input size; pass --size HxW "
                                "(or --data RECIPE)")
    backend.meta = dataclasses.replace(meta, input_size=(int(hw[0]), int(hw[1])))
    what = (f"classes and normalisation from {recipe}" if recipe is not None
            else f"latency and memory only ({len(names)} outputs {names}: not one logits output to evaluate)"
            if unreadable else "latency and memory only (pass --data RECIPE to evaluate it)")
    return f"{path.name} has no edgeseg metadata: {what}; input {hw[0]}x{hw[1]}"


def open_artifact(artifact: str | Path, *, recipe: str | Path | None = None, command: str,
                  overrides: list[str] | None = None, say: Any = None, **open_kw: Any) -> Any:
    """``runtime.open`` for `eval` / `predict`: an ONNX file without edgeseg metadata opens too when
    ``recipe`` describes it (else a one-line error naming ``command``); ``say`` gets the note."""
    from edgeseg import runtime

    backend = open_kw.get("backend")
    foreign = {"foreign": True} if runtime.backend_for(artifact, backend) == "onnxruntime" else {}
    rt = runtime.open(artifact, **open_kw, **foreign)
    if getattr(rt, "foreign", False):
        note = adopt_foreign(rt, recipe, overrides=overrides, need_recipe=command)
        if say is not None:
            say(f"{command}: {note}")
    return rt


__all__ = ["ForeignModelError", "adopt_foreign", "open_artifact"]
