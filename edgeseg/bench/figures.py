"""Parameters and GMACs of the artifact being benched, from the artifact itself where possible.

A checkpoint on the torch backend is counted on its loaded model (pruned shapes included); an ONNX file
from its graph and initialisers (what ships: BatchNorm folded, so a few parameters fewer than the
checkpoint); other formats (.ort, engines, OpenVINO) from the registry architecture, which needs torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _torch_figures(model: Any, in_channels: int, hw: tuple[int, int]) -> dict[str, Any]:
    from edgeseg.models.profile import count_macs, count_params

    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper: count the module it wraps
    return {"params": count_params(model), "gmacs": round(count_macs(model, hw, in_channels) / 1e9, 4),
            "profile_source": "checkpoint model"}


def _registry_figures(meta: Any, hw: tuple[int, int]) -> dict[str, Any]:
    from edgeseg.models import create_model

    net = create_model(meta.model_name, num_classes=meta.num_classes, in_channels=meta.in_channels,
                       **meta.model_args)
    return {**_torch_figures(net, meta.in_channels, hw), "profile_source": "registry architecture"}


def model_figures(path: Path, backend: Any, hw: tuple[int, int], *, allow_torch: bool = True) -> dict[str, Any]:
    """``{"params", "gmacs", "profile_source"}`` (+ ``profile_error`` when they could not be counted).

    ``allow_torch=False`` (the standalone runner) never imports torch: formats other than ONNX then get
    no figures.
    """
    meta = backend.meta
    try:
        model = getattr(backend, "model", None)
        if allow_torch and model is not None and backend.name == "torch":
            return _torch_figures(model, meta.in_channels, hw)
        if path.suffix.lower() == ".onnx":
            from edgeseg.bench.onnx_profile import onnx_figures

            return onnx_figures(path, (1, meta.in_channels, *hw))
        if allow_torch:
            return _registry_figures(meta, hw)
        return {"params": None, "gmacs": None,
                "profile_error": f"{path.suffix} files are counted with torch (not available to the runner)"}
    except Exception as exc:  # noqa: BLE001  (an unknown/foreign model still gets latency and memory)
        return {"params": None, "gmacs": None, "profile_error": f"{type(exc).__name__}: {exc}"[:300]}
