"""`edgeseg optimize` on the ISBI 2012 membranes against the hand-made lite models (issue 20).

Usage: python -m benchmarks.optimize_membrane [--time 2h] [--threads 2] [--out benchmarks/.runs/optimize_membrane]
                                             [--latency-only] [--trained RUN/model.pt] [--quick] [--set K=V]

The default space (unet-lite / segnet-lite / fcn-lite x widths x prune ratios x FP32 / INT8) timed untrained
on ONNX Runtime CPU (2 threads, 256x256) in alternating rounds; budget = half of unet-lite's FP32 latency
from the same rounds (`--budget 0.5x`); the study's winner against unet-lite as the recipe ships it (mean
Dice within 1 point) and its front against the hand-made lite variants (FP32 and INT8). The steps:
benchmarks.optimize_study. ``--quick``: the latency step only, results under benchmarks/.runs/quick.
Writes benchmarks/results/optimize_membrane.{json,md} (benchmarks.record).
"""

from __future__ import annotations

from benchmarks.optimize_study import Spec
from benchmarks.optimize_study import main as run_study
from benchmarks.record import ROOT

SPEC = Spec(name="optimize_membrane", recipe=ROOT / "recipes" / "membrane_unet_lite.yaml", own="unet-lite",
            own_file="unet-lite-w1-d4-p0-s256.fp32.onnx", ratio=0.5, metric="mean_dice", metric_label="mean Dice",
            points=1.0, finetune_epochs=5, hand_made=("unet-lite", "segnet-lite", "fcn-lite"), size=256)


def main(argv: list[str] | None = None) -> None:
    run_study(SPEC, argv)


if __name__ == "__main__":
    main()
