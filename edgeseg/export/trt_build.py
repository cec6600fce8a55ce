"""Build a serialized TensorRT engine from ONNX with the TensorRT (10.x / 11.x) Python API.

TensorRT 10: explicit-batch networks (the default), ``BuilderFlag.FP16`` / ``INT8`` (INT8 scales come
from the model's Q/DQ nodes). TensorRT 11 dropped the precision flags: networks are strongly typed,
so the FP16 engine is built from the FP16 ONNX file and the INT8 one from the Q/DQ file as they are.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgeseg.artifacts import atomic_write_bytes, atomic_write_text
from edgeseg.export.formats import ExportError


def _logger(trt: Any, lines: list[str]) -> Any:
    class _Log(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            lines.append(f"[{getattr(severity, 'name', severity)}] {msg}")

    return _Log()


def build_engine(onnx_path: Path, engine_path: Path, *, precision: str,
                 profile: dict[str, tuple[int, ...]] | None, workspace_mib: int = 1024,
                 log_path: Path | None = None, input_name: str = "input") -> dict[str, Any]:
    """Parse ``onnx_path``, build with ``precision`` (fp32 | fp16 | int8), write ``engine_path`` atomically.

    Args:
        onnx_path: Source ONNX (the Q/DQ file for int8; for strongly typed TensorRT the FP16 file for fp16).
        engine_path: Output ``.engine``.
        precision: Target precision.
        profile: ``{"min": shape, "opt": shape, "max": shape}`` for dynamic inputs, else None.
        workspace_mib: Builder workspace pool limit.
        log_path: Where the builder's log goes.
        input_name: The network input the profile applies to.

    Returns:
        Figures: TensorRT version, flags, build seconds, engine size.
    """
    import tensorrt as trt

    lines: list[str] = []
    logger = _logger(trt, lines)
    builder = trt.Builder(logger)
    strongly_typed = not hasattr(trt.BuilderFlag, "FP16")  # TensorRT >= 11
    flags = 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        if precision == "fp16" and not onnx_path.name.endswith(".fp16.onnx"):  # the kit's FP32 file given
            onnx_path = onnx_path.with_name("model.fp16.onnx")
    elif int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    used_flags = []
    if not strongly_typed and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        used_flags.append("FP16")
    if not strongly_typed and precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # with Q/DQ nodes: explicit quantization, no calibrator
        used_flags.append("INT8")
    if profile is not None:
        prof = builder.create_optimization_profile()
        prof.set_shape(input_name, profile["min"], profile["opt"], profile["max"])
        config.add_optimization_profile(prof)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if log_path is not None:
        atomic_write_text(log_path, "\n".join(lines) + "\n")
    if serialized is None:
        raise ExportError(f"TensorRT failed to build {engine_path.name} from {onnx_path.name}"
                          + (f"; log: {log_path}" if log_path else ""))
    atomic_write_bytes(engine_path, bytes(serialized))
    return {"tensorrt": trt.__version__, "source": str(onnx_path), "flags": used_flags,
            "strongly_typed": strongly_typed, "profile": profile, "workspace_mib": workspace_mib,
            "build_seconds": round(seconds, 2), "log": str(log_path) if log_path else ""}
