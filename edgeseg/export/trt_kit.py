"""The Jetson / TensorRT build kit: calibration cache in TensorRT's own format, trtexec script, README.

TensorRT engines never move between GPUs or TensorRT versions, so the kit carries what the target
needs to build its own: ONNX files, a calibration cache made from our calibration statistics, and
``build_engine.sh``. No library writes TensorRT's cache format from external ranges, hence the
writer and parser here. Format: a header line ``TRT-<version code>-<algorithm>``, then one
``<tensor name>: <scale as big-endian float32 hex>`` line per tensor, scale = amax / 127.
"""

from __future__ import annotations

import shlex
import struct
from collections.abc import Mapping
from pathlib import Path

DEFAULT_TRT_VERSION = "10.3.0"  # JetPack 6.x; build_engine.sh rewrites the header to the installed one
# trtexec's --calib calibrator is an EntropyCalibrator2 and ignores caches of another algorithm; the
# scales themselves come from our method (recorded in README.txt and export.json).
CACHE_ALGORITHM = "EntropyCalibration2"
MIN_AMAX = 1e-6  # an all-zero tensor would get scale 0


def trt_version_code(version: str) -> str:
    """``10.3.0`` -> ``100300`` (TensorRT >= 10), ``8.6.1`` -> ``8601`` (the NV_TENSORRT_VERSION encoding)."""
    major, minor, patch = ([int(p) for p in version.split(".")[:3]] + [0, 0])[:3]
    return str(major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch)


def scale_hex(scale: float) -> str:
    """A float32 scale as TensorRT writes it: 8 hex digits of its big-endian IEEE-754 bytes."""
    return struct.pack(">f", scale).hex()


def calibration_cache(amax: Mapping[str, float], trt_version: str = DEFAULT_TRT_VERSION,
                      algorithm: str = CACHE_ALGORITHM) -> str:
    """TensorRT calibration cache text for tensors with symmetric ranges ``amax`` (scale = amax / 127)."""
    lines = [f"TRT-{trt_version_code(trt_version)}-{algorithm}"]
    lines += [f"{name}: {scale_hex(max(float(a), MIN_AMAX) / 127.0)}" for name, a in sorted(amax.items())]
    return "\n".join(lines) + "\n"


def parse_calibration_cache(text: str) -> tuple[str, dict[str, float]]:
    """(header, tensor name -> scale) of a TensorRT calibration cache."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("TRT-"):
        raise ValueError("not a TensorRT calibration cache (first line must start with 'TRT-')")
    scales = {}
    for ln in lines[1:]:
        name, _, value = ln.rpartition(": ")
        scales[name] = struct.unpack(">f", bytes.fromhex(value.strip()))[0]
    return lines[0], scales


def shape_flags(input_name: str, channels: int, hw: tuple[int, int], stride: int, dynamic: bool,
                max_batch: int = 4) -> dict[str, str]:
    """trtexec min/opt/max shapes for a dynamic-axis model (empty for a static one)."""
    if not dynamic:
        return {}
    h, w = hw

    def side(v: int) -> int:
        return max(stride, -(-v // stride) * stride)

    fmt = "{n}:{b}x{c}x{h}x{w}".format
    return {"minShapes": fmt(n=input_name, b=1, c=channels, h=side(h // 2), w=side(w // 2)),
            "optShapes": fmt(n=input_name, b=1, c=channels, h=h, w=w),
            "maxShapes": fmt(n=input_name, b=max_batch, c=channels, h=side(2 * h), w=side(2 * w))}


# The kit's files, by role. build_engine.sh names them only through shlex.quote (see build_script).
KIT_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.qdq.onnx",
             "cache": "calibration.cache"}


def _run_line(log: str, *args: str) -> str:
    """One ``run LOG ARGS...`` line of build_engine.sh, every word shell-quoted."""
    return "run " + " ".join(shlex.quote(a) for a in (log, *args))


def build_script(*, shapes: Mapping[str, str], int8: bool, workspace_mib: int = 1024, cache: bool = True) -> str:
    """``build_engine.sh``: trtexec lines for FP16 and INT8 on TensorRT 10 (Jetson) and 11.

    ``cache=False`` (a QAT kit: its INT8 scales live in the Q/DQ model only) leaves out ``int8-calib``.

    Every file name and argument is written through :func:`shlex.quote` (shapes as a bash array), so no
    name can run a command; ``--dry-run`` prints the trtexec commands instead of running anything.
    """
    f = KIT_FILES
    calib = int8 and cache
    modes = ("fp16 | int8-qdq | int8-calib | all" if calib else "fp16 | int8-qdq | all") if int8 else "fp16 | all"
    all_cmds = ("fp16; int8_qdq; int8_calib" if calib else "fp16; int8_qdq") if int8 else "fp16"
    return script_head(shapes, workspace_mib, f"./build_engine.sh [--dry-run] [{modes}]") + f"""
fp16() {{
  if [ "$TRT_MAJOR" -ge 11 ]; then  # strongly typed: FP16 comes from the model's own types
    {_run_line("build_fp16.log", "--onnx=" + f["fp16"], "--saveEngine=model.fp16.engine", "--stronglyTyped")}
  else
    {_run_line("build_fp16.log", "--onnx=" + f["fp32"], "--saveEngine=model.fp16.engine", "--fp16")}
  fi
}}
{_int8_functions(cache) if int8 else ""}
case "${{1:-all}}" in
  fp16) fp16 ;;
{"  int8-qdq) int8_qdq ;;" + chr(10) if int8 else ""}{"  int8-calib) int8_calib ;;" + chr(10) if calib else ""}  all) {all_cmds} ;;
  *) echo "usage: $0 [--dry-run] [{modes}]" >&2; exit 2 ;;
esac
"""


def script_head(shapes: Mapping[str, str], workspace_mib: int, usage: str) -> str:
    """A trtexec script up to its ``run`` function: usage, ``--dry-run``, trtexec and its TensorRT version
    (``TRT_MAJOR``), shapes, workspace. Also the head of `edgeseg optimize`'s TensorRT device script."""
    shape_args = " ".join(shlex.quote(f"--{k}={v}") for k, v in shapes.items())
    return f"""#!/usr/bin/env bash
# Build TensorRT engines ON THE TARGET (Jetson or any NVIDIA GPU); engines are tied to GPU + TensorRT version.
# Usage: {usage}   env: TRTEXEC=path/to/trtexec WORKSPACE_MIB={workspace_mib}
# --dry-run prints the trtexec commands without running anything (TRT_MAJOR=11 shows the TensorRT 11 ones).
set -euo pipefail
cd "$(dirname "$0")"
DRY_RUN=""
if [ "${{1:-}}" = "--dry-run" ]; then DRY_RUN=1; shift; fi
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
WORKSPACE_MIB="${{WORKSPACE_MIB:-{workspace_mib}}}"
SHAPES=({shape_args})
TRT_CODE=""
if [ -z "$DRY_RUN" ]; then
  # Version code from trtexec's banner ("TensorRT v100300" = 10.3.0, "v8601" = 8.6.1).
  TRT_CODE="$("$TRTEXEC" --help 2>&1 | grep -o 'TensorRT v[0-9]*' | head -n1 | tr -dc '0-9' || true)"
fi
if [ "${{#TRT_CODE}}" -ge 6 ]; then TRT_MAJOR="${{TRT_CODE:0:2}}"; elif [ -n "$TRT_CODE" ]; then TRT_MAJOR="${{TRT_CODE:0:1}}"; fi
TRT_MAJOR="${{TRT_MAJOR:-10}}"

run() {{ # run LOG ARGS...: trtexec with the shapes and workspace, log kept beside the engine
  local log="$1"; shift
  local cmd=("$TRTEXEC" "$@" ${{SHAPES[@]+"${{SHAPES[@]}}"}} "--memPoolSize=workspace:$WORKSPACE_MIB")
  if [ -n "$DRY_RUN" ]; then printf '%q ' "${{cmd[@]}}"; printf '\n'; return 0; fi
  "${{cmd[@]}}" 2>&1 | tee "$log"
}}
"""


def _int8_functions(cache: bool) -> str:
    """``int8_qdq`` (explicit Q/DQ) and, with a calibration cache, ``int8_calib`` (implicit, TensorRT 10)."""
    f = KIT_FILES
    qdq = f"""
int8_qdq() {{   # explicit quantization: Q/DQ nodes carry the scales (TensorRT 10 and 11)
  if [ "$TRT_MAJOR" -ge 11 ]; then
    {_run_line("build_int8.log", "--onnx=" + f["int8"], "--saveEngine=model.int8.engine", "--stronglyTyped")}
  else
    {_run_line("build_int8.log", "--onnx=" + f["int8"], "--saveEngine=model.int8.engine", "--int8", "--fp16")}
  fi
}}

"""
    if not cache:
        return qdq
    cache_q = shlex.quote(f["cache"])
    return qdq + f"""int8_calib() {{ # implicit quantization from our calibration cache (TensorRT 10 only; removed in 11)
  if [ "$TRT_MAJOR" -ge 11 ]; then echo "TensorRT $TRT_MAJOR has no calibration caches: use int8-qdq" >&2; return 1; fi
  if [ -n "$TRT_CODE" ] && [ -z "$DRY_RUN" ]; then sed -i "1s/^TRT-[0-9]*-/TRT-${{TRT_CODE}}-/" {cache_q}; fi
  {_run_line("build_int8_calib.log", "--onnx=" + f["fp32"], "--saveEngine=model.int8.calib.engine", "--int8",
             "--fp16", "--calib=" + f["cache"])}
}}
"""


def readme(*, model_name: str, input_name: str, shapes: Mapping[str, str], int8: bool, calib: dict | None,
           trt_version: str, notes: list[str], qat: bool = False) -> str:
    """README.txt of the kit: what each file is and how to build and check an engine.

    ``qat``: the Q/DQ model comes from quantization-aware training (no calibration cache, no int8-calib).
    """
    files = ["model.onnx            FP32 graph (FP16 builds on TensorRT 10"
             + ("" if qat else "; INT8 builds with calibration.cache") + ")",
             "model.fp16.onnx       FP16 graph with float32 I/O (strongly typed FP16 builds on TensorRT 11)"]
    if int8 and qat:
        files += ["model.int8.qdq.onnx   INT8 Q/DQ graph from quantization-aware training, symmetric int8 "
                  "activations and weights (TensorRT 10 and 11)"]
    elif int8:
        files += ["model.int8.qdq.onnx   INT8 Q/DQ graph, symmetric int8 activations and weights (TensorRT 10 and 11)",
                  f"calibration.cache     TensorRT calibration cache (header TRT-{trt_version_code(trt_version)}-"
                  f"{CACHE_ALGORITHM}; rewritten to the installed version by build_engine.sh)"]
    modes = "fp16, int8-qdq" if qat else "fp16, int8-qdq, int8-calib"
    files += [f"build_engine.sh       trtexec commands ({modes})", "README.txt            this file"]
    calib_text = ""
    if calib and not qat:
        calib_text = (f"\nCalibration: {calib.get('images')} images of the TRAINING split "
                      f"({calib.get('distinct_images')} distinct), method {calib.get('method')}, "
                      f"{calib.get('size')} px; scales = amax / 127 of the ranges ONNX Runtime's calibrator measured.\n")
    shape_text = "\n".join(f"  --{k}={v}" for k, v in shapes.items()) or "  (static input shape)"
    return f"""edgeseg TensorRT kit for {model_name}
{'=' * (26 + len(model_name))}

Files:
  {chr(10).join('  ' + f for f in files).lstrip()}
{calib_text}
Build on the target (engines do not move between GPUs or TensorRT versions):
  ./build_engine.sh fp16        # FP16 engine -> model.fp16.engine
{"  ./build_engine.sh int8-qdq    # INT8 from Q/DQ nodes -> model.int8.engine (TensorRT 10 and 11)" + chr(10) if int8 else ""}{"  ./build_engine.sh int8-calib  # INT8 from calibration.cache -> model.int8.calib.engine (TensorRT 10 only)" + chr(10) if int8 and not qat else ""}
TensorRT 10 (JetPack 6) builds FP16 with --fp16 and INT8 either way. TensorRT 11 removed implicit
calibration and the --int8/--fp16 flags: networks are strongly typed, so INT8 comes only from the
Q/DQ model and FP16 from model.fp16.onnx (--stronglyTyped).

Input '{input_name}', N x C x H x W float32, normalised with the mean/std in the ONNX metadata
(edgeseg.mean / edgeseg.std). Shape profile used by build_engine.sh (edit SHAPES to change it; `./build_engine.sh --dry-run`
prints the trtexec commands without running them):
{shape_text}

Check an engine: trtexec --loadEngine=model.int8.engine --shapes={input_name}:{shapes.get('optShapes', '').split(':')[-1] or '...'}
or, with edgeseg installed: edgeseg eval model.int8.engine --data RECIPE.
{chr(10).join('Note: ' + n for n in notes)}
"""


def write_text(path: Path, text: str, executable: bool = False) -> Path:
    """Atomic text write (optionally chmod +x)."""
    from edgeseg.artifacts import atomic_write_text

    atomic_write_text(path, text)
    if executable:
        path.chmod(0o755)
    return path
