"""ONNX Runtime backend for .onnx and .ort files (CPU; CUDA/TensorRT execution providers when present)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from edgeseg.artifacts import ArtifactError, ModelMeta
from edgeseg.artifacts.metadata import read_ort_session
from edgeseg.artifacts.onnx_safety import UnreadableOnnx, check_onnx
from edgeseg.runtime.base import BackendError, TensorSpec

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
              "tensor(int8)": "int8", "tensor(int64)": "int64"}


class OrtBackend:
    """An ``onnxruntime.InferenceSession`` behind the Backend protocol."""

    name: ClassVar[str] = "onnxruntime"

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None,
                 provider: str | None = None, meta: ModelMeta | None = None,
                 optimization: str = "all", custom_op_library: str | Path | None = None,
                 foreign: bool = False, spinning: bool = True) -> None:
        """Open ``path``; ``custom_op_library`` is a native library the user trusts for custom operators
        (without it a model with custom-domain operators is refused, see :mod:`edgeseg.artifacts.onnx_safety`).
        ``foreign=True`` also opens a file without edgeseg metadata (``meta`` then comes from its graph
        and :attr:`foreign` is set): enough for latency and memory; accuracy needs a recipe.
        ``spinning=False`` stops idle intra-op threads from spin-waiting: needed when several sessions
        live in one process and are timed in turn (an idle session's spinning threads steal the cores)."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError("onnxruntime backend: the onnxruntime package is not installed") from exc
        path = Path(path)
        if path.suffix.lower() == ".onnx":  # before ORT reads any external data or needs a library
            try:
                check_onnx(path, custom_op_library=custom_op_library)
            except UnreadableOnnx as exc:
                raise BackendError(f"{path}: onnxruntime cannot load it: {str(exc).split(': ', 1)[1]}") from None
        opts = ort.SessionOptions()
        if custom_op_library is not None:
            try:
                opts.register_custom_ops_library(str(custom_op_library))
            except Exception as exc:  # noqa: BLE001  (ORT raises its own exception types)
                raise BackendError(f"{custom_op_library}: onnxruntime cannot load this custom-op library: "
                                   f"{str(exc).splitlines()[0]}") from None
        if not spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[optimization]
        providers = self._providers(ort, device, provider)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # noqa: BLE001  (ORT raises its own exception types)
            raise BackendError(f"{path}: onnxruntime cannot load it: {exc}") from None
        self.path = path
        self.device = device
        self.threads = threads
        self.provider = self.session.get_providers()[0]
        self.foreign = False
        try:
            self.meta = meta or read_ort_session(self.session, source=str(path))
        except ArtifactError as exc:
            if not foreign:
                raise BackendError(str(exc)) from None
            self.meta, self.foreign = graph_meta(self.session, path), True
        self.precision = self.meta.precision
        self.inputs = [TensorSpec(i.name, tuple(d if isinstance(d, int) else str(d) for d in i.shape),
                                  _ORT_TYPES.get(i.type, i.type)) for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._in_name, self._in_dtype = self.inputs[0].name, np.dtype(self.inputs[0].dtype)

    @staticmethod
    def _providers(ort: object, device: str, provider: str | None) -> list[str]:
        available = ort.get_available_providers()  # type: ignore[attr-defined]
        if provider:
            wanted = [provider]
        elif device.startswith("cuda"):
            wanted = ["CUDAExecutionProvider"]
        else:
            wanted = ["CPUExecutionProvider"]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise BackendError(f"onnxruntime backend: execution provider {missing[0]} is not available in this "
                               f"onnxruntime build (available: {available})")
        return wanted + (["CPUExecutionProvider"] if "CPUExecutionProvider" not in wanted else [])

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=self._in_dtype)
        return dict(zip(self.output_names, self.session.run(self.output_names, {self._in_name: x})))

    def synchronize(self) -> None:
        """``session.run`` returns host arrays, so it has already synchronised."""


def graph_meta(session: object, path: Path) -> ModelMeta:
    """What the graph alone says about a file without edgeseg metadata (bring-your-own ONNX).

    Channels and a fixed input size come from the first input's shape, the class count from the first
    output's channel axis when it is fixed; normalisation is unknown (identity), the stride 1.
    """
    shape = list(session.get_inputs()[0].shape)  # type: ignore[attr-defined]
    out_shape = list(session.get_outputs()[0].shape)  # type: ignore[attr-defined]

    def fixed(dims: list[object], i: int) -> int:
        return dims[i] if len(dims) > i and isinstance(dims[i], int) and dims[i] > 0 else 0  # type: ignore[return-value]

    channels = fixed(shape, 1) or 3
    classes = fixed(out_shape, 1)
    return ModelMeta(model_name=path.stem, family="foreign", task="semantic", num_classes=classes,
                     in_channels=channels, classes=[], mean=[0.0] * channels, std=[1.0] * channels,
                     input_size=(fixed(shape, 2), fixed(shape, 3)), stride=1, precision="unknown")
