"""What an export will do, checked before any work: option values, combinations, formats the task supports.

Options given on the command line (``--max-drop``, ``--qat``, ``--epochs``, ...) are not recipe
overrides: they arrive as ``label -> (ExportCfg field, value)``, each value is checked on its own
against the field (so an error names the option the user typed, not the recipe stored in the
checkpoint), and they are laid over the recipe's export section. Then :func:`check_plan` refuses
combinations that would be silently ignored or that fail only after minutes of work (QAT with mixed
precision, an option that concerns INT8 without INT8) before the output folder is touched.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from edgeseg.errors import ExportError
from edgeseg.recipe import ExportCfg

# label -> (dotted ExportCfg field, value); e.g. {"--max-drop": ("max_drop", 0.5), "--qat": ("qat", True)}
Options = dict[str, tuple[str, Any]]

# Fields that only mean something when an INT8 model is made.
INT8_FIELDS = ("qat", "qat.", "max_drop", "calibration.", "int8_policy")
HINTS = {"qat.epochs": "quantization-aware training fine-tunes at least one epoch; for INT8 without training "
                       "leave out --qat (post-training quantization)"}


def _tree(key: str, value: Any) -> dict[str, Any]:
    """``"qat.epochs", 3`` -> ``{"qat": {"epochs": 3}}``; ``"qat", True`` -> ``{"qat": {}}`` (the defaults)."""
    if key == "qat":
        return {"qat": {} if value else None}
    tree: dict[str, Any] = {}
    node = tree
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return tree


def _expected(error: dict[str, Any]) -> str:
    """What pydantic wanted, as 'expected ...' words."""
    ctx = error.get("ctx") or {}
    bounds = {"greater_than_equal": ">= {ge}", "greater_than": "> {gt}", "less_than_equal": "<= {le}",
              "less_than": "< {lt}"}
    if error["type"] in bounds:
        return "a value " + bounds[error["type"]].format(**ctx)
    if error["type"] == "literal_error":
        return f"one of {ctx.get('expected', '')}"
    return error["msg"][0].lower() + error["msg"][1:]


def check_values(options: Options) -> None:
    """Each option's value against its ExportCfg field; ExportError ``--max-drop -1.0: expected ...``."""
    for label, (key, value) in options.items():
        try:
            ExportCfg.model_validate(_tree(key, value))
        except ValidationError as err:
            shown = "" if isinstance(value, bool) else f" {value}"
            hint = f" ({HINTS[key]})" if key in HINTS else ""
            raise ExportError(f"{label}{shown}: expected {_expected(err.errors()[0])}{hint}") from None


def name_of(options: Options, key: str) -> str:
    """How the user gave ``key``: the option's label, else the recipe field ``export.<key>``."""
    return next((label for label, (k, _) in options.items() if k == key), f"export.{key}")


def apply_options(cfg: ExportCfg, options: Options) -> ExportCfg:
    """``cfg`` (the recipe's export section) with the options laid over it; ``--qat`` keeps the recipe's
    QAT settings when it has some, and an option under ``qat.`` needs QAT (``--qat``) to mean anything."""
    tree = cfg.model_dump()
    for label, (key, value) in options.items():
        if key == "qat":
            if value and tree.get("qat") is None:
                tree["qat"] = {}
            continue
        *parents, leaf = key.split(".")
        if parents == ["qat"] and tree.get("qat") is None and not any(k == "qat" for k, _ in options.values()):
            raise ExportError(f"{label}: applies to quantization-aware training only; add --qat or leave out {label}")
        node = tree
        for part in parents:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return ExportCfg.model_validate(tree)


def check_int8_method(cfg: Any, qat: str, max_drop: str) -> None:
    """Refuse QAT together with mixed precision in ``cfg`` (an export or quantize section); ``qat`` and
    ``max_drop`` name them as the user gave them (an option, ``export.*``, ``quantize.*``)."""
    if cfg.qat is not None and cfg.max_drop is not None:
        raise ExportError(f"{qat} and {max_drop} cannot be combined: QAT trains every layer for INT8; mixed "
                          "precision picks float layers after PTQ")


def check_plan(cfg: ExportCfg, formats: list[str], precisions: list[str], task: Any, options: Options) -> None:
    """Refuse, before any work, what would fail late or be silently ignored (``formats``/``precisions``:
    resolved names; ``task``: the model's :class:`~edgeseg.tasks.base.Task`)."""
    check_int8_method(cfg, name_of(options, "qat"), name_of(options, "max_drop"))
    if "int8" not in precisions:
        given = [label for label, (key, _) in options.items() if key.startswith(INT8_FIELDS)]
        if given:
            raise ExportError(f"{given[0]}: concerns INT8, which this export does not make; add --int8 (or "
                              f"export.precisions: [fp32, int8]) or leave out {given[0]}")
    if "executorch" in formats and "int8" in precisions and task.executorch_int8_refusal:
        raise ExportError(f"INT8 with --format executorch: not offered for {task.name} models "
                          f"({task.executorch_int8_refusal}); export the .pte in FP32 (leave out --int8, or "
                          "--set export.precisions=[fp32]) and INT8 as ONNX (--format onnx --int8)")


__all__ = ["HINTS", "INT8_FIELDS", "Options", "apply_options", "check_int8_method", "check_plan", "check_values",
           "name_of"]
