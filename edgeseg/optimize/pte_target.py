"""The phone target of `edgeseg optimize` (``--backend executorch``): the timed form of a candidate is its
ExecuTorch program (``.pte``, XNNPACK delegate: the CPU kernels Android and iOS run).

- Files: per architecture ``<id>.fp32.pte`` and ``<id>.int8.pte`` (PT2E static INT8 with the XNNPACK
  quantizer, calibrated on random arrays: fine for timing), lowered by the export's own functions
  (:mod:`edgeseg.export.torch2executorch`: SegNet's delegable unpooling twin, the task's float tail).
- Here: the ExecuTorch Python runtime runs the same XNNPACK kernels, so ``edgeseg.benchmark`` times the
  programs on this CPU (a proxy for a phone's, not its figures).
- On a phone: ``--plan --backend executorch`` writes ``phone/run_android.sh`` (the export kit's script:
  minibench or executor_runner over adb) and ``run_on_device.sh``, which runs it over every candidate
  program and turns each log into a result line with ``python -m edgeseg.bench.phone`` (``device.jsonl``
  for ``--device-latency``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

from edgeseg import catalog
from edgeseg.artifacts import atomic_write_bytes, atomic_write_text
from edgeseg.optimize.space import OptimizeError

F = catalog.OPTIMIZE_FILES
KIT = "phone"


def require_executorch() -> None:
    """Building programs needs the executorch extra: a one-line error otherwise."""
    from edgeseg.quiet import quiet_import

    try:
        quiet_import("executorch.exir")
    except ImportError:
        raise OptimizeError("--backend executorch: building ExecuTorch programs needs the executorch package: "
                            "pip install 'edgeseg[executorch]'") from None


def build_programs(checkpoint: Path, files: dict[str, Path], size: int, seed: int) -> None:
    """Write ``files`` (precision -> path: fp32 and/or int8 ``.pte``) from an untrained checkpoint, at
    ``size`` x ``size``, batch 1 (a program has one shape)."""
    import torch

    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.artifacts.metadata import pte_constant_methods
    from edgeseg.export.pte_lower import lower
    from edgeseg.export.torch2executorch import delegable_model, int8_float_nodes, quantize_int8
    from edgeseg.tasks import get_task

    ckpt = load_checkpoint(checkpoint)
    model, meta, _ = delegable_model(ckpt.model, ckpt.meta)
    task = get_task(meta)
    outputs = list(getattr(model, "output_names", task.output_names))
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((1, meta.in_channels, size, size)).astype(np.float32) for _ in range(4)]
    example = torch.from_numpy(arrays[0]).clone()
    for precision, path in files.items():
        net = model
        if precision == "int8":
            net, _ = quantize_int8(model, example, arrays, float_nodes=int8_float_nodes(task, model))
        data, _ = lower(net, example, pte_constant_methods(meta, outputs, precision))
        atomic_write_bytes(path, data)


def device_script(forms: list[str]) -> str:
    """``run_on_device.sh`` for phones: time every candidate program over adb, then one line per program."""
    logs = " ".join(shlex.quote(f.removesuffix(".pte")) for f in forms)
    return f"""#!/usr/bin/env bash
# Time the candidate programs on an Android phone (adb; ExecuTorch's minibench app, or RUNNER=executor_runner
# with mode runner; see {KIT}/run_android.sh), then turn each log into a result line. Run it on the computer
# the phone is plugged into (edgeseg with the executorch extra), in this folder; then pass device.jsonl to
# `edgeseg optimize RECIPE --backend executorch --budget MS --device-latency device.jsonl --out OUT`.
#   LABEL="Pixel 8" ./run_on_device.sh [minibench|runner]
#   env: ITERS, WARMUP, THREADS, RUNNER, ADB as run_android.sh; PYTHON (default python3)
set -euo pipefail
cd "$(dirname "$0")"
mode="${{1:-minibench}}"
export WARMUP="${{WARMUP:-10}}"
ext=minibench.json; drop=0
if [ "$mode" = runner ]; then ext=runner.log; drop="$WARMUP"; fi  # the runner's log holds its warm-up runs
(cd {KIT} && ./run_android.sh "$mode")
for name in {logs}; do
  "${{PYTHON:-python3}}" -m edgeseg.bench.phone "{F.candidates}/$name.pte" "{KIT}/results/$name.$ext" \\
    --device-label "${{LABEL:-android}}" --warmup "$drop" --out device.jsonl
done
"""


def write_device_files(out: Path, forms: list[str]) -> None:
    """``phone/run_android.sh`` over the candidate programs and ``run_on_device.sh`` around it."""
    from edgeseg.export.phone_kit import android_script

    (out / KIT).mkdir(parents=True, exist_ok=True)
    for path, text in ((out / KIT / "run_android.sh", android_script([f"{F.candidates}/{f}" for f in forms])),
                       (out / F.runner_script, device_script(forms))):
        atomic_write_text(path, text)
        path.chmod(0o755)


__all__ = ["KIT", "build_programs", "device_script", "require_executorch", "write_device_files"]
