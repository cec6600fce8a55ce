"""Training: the loop, losses, checkpoints and DDP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.recipe import Recipe, load_recipe


def train(recipe: Recipe | str | Path | None, out: str | Path, *, overrides: list[str] | None = None,
          resume: bool = False, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Train a recipe (object or YAML path; None = the embedded quickstart) into ``out``.

    Returns the validation metrics of the best checkpoint (``out/model.pt``) and run figures.
    ``trust_checkpoint``: ``--resume`` may unpickle ``out/last.pt`` fully (one an earlier edgeseg wrote).
    ``out`` is locked while training: a second run into the same folder gets an ``OutputError``.
    """
    import os

    from edgeseg.artifacts.outputs import check_output_folder, folder_lock
    from edgeseg.train.loop import train as _train

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    check_output_folder(out)
    if os.environ.get("RANK", "0") != "0":  # DDP: rank 0 writes every file and holds the lock
        return _train(recipe, out, resume=resume, trust_checkpoint=trust_checkpoint)
    with folder_lock(out):
        return _train(recipe, out, resume=resume, trust_checkpoint=trust_checkpoint)


__all__ = ["train"]
