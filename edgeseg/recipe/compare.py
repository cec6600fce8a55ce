"""What changed between two recipes (the test behind --resume and the pipeline's resume)."""

from __future__ import annotations

from typing import Any


TRAINING_SECTIONS = ("model", "data", "train")


def _flat(tree: Any, prefix: str) -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}.{k}"))
        return out
    return {prefix: tree}


def recipe_differences(stored: dict[str, Any], current: dict[str, Any],
                       sections: tuple[str, ...] = TRAINING_SECTIONS) -> list[str]:
    """Every dotted field of ``sections`` whose value differs, as ``"train.lr: 0.001 -> 0.01"``.

    The one comparison behind `--resume` and the pipeline's resume of an interrupted training: both
    continue a run only when this list is empty. Values compare as JSON (tuples equal lists).
    """
    import json

    def norm(v: Any) -> str:
        return json.dumps(v, sort_keys=True, default=str)

    diffs = []
    for section in sections:
        old, new = _flat(stored.get(section), section), _flat(current.get(section), section)
        for key in sorted(set(old) | set(new)):
            if norm(old.get(key)) != norm(new.get(key)):
                diffs.append(f"{key}: {norm(old.get(key))} -> {norm(new.get(key))}")
    return diffs
