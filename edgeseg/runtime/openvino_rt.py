"""OpenVINO backend for IR files (.xml + .bin) written by `edgeseg export --format openvino`, and ONNX files."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from edgeseg.artifacts import ArtifactError, ModelMeta
from edgeseg.artifacts.metadata import read_onnx, read_openvino
from edgeseg.artifacts.onnx_safety import check_external_data
from edgeseg.runtime.base import BackendError, TensorSpec


class OpenVINOBackend:
    """An OpenVINO compiled model behind the Backend protocol (CPU by default; ``device="gpu"`` for Intel GPUs)."""

    name: ClassVar[str] = "openvino"

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None,
                 meta: ModelMeta | None = None) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendError("openvino backend: the openvino package is not installed "
                               "(pip install 'edgeseg[openvino]')") from exc
        path = Path(path)
        if path.suffix.lower() == ".onnx":  # OpenVINO reads external data too: only from the model's folder
            check_external_data(path)
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # noqa: BLE001  (OpenVINO raises RuntimeError subclasses of its own)
            raise BackendError(f"{path}: OpenVINO cannot read it: {exc}") from None
        if meta is None:
            try:
                meta = read_onnx(path) if path.suffix.lower() == ".onnx" else read_openvino(model, str(path))
            except ArtifactError as exc:
                raise BackendError(str(exc)) from None
        self.meta = meta
        self.precision = meta.precision
        self.path, self.device, self.threads = path, device, threads
        ov_device = "GPU" if device.lower().startswith(("gpu", "cuda")) else "CPU"
        config: dict[str, object] = {}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if ov_device == "CPU" and meta.precision == "fp32":
            config["INFERENCE_PRECISION_HINT"] = "f32"  # no silent bf16 on CPUs that have it
        self.compiled = core.compile_model(model, ov_device, config)
        self.request = self.compiled.create_infer_request()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self.inputs = [TensorSpec(i.any_name, tuple(d.get_length() if d.is_static else ("batch", "channels",
                                                                                       "height", "width")[k]
                                                    for k, d in enumerate(i.partial_shape)),
                                  np.dtype(i.element_type.to_dtype()).name) for i in model.inputs]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        result = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return {name: np.asarray(result[o]) for name, o in zip(self.output_names, self.compiled.outputs)}

    def synchronize(self) -> None:
        """``infer`` is synchronous."""
