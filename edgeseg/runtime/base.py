"""The one protocol every runtime is used through (numpy in, numpy out; no torch import here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from edgeseg.artifacts import ModelMeta
from edgeseg.errors import UserError


class BackendError(UserError, RuntimeError):
    """A backend cannot be opened or run (missing dependency, wrong device, bad artifact)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (ints, or strings for dynamic axes) and numpy dtype name of one model input."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """Spatial size when both spatial axes are static, else None."""
        h, w = self.shape[-2], self.shape[-1]
        return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None


@runtime_checkable
class Backend(Protocol):
    """A loaded artifact ready to run: ``backend(x)`` maps an N x C x H x W float32 array to its outputs
    by name (the graph's output names, in graph order), never by position."""

    name: ClassVar[str]
    inputs: list[TensorSpec]
    output_names: list[str]
    meta: ModelMeta
    precision: str
    device: str
    threads: int | None

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]: ...

    def synchronize(self) -> None: ...
