"""What to prune: the recipe's :class:`~edgeseg.recipe.PruneCfg` (the one definition) read for the pruner.

``PruneConfig`` is that class under the name the pruning code has always used. :func:`prune_config`
builds one from command-line values and turns pydantic's errors into one line naming the option;
:func:`resolve_round_to` turns ``round_to`` (None, ``"auto"`` or an int) into the channel multiple.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgeseg.errors import UserError
from edgeseg.recipe import PruneCfg

PruneConfig = PruneCfg

# The command-line spelling of each PruneCfg field, for error messages about options.
OPTION_NAMES = {"target_latency_ms": "--target-latency", "global_pruning": "--global"}


class PruneError(UserError, ValueError):
    """A pruning request that cannot be done; the message names the option and what was expected."""


def option_name(field: str) -> str:
    """``round_to`` -> ``--round-to``: the option `edgeseg prune` gives a PruneCfg field."""
    return OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


def prune_config(**values: Any) -> PruneCfg:
    """A :class:`PruneCfg` from command-line values (None: not given); a :class:`PruneError` names the option."""
    try:
        return PruneCfg(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else ""  # a flat section: the field itself
        what = first["msg"].removeprefix("Value error, ")
        if not where:  # a check across fields: name them as options
            for field in ("target_latency_ms", "target_macs", "ratio"):
                what = what.replace(field, option_name(field))
            raise PruneError(f"prune: {what}") from None
        got = "" if "got" in what else f" (got {first['input']!r})"
        raise PruneError(f"prune {where} ({option_name(where)}): {what}{got}") from None


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


def resolve_round_to(cfg: PruneCfg) -> int:
    """The channel multiple of ``cfg``: its int, :func:`ort_cpu_block` for ``auto``, and by default ``auto``
    for a latency target (timed on ONNX Runtime here, so this CPU's block counts) and 8 otherwise
    (portable: ARM NEON / XNNPACK and AVX2 work in 4/8-float vectors, TensorRT aligns FP16 channels to 8)."""
    value = cfg.round_to if cfg.round_to is not None else "auto" if cfg.mode == "latency" else 8
    return ort_cpu_block() if value == "auto" else int(value)


def parse_latency(text: str) -> float:
    """``"40ms"``, ``"40"`` (ms) or ``"0.04s"`` -> milliseconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*", text)
    if not m:
        raise PruneError(f"--target-latency {text!r}: expected milliseconds like 40ms or seconds like 0.04s")
    value = float(m.group(1))
    return value * 1000.0 if m.group(2) == "s" else value


__all__ = ["PruneConfig", "PruneError", "option_name", "ort_cpu_block", "parse_latency", "prune_config",
           "resolve_round_to"]
