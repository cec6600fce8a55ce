#!/usr/bin/env bash
# CUDA paths of edgeseg on a lent GPU machine: AMP vs FP32 training, torch-cuda latency (fp32/fp16,
# channels_last) through `edgeseg bench`. Run from the repo root on the GPU machine, with the project's
# pure-Python dependencies importable (PYTHONPATH) and DATA pointing at a copy of datasets/dsb2018-nuclei.
# Results: benchmarks/results/gpu_h100.md.
set -euo pipefail
DATA=${DATA:-../shared/datasets/dsb2018-nuclei}
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
for amp in true false; do   # semantic: full U-Net on nuclei, 20 epochs
  python3 -m edgeseg train recipes/unet.yaml --set data.root="$DATA" --set train.device=cuda \
    --set train.amp=$amp --set train.epochs=20 --set data.workers=4 --out "$OUT/unet_amp_$amp"
done
for opts in "" "--fp16" "--fp16 --channels-last"; do
  # shellcheck disable=SC2086
  python3 -m edgeseg bench "$OUT/unet_amp_true/model.pt" --backend torch-cuda $opts --batch 1,8 --out "$OUT/cuda.jsonl"
done
for amp in false true; do   # instance: full YOLACT-style model on synthetic shapes at 512
  python3 -m edgeseg train recipes/yolact.yaml --set train.device=cuda --set train.amp=$amp \
    --set train.epochs=2 --set data.workers=8 --out "$OUT/yolact_amp_$amp"
done
python3 -m edgeseg bench "$OUT/yolact_amp_true/model.pt" --backend torch-cuda --batch 1,8 --out "$OUT/yolact_cuda.jsonl"
python3 -m edgeseg bench "$OUT/yolact_amp_true/model.pt" --backend torch-cuda --fp16 --batch 1,8 --out "$OUT/yolact_cuda.jsonl"
