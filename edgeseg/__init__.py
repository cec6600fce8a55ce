"""edgeseg: image segmentation from training to the edge.

The public API is imported lazily so that light entry points (the standalone bench runner on a
device without torch) can import ``edgeseg`` without pulling torch in.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "create_model": "edgeseg.models",
    "list_models": "edgeseg.models",
    "load_recipe": "edgeseg.recipe",
    "train": "edgeseg.train",
    "evaluate": "edgeseg.evaluate",
    "predict": "edgeseg.predict",
    "prune": "edgeseg.compress",
    "quantize": "edgeseg.compress",
    "export": "edgeseg.export",
    "benchmark": "edgeseg.bench",
    "report": "edgeseg.report",
    "optimize": "edgeseg.optimize",
    "run": "edgeseg.pipeline",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")
