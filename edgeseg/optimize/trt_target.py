"""The TensorRT target of `edgeseg optimize` (a Jetson or any NVIDIA GPU): the timed form of a candidate
file is the engine TensorRT builds from it, and an engine is tied to the GPU and TensorRT version that
built it, so it is built where it runs.

- On the device: ``--plan --backend tensorrt`` writes, beside the candidate ONNX files, a checksum list,
  each future engine's metadata (``engines/<form>.engine.meta.json``, so the torch-free runner can open
  it) and ``run_on_device.sh``: it checks the files, builds every engine with ``trtexec`` (flags of
  TensorRT 10, or strongly typed on 11, as the export kit's ``build_engine.sh``) and times them with
  ``python -m edgeseg.bench.runner``. Its lines name engines; :func:`form_of` maps them back to the plan.
- Here, when TensorRT and a GPU are: the same engines built with the TensorRT Python API
  (:func:`edgeseg.export.trt_build.build_engine`) and timed by ``edgeseg.benchmark``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeseg import catalog
from edgeseg.artifacts import atomic_write_text
from edgeseg.optimize.space import Candidate, OptimizeError

F = catalog.OPTIMIZE_FILES
WORKSPACE_MIB = 1024


def engine_of(form: str) -> str:
    """``<id>.fp16.onnx`` -> ``<id>.fp16.engine``."""
    return form.removesuffix(".onnx") + ".engine"


def form_of(name: str) -> str:
    """An engine's name -> the plan's form name (other names unchanged)."""
    return name.removesuffix(".engine") + ".onnx" if name.endswith(".engine") else name


def _precision(form: str) -> str:
    return form.removesuffix(".onnx").rsplit(".", 1)[-1]


def _timed_input(path: Path, side: int) -> tuple[str, tuple[int, ...] | None]:
    """The input's name and, when its axes are dynamic, the shape timed (batch 1 at the candidate's size)."""
    import onnx

    graph_input = onnx.load(str(path), load_external_data=False).graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    if all(d.HasField("dim_value") for d in dims):
        return graph_input.name, None
    return graph_input.name, (1, dims[1].dim_value, side, side)


def shape_args(path: Path, cand: Candidate) -> list[str]:
    """trtexec shape flags for one candidate file (none for a static one)."""
    name, shape = _timed_input(path, cand.image_size)
    if shape is None:
        return []
    text = f"{name}:{'x'.join(map(str, shape))}"
    return [f"--{k}Shapes={text}" for k in ("min", "opt", "max")]


def write_sidecars(out: Path, forms: list[str]) -> None:
    """``engines/<form>.engine.meta.json``: the candidate file's metadata, for the engine built from it."""
    from edgeseg.artifacts.metadata import read_onnx, write_sidecar

    for form in forms:
        write_sidecar(out / F.engines / engine_of(form), read_onnx(out / F.candidates / form), _precision(form))


def device_script(out: Path, space: list[Candidate], precisions: list[str]) -> str:
    """``run_on_device.sh`` for TensorRT: check, build every engine, time them (``--dry-run``: print)."""
    from edgeseg.export.trt_kit import script_head

    lines = []
    for cand in space:
        for p in precisions:
            form = cand.form(p)
            args = [form, engine_of(form), p, *shape_args(out / F.candidates / form, cand)]
            lines.append("build " + " ".join(shlex.quote(a) for a in args))
    runner = (f"python3 -m edgeseg.bench.runner {F.engines}/*.engine --backend tensorrt --device cuda "
              "--out device.jsonl")
    usage = "./run_on_device.sh [--dry-run]"
    return script_head({}, WORKSPACE_MIB, usage) + f"""
# Copy this folder to the device (TensorRT + trtexec, numpy, edgeseg; no torch), run this, copy device.jsonl
# back and pass it to `edgeseg optimize RECIPE --backend tensorrt --budget MS --device-latency device.jsonl`.
if [ -z "$DRY_RUN" ]; then sha256sum -c --quiet {shlex.quote(F.checksums)}; fi
mkdir -p {F.engines} logs
build() {{ # FILE ENGINE PRECISION [SHAPE FLAGS]: one engine from one candidate file
  local onnx="$1" engine="$2" precision="$3"; shift 3
  local flags=()
  if [ "$TRT_MAJOR" -ge 11 ]; then flags=(--stronglyTyped)  # the precision is the file's own types
  elif [ "$precision" = fp16 ]; then flags=(--fp16)
  elif [ "$precision" = int8 ]; then flags=(--int8 --fp16)  # explicit Q/DQ; FP16 where no Q/DQ
  fi
  run "logs/$engine.log" "--onnx={F.candidates}/$onnx" "--saveEngine={F.engines}/$engine" ${{flags[@]+"${{flags[@]}}"}} "$@"
}}
{chr(10).join(lines)}
if [ -n "$DRY_RUN" ]; then echo {shlex.quote(runner)}; exit 0; fi
{runner}
"""


def write_device_files(out: Path, space: list[Candidate], precisions: list[str], files: dict[str, str]) -> None:
    """The checksum list, the engines' metadata and the device script of a TensorRT plan."""
    atomic_write_text(out / F.checksums, "".join(f"{sha}  {F.candidates}/{name}\n" for name, sha in files.items()))
    write_sidecars(out, list(files))
    path = out / F.runner_script
    atomic_write_text(path, device_script(out, space, precisions))
    path.chmod(0o755)


def require_tensorrt() -> None:
    """Timing engines here needs TensorRT and a GPU: otherwise a one-line error pointing at the device route."""
    from edgeseg.export.onnx2trt import tensorrt_status

    available, why = tensorrt_status()
    if not available:
        raise OptimizeError(f"--backend tensorrt: {why.split(';')[0]}; time the candidates on the device: --plan, "
                            f"run {F.runner_script} there, then --device-latency FILE")


def build_here(out: Path, plan: dict[str, Any], forms: list[str], say: Callable[[str], None]) -> list[Path]:
    """Build the engines of ``forms`` here with the TensorRT Python API (kept when already built from the
    same file) for ``edgeseg.benchmark`` to time; a one-line error where TensorRT or a GPU is missing."""
    require_tensorrt()
    from edgeseg.export.trt_build import build_engine

    sides = {c["id"]: c["image_size"] for c in plan["candidates"]}
    engines = []
    for form in forms:
        engine, sha = out / F.engines / engine_of(form), plan["files"][form]
        stamp = engine.with_name(engine.name + ".source.sha256")
        if not (engine.is_file() and stamp.is_file() and stamp.read_text() == sha):
            name, shape = _timed_input(out / F.candidates / form, sides[form.removesuffix(".onnx").rsplit(".", 1)[0]])
            say(f"building {engine.name}")
            build_engine(out / F.candidates / form, engine, precision=_precision(form), input_name=name,
                         profile=None if shape is None else {"min": shape, "opt": shape, "max": shape},
                         workspace_mib=WORKSPACE_MIB, log_path=engine.with_suffix(".log"))
            atomic_write_text(stamp, sha)
        engines.append(engine)
    write_sidecars(out, forms)
    return engines


__all__ = ["build_here", "device_script", "require_tensorrt", "engine_of", "form_of", "shape_args", "write_device_files", "write_sidecars"]
