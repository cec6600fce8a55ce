"""Compression verbs that ``export`` and the pipeline call (compress never imports them back).

- :func:`prune`: structured channel pruning of a checkpoint (Torch-Pruning), fine-tuned and validated.
- :func:`quantize`: an FP32 ONNX file to a QDQ INT8 file, calibrated on the arrays given.

Both are imported lazily: ``edgeseg.compress`` itself loads neither torch nor onnxruntime.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["prune", "quantize"]


def quantize(model_path: str | Path, out_path: str | Path, calibration: Iterable[np.ndarray], *,
             method: str = "minmax", settings: Any = None, exclude: Iterable[str] | dict[str, str] = (),
             input_name: str = "input") -> dict[str, Any]:
    """Calibrate ``model_path`` on ``calibration`` (normalised 1 x C x H x W arrays) and write QDQ INT8.

    Args:
        model_path: FP32 ONNX model.
        out_path: The INT8 file to write.
        calibration: Images from a split never used for validation (export uses the training split).
        method: minmax | entropy | percentile.
        settings: :class:`edgeseg.compress.ptq.QuantSettings` (default: ONNX Runtime CPU).
        exclude: Node names kept in float (with reasons, when a dict).
        input_name: The model's input name.

    Returns:
        Figures: settings, excluded nodes with reasons, quantized / float weighted-node counts.
    """
    from edgeseg.compress.ptq import CPU_SETTINGS, calibrate
    from edgeseg.compress.ptq import quantize as quantize_with_ranges

    ranges = calibrate(model_path, calibration, method=method, input_name=input_name)
    return quantize_with_ranges(model_path, out_path, ranges, settings or CPU_SETTINGS, method=method,
                                exclude=exclude)


def __getattr__(name: str) -> Any:
    if name == "prune":
        from edgeseg.compress.prune import prune

        return prune
    raise AttributeError(f"module 'edgeseg.compress' has no attribute {name!r}")
