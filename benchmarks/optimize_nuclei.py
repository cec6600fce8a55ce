"""`edgeseg optimize` on the DSB2018 nuclei (instance) against yolact-lite as the recipe ships it (issue 20).

Usage: python -m benchmarks.optimize_nuclei [--time 2h] [--threads 2] [--out benchmarks/.runs/optimize_nuclei]
                                           [--latency-only] [--trained RUN/model.pt] [--quick] [--set K=V]

The instance space (yolact-lite x widths x prune ratios x FP32 / INT8) timed untrained on ONNX Runtime CPU
(2 threads, 320x320) in alternating rounds; budget = 0.6x yolact-lite's FP32 latency from the same rounds
(`--budget 0.6x`); the trials train at 320x320 crops. The winner's mask AP50 on the whole val split against
yolact-lite trained as the recipe ships it (256x256 crops, 30 epochs) and exported at 320x320, both measured
on their ONNX artifacts by the same bench (target: within 3 points). The steps: benchmarks.optimize_study.
``--quick``: the latency step only, results under benchmarks/.runs/quick.
Writes benchmarks/results/optimize_nuclei.{json,md} (benchmarks.record).
"""

from __future__ import annotations

from benchmarks.optimize_study import Spec
from benchmarks.optimize_study import main as run_study
from benchmarks.record import ROOT

SPEC = Spec(name="optimize_nuclei", recipe=ROOT / "recipes" / "nuclei_yolact_lite.yaml", own="yolact-lite",
            own_file="yolact-lite-w1-p0-s320.fp32.onnx", ratio=0.6, metric="mask_ap50", metric_label="mask AP50",
            points=3.0, finetune_epochs=8, hand_made=("yolact-lite",), size=320, overrides=("data.image_size=320",),
            distill=False)


def main(argv: list[str] | None = None) -> None:
    run_study(SPEC, argv)


if __name__ == "__main__":
    main()
