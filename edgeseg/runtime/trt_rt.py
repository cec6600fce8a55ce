"""TensorRT backend for serialized engines (.engine/.plan): trt.Runtime + execution context.

Device buffers are torch CUDA tensors when torch sees a GPU, else cuda-python allocations. The
engine carries no metadata, so it is read from ``<engine>.meta.json`` written by `edgeseg export`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeseg.artifacts import ArtifactError, ModelMeta
from edgeseg.artifacts.metadata import read_sidecar
from edgeseg.runtime.base import BackendError, TensorSpec


class _CudaPython:
    """Minimal buffers + stream over cuda-python (used when torch has no CUDA)."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            try:
                from cuda import cudart  # older cuda-python
            except ImportError as exc:
                raise BackendError("tensorrt backend: needs torch with CUDA or the cuda-python package") from exc
        self.rt = cudart
        self.stream = self._ok(cudart.cudaStreamCreate())

    def _ok(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise BackendError(f"tensorrt backend: CUDA error {err}")
        return rest[0] if rest else None

    def run(self, context: Any, inputs: dict[str, np.ndarray], outputs: dict[str, tuple[tuple[int, ...], Any]]
            ) -> dict[str, np.ndarray]:
        rt, ptrs = self.rt, []
        try:
            for name, arr in inputs.items():
                ptr = self._ok(rt.cudaMalloc(arr.nbytes))
                ptrs.append(ptr)
                self._ok(rt.cudaMemcpy(ptr, arr.ctypes.data, arr.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice))
                context.set_tensor_address(name, int(ptr))
            host = {}
            for name, (shape, dtype) in outputs.items():
                host[name] = np.empty(shape, dtype=dtype)
                ptr = self._ok(rt.cudaMalloc(host[name].nbytes))
                ptrs.append(ptr)
                context.set_tensor_address(name, int(ptr))
            if not context.execute_async_v3(int(self.stream)):
                raise BackendError("tensorrt backend: execute_async_v3 failed")
            for (name, arr), ptr in zip(host.items(), ptrs[len(inputs):]):
                self._ok(rt.cudaMemcpyAsync(arr.ctypes.data, ptr, arr.nbytes,
                                            rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
            self._ok(rt.cudaStreamSynchronize(self.stream))
            return host
        finally:
            for ptr in ptrs:
                rt.cudaFree(ptr)

    def synchronize(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream))


class _Torch:
    """Buffers as torch CUDA tensors on a dedicated stream."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device if device.startswith("cuda") else "cuda")
        self.stream = torch.cuda.Stream(device=self.device)

    def run(self, context: Any, inputs: dict[str, np.ndarray], outputs: dict[str, tuple[tuple[int, ...], Any]]
            ) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.cuda.stream(self.stream):
            keep = {n: torch.from_numpy(a).to(self.device, non_blocking=False) for n, a in inputs.items()}
            outs = {n: torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype, device=self.device)
                    for n, (shape, dtype) in outputs.items()}
            for name, t in {**keep, **outs}.items():
                context.set_tensor_address(name, t.data_ptr())
            if not context.execute_async_v3(self.stream.cuda_stream):
                raise BackendError("tensorrt backend: execute_async_v3 failed")
        self.stream.synchronize()
        return {n: t.cpu().numpy() for n, t in outs.items()}

    def synchronize(self) -> None:
        self.stream.synchronize()


class TensorRTBackend:
    """A deserialized TensorRT engine behind the Backend protocol (numpy in, numpy out)."""

    name: ClassVar[str] = "tensorrt"

    def __init__(self, path: str | Path, *, device: str = "cuda", threads: int | None = None,
                 meta: ModelMeta | None = None) -> None:
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise BackendError("tensorrt backend: the tensorrt package is not installed (TensorRT engines run "
                               "only where TensorRT and an NVIDIA GPU are)") from exc
        path = Path(path)
        self.trt = trt
        self.path, self.threads = path, threads
        self.device = device if device.startswith("cuda") else "cuda"
        try:
            import torch

            self._io: Any = _Torch(self.device) if torch.cuda.is_available() else _CudaPython()
        except ImportError:
            self._io = _CudaPython()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendError(f"{path}: TensorRT cannot deserialize it (built by another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self.inputs = [TensorSpec(n, tuple(d if d >= 0 else ("batch", "channels", "height", "width")[i]
                                           for i, d in enumerate(self.engine.get_tensor_shape(n))),
                                  np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))).name)
                       for n in self.input_names]
        if meta is None:
            try:
                meta = read_sidecar(path)
            except ArtifactError as exc:
                raise BackendError(str(exc)) from None
        self.meta = meta
        self.precision = meta.precision

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        spec = self.inputs[0]
        x = np.ascontiguousarray(x, dtype=np.dtype(spec.dtype))
        if not self.context.set_input_shape(spec.name, tuple(x.shape)):
            raise BackendError(f"{self.path}: input shape {tuple(x.shape)} is outside the engine's profile")
        outputs = {n: (tuple(self.context.get_tensor_shape(n)),
                       np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(n)))) for n in self.output_names}
        outs = self._io.run(self.context, {spec.name: x}, outputs)
        return {n: outs[n].astype(np.float32, copy=False) for n in self.output_names}

    def synchronize(self) -> None:
        """``__call__`` copies outputs to the host, so it has already synchronised; kept for the protocol."""
        self._io.synchronize()
