"""ExecuTorch backend for .pte files (XNNPACK delegate: the CPU kernels Android and iOS apps run).

The metadata travels inside the program as constant methods (``edgeseg_meta``: the ModelMeta dict as
JSON; ``edgeseg_outputs``: the output names as JSON; :mod:`edgeseg.artifacts.metadata`), so the .pte
alone is enough to bench, evaluate and predict, and a phone app reads the class table and
normalisation from the same file.

Threads: the Python wheel has one process-wide threadpool shared by every loaded program; XNNPACK
keeps a pointer to it from the moment a program is loaded, so resizing it (``_unsafe_reset_threadpool``)
under a loaded program would crash that program. ``threads`` therefore resizes the pool only while no
program loaded with another count is open (else a BackendError says so), before loading; every call
checks the pool still has the size the program was loaded with. Without ``threads`` the pool keeps its
size (the runtime's default: one thread per core it detects), which is read back and recorded. Bench
thread counts one after the other (``edgeseg bench --threads 1,2`` does: each backend is closed before
the next opens). The wheel's runtime links libtorch, so it needs torch installed even though
edgeseg's own code here only uses it to hand tensors to the runtime.
"""

from __future__ import annotations

import re
import weakref
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeseg.artifacts import ArtifactError, ModelMeta
from edgeseg.artifacts.metadata import read_pte
from edgeseg.quiet import quiet_import, quiet_tools
from edgeseg.runtime.base import BackendError, TensorSpec

INSTALL_HINT = "pip install 'edgeseg[executorch]'"
# An ExecuTorch program is a flatbuffer whose file identifier, bytes 4-7, is "ET" and a 2-digit schema
# version ("ET12"); checked before the runtime is imported (tens of seconds on a busy machine).
PTE_IDENTIFIER = re.compile(rb"ET[0-9]{2}")
_POOL_STARTED = False
_OPEN: weakref.WeakSet[Any] = weakref.WeakSet()  # loaded programs: the threadpool must not be resized under them


def check_pte_header(path: str | Path) -> Path:
    """``path`` starts like an ExecuTorch program (its flatbuffer file identifier); BackendError naming it if not."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise BackendError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(head) < 8 or not PTE_IDENTIFIER.fullmatch(head[4:8]):
        raise BackendError(f"{path}: not an ExecuTorch program (expected the file identifier 'ET' + 2 digits at "
                           f"byte 4 of a .pte, found {head[4:8]!r}); export one with "
                           "`edgeseg export --format executorch`")
    return path


def _portable_lib() -> Any:
    """The runtime's bindings, imported and their threadpool started quietly: the import pulls in torchao,
    which reports optional native libraries it cannot load, and the pool's CPU probing prints
    ``[cpuinfo_utils.cpp:...]`` lines."""
    try:
        lib = quiet_import("executorch.extension.pybindings.portable_lib")
    except ImportError as exc:
        raise BackendError(f"executorch backend: the executorch package is not installed ({INSTALL_HINT})") from exc
    global _POOL_STARTED
    if not _POOL_STARTED:
        with quiet_tools(native=True):
            lib._threadpool_get_thread_count()
        _POOL_STARTED = True
    return lib


def thread_count() -> int:
    """Threads of the runtime's process-wide threadpool (what XNNPACK runs on)."""
    return int(_portable_lib()._threadpool_get_thread_count())


def set_threads(threads: int) -> int:
    """Resize the process-wide threadpool to ``threads`` before a program is loaded; returns the count in effect.

    Raises BackendError when a program loaded with another count is still open: its XNNPACK runtime
    holds the old pool, which a resize destroys.
    """
    lib = _portable_lib()
    if int(lib._threadpool_get_thread_count()) != threads:
        other = next((b for b in list(_OPEN) if b.threads != threads), None)
        if other is not None:
            raise BackendError(f"executorch backend: {other.path} is open with {other.threads} threads and the "
                               f"runtime has one threadpool per process; close it before opening a program with "
                               f"{threads} threads (resizing the pool under it would crash it)")
        lib._unsafe_reset_threadpool(int(threads))
    return int(lib._threadpool_get_thread_count())


class ExecuTorchBackend:
    """An ExecuTorch program's ``forward`` behind the Backend protocol (CPU; static input shape)."""

    name: ClassVar[str] = "executorch"

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None,
                 meta: ModelMeta | None = None) -> None:
        if not device.startswith("cpu"):
            raise BackendError(f"executorch backend: runs on the CPU (XNNPACK) only, not on {device!r}")
        path = check_pte_header(path)
        _portable_lib()
        import torch  # the wheel's runtime takes torch tensors (it links libtorch anyway)

        Runtime = quiet_import("executorch.runtime").Runtime
        self._torch = torch
        self.threads = set_threads(threads) if threads else thread_count()
        try:  # the runtime prints its CPU probing ([cpuinfo_utils.cpp:...]) to stderr when it starts
            with quiet_tools(native=True):
                self.program = Runtime.get().load_program(path)
                self.method = self.program.load_method("forward")
        except Exception as exc:  # noqa: BLE001  (the runtime raises RuntimeError/ValueError with error codes)
            raise BackendError(f"{path}: ExecuTorch cannot load it: {str(exc).strip().splitlines()[0]}") from None
        try:
            stored_meta, self.output_names = read_pte(self.program, str(path))
        except ArtifactError as exc:
            raise BackendError(str(exc)) from None
        self.meta = meta or stored_meta
        self.path, self.device, self.precision = path, "cpu", self.meta.precision
        _OPEN.add(self)
        self.provider = "executorch-xnnpack"
        info = self.method.metadata
        spec = info.input_tensor_meta(0)
        self.inputs = [TensorSpec("input", tuple(int(s) for s in spec.sizes()), "float32")]
        if len(self.output_names) != info.num_outputs():
            raise BackendError(f"{path}: the program has {info.num_outputs()} outputs but its metadata names "
                               f"{len(self.output_names)}")

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        shape = tuple(self.inputs[0].shape)
        if tuple(x.shape) != shape:
            raise BackendError(f"{self.path}: the program takes a fixed input of {list(shape)}, got {list(x.shape)} "
                               "(ExecuTorch programs are exported at one size)")
        if thread_count() != self.threads:  # resized by someone else since loading: running would crash
            raise BackendError(f"{self.path}: the ExecuTorch threadpool was resized to {thread_count()} threads after "
                               f"this program was loaded with {self.threads}; open it again")
        # a fresh contiguous tensor: numpy's x[None] carries a 0 stride the runtime may reject
        t = self._torch.from_numpy(np.asarray(x, dtype=np.float32)).clone(memory_format=self._torch.contiguous_format)
        try:  # not silenced: this is the timed call (the runtime's own reason goes to stderr first)
            outs = self.method.execute([t])
        except RuntimeError as exc:
            raise BackendError(f"{self.path}: ExecuTorch cannot run it on a {list(shape)} input: "
                               f"{str(exc).strip().splitlines()[0]}") from None
        return {n: o.numpy() for n, o in zip(self.output_names, outs)}

    def synchronize(self) -> None:
        """``execute`` is synchronous and returns host tensors."""
