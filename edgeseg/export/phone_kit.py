"""The phone kit written beside the .pte files: how to time them on Android and iOS and bring the numbers back.

Phones cannot be reached from here, so the kit is a README plus one script per platform; the timings
come back as the devices' own logs, which ``python -m edgeseg.bench.phone`` turns into the result lines
``edgeseg report`` reads. Every file name in the scripts is quoted.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.artifacts import ModelMeta
from edgeseg.export.formats import ArtifactRecord

KIT_DIR = "phone"
DEVICE_DIR = "/data/local/tmp/edgeseg"  # adb-writable on every Android device
MINIBENCH = "org.pytorch.minibench/org.pytorch.minibench.BenchmarkActivity"


def _quoted(name: str) -> str:
    """Single-quoted for sh, whatever the name holds (shlex.quote leaves plain names bare)."""
    return "'" + name.replace("'", "'\\''") + "'"


def android_script(ptes: list[str]) -> str:
    """``run_android.sh``: minibench (ExecuTorch's benchmark app) or executor_runner over adb, logs kept locally."""
    defaults = " ".join(_quoted(f"../{p}") for p in ptes)
    return f"""#!/usr/bin/env bash
# Time edgeseg's ExecuTorch programs on an Android phone over adb (see README.md).
#   ./run_android.sh minibench [PTE...]   ExecuTorch's benchmark app (org.pytorch.minibench) must be installed
#   ./run_android.sh runner [PTE...]      an executor_runner built for Android (arm64-v8a, XNNPACK):
#                                         RUNNER=path/to/executor_runner ./run_android.sh runner
# env: ITERS=50 WARMUP=10 THREADS=-1 (runner only; -1 = the runtime's performant-core heuristic)
# Results land in results/ as <name>.minibench.json or <name>.runner.log; convert them with
#   python -m edgeseg.bench.phone "../model.pte" "results/model.minibench.json" --device-label "Pixel 8" --out phone.jsonl
set -euo pipefail
cd "$(dirname "$0")"
mode="${{1:-minibench}}"; shift || true
if [ "$#" -eq 0 ]; then set -- {defaults}; fi
ITERS="${{ITERS:-50}}"; WARMUP="${{WARMUP:-10}}"; THREADS="${{THREADS:--1}}"
ADB="${{ADB:-adb}}"
mkdir -p "results"
"$ADB" shell "mkdir -p '{DEVICE_DIR}'"
for pte in "$@"; do
  name="${{pte##*/}}"; name="${{name%.pte}}"
  # adb shell re-parses its command line on the phone: the device-side folder keeps only [A-Za-z0-9._-]
  slot="${{name//[^A-Za-z0-9._-]/_}}"
  dir="{DEVICE_DIR}/$slot"          # minibench benches the first .pte of a folder: one folder per program
  "$ADB" shell "rm -rf '$dir' && mkdir -p '$dir'"
  "$ADB" push "$pte" "$dir/model.pte" >/dev/null
  case "$mode" in
    minibench)
      "$ADB" shell am start -W -S -n "{MINIBENCH}" --es model_dir "'$dir'" \\
        --ei num_iter "$ITERS" --ei num_warm_up_iter "$WARMUP" >/dev/null
      sleep 2
      "$ADB" shell "run-as org.pytorch.minibench cat files/benchmark_results.json" > "results/$name.minibench.json"
      echo "$pte -> results/$name.minibench.json" ;;
    runner)
      : "${{RUNNER:?set RUNNER to an executor_runner binary built for Android}}"
      "$ADB" push "$RUNNER" "{DEVICE_DIR}/executor_runner" >/dev/null
      "$ADB" shell "chmod +x '{DEVICE_DIR}/executor_runner'"
      args="--model_path '$dir/model.pte' --num_executions $((ITERS + WARMUP)) --cpu_threads $THREADS"
      "$ADB" shell "'{DEVICE_DIR}/executor_runner' $args --print_output none" > "results/$name.runner.log" 2>&1
      echo "$pte -> results/$name.runner.log" ;;
    *) echo "usage: $0 minibench|runner [PTE...]" >&2; exit 2 ;;
  esac
done
"""


def ios_script(ptes: list[str]) -> str:
    """``run_ios.sh``: ExecuTorch's Apple Benchmark app through xcodebuild, the test log kept for conversion."""
    defaults = " ".join(_quoted(f"../{p}") for p in ptes)
    return f"""#!/usr/bin/env bash
# Time edgeseg's ExecuTorch programs on an iPhone/iPad (or a Mac) with ExecuTorch's Benchmark app (see README.md).
#   EXECUTORCH=path/to/executorch DESTINATION='platform=iOS,name=My iPhone' TEAM=ABCDE12345 ./run_ios.sh [PTE...]
# The frameworks must be built first (ExecuTorch's "Building from source" guide for iOS).
set -euo pipefail
cd "$(dirname "$0")"
: "${{EXECUTORCH:?set EXECUTORCH to an executorch source checkout}}"
: "${{DESTINATION:?set DESTINATION, e.g. 'platform=iOS,name=My iPhone'}}"
if [ "$#" -eq 0 ]; then set -- {defaults}; fi
resources="$EXECUTORCH/extension/benchmark/apple/Benchmark/Resources"
mkdir -p "results" "$resources"
for pte in "$@"; do cp "$pte" "$resources/"; done
xcodebuild test -project "$EXECUTORCH/extension/benchmark/apple/Benchmark/Benchmark.xcodeproj" \\
  -scheme Benchmark -destination "$DESTINATION" -testPlan Tests \\
  ${{TEAM:+-allowProvisioningUpdates DEVELOPMENT_TEAM="$TEAM"}} 2>&1 | tee "results/ios.xcodebuild.log"
echo "log -> results/ios.xcodebuild.log (one 'measured [...]' line per test; the forward tests are the latency)"
"""


def readme(meta: ModelMeta, ptes: list[str]) -> str:
    h, w = meta.input_size
    files = "\n".join(f"- `../{p}`" for p in ptes)
    return f"""# Phone kit: {meta.model_name} as ExecuTorch programs (XNNPACK)

Programs (static input `1 x {meta.in_channels} x H x W` float32 at the export size, NCHW; output
`logits` 1 x {meta.num_classes} x H x W):
{files}

Each program also has the methods `edgeseg_meta` (the metadata as JSON: classes {meta.classes},
mean {meta.mean}, std {meta.std}, input size, stride) and `edgeseg_outputs` (output names), so an app
reads normalisation and class names from the file it runs. Pre-processing: RGB/gray pixels / 255,
minus mean, divided by std, resized to the program's input size; post-processing: argmax over classes.
These programs were timed and checked on the export machine with the same XNNPACK kernels (export.json:
parity, fraction delegated, INT8 speed-up and accuracy on the whole validation split).

## Android

1. Install ExecuTorch's benchmark app (minibench, `extension/benchmark/android/benchmark` in the
   executorch repository: build the AAR, `./gradlew installDebug`), connect the phone (`adb devices`).
2. `./run_android.sh minibench` — pushes each program to its own folder under `{DEVICE_DIR}`, starts
   `{MINIBENCH}` (`num_iter` 50, `num_warm_up_iter` 10) and saves the app's
   `benchmark_results.json` as `results/<name>.minibench.json` (average and trimmed-mean latency,
   load time, PSS memory, device brand/model/OS).
3. Or the command-line runner: build `executor_runner` for Android (CMake with the NDK,
   `-DANDROID_ABI=arm64-v8a -DEXECUTORCH_BUILD_XNNPACK=ON`), then
   `RUNNER=path/to/executor_runner THREADS=4 ./run_android.sh runner` (per-iteration times in
   `results/<name>.runner.log`; `--cpu_threads` sets the threadpool, -1 = performant cores).

## iOS

ExecuTorch's Benchmark app (`extension/benchmark/apple/Benchmark`) runs every `.pte` in its
`Resources/` folder as XCTest performance tests (`load`, `forward`):
`EXECUTORCH=~/executorch DESTINATION='platform=iOS,name=My iPhone' TEAM=<team id> ./run_ios.sh`
copies the programs there and keeps the `xcodebuild test` log in `results/ios.xcodebuild.log`.
(Xcode's Test Report navigator shows the same metrics.)

## Back into `edgeseg report`

```bash
python -m edgeseg.bench.phone "../model.pte" "results/model.minibench.json" --device-label "Pixel 8" --out phone.jsonl
python -m edgeseg.bench.phone "../model.int8.pte" "results/model.int8.runner.log" --device-label "Pixel 8" --out phone.jsonl
python -m edgeseg.bench.phone "../model.pte" "results/ios.xcodebuild.log" --device-label "iPhone 15" --out phone.jsonl
edgeseg report workstation.jsonl phone.jsonl --out report/
```

The converter reads the program's metadata (model, precision, input size) from the `.pte` and the
timings from the log (minibench JSON, executor_runner log or xcodebuild log, told apart by content),
and writes one `edgeseg.bench/1` result line per program with `device_label` set to the phone, so
the report gives the phone its own table beside the workstation's. Accuracy is not measured on the
phone (the kernels are the same XNNPACK ones; see export.json for the accuracy of each program).
"""


def write_phone_kit(out: Path, shipped: list[ArtifactRecord], meta: ModelMeta) -> ArtifactRecord:
    """Write ``out/phone/`` (README.md, run_android.sh, run_ios.sh) for the shipped .pte files."""
    from edgeseg.export.trt_kit import write_text

    kit = out / KIT_DIR
    kit.mkdir(parents=True, exist_ok=True)
    ptes = [r.path.name for r in shipped if r.path.suffix == ".pte"]
    write_text(kit / "README.md", readme(meta, ptes))
    write_text(kit / "run_android.sh", android_script(ptes), executable=True)
    write_text(kit / "run_ios.sh", ios_script(ptes), executable=True)
    return ArtifactRecord(kit, "executorch", "kit", figures={"files": ["README.md", "run_android.sh", "run_ios.sh"],
                                                             "programs": ptes})
