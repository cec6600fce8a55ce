"""What every dataset shares: the error type, image loading, default normalisation, class names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import UserError

DEFAULT_MEAN = 0.5
DEFAULT_STD = 0.25


class DataError(UserError, ValueError):
    """Bad dataset input; the message names the file (or recipe field) and what was expected."""


def _open(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
        return im
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from None


def load_image(path: str | Path, in_channels: int) -> np.ndarray:
    """An image file as H x W x C uint8, converted to ``in_channels`` (1 = gray, 3 = RGB, 4 = RGBA).

    16-bit grayscale images are scaled to 8 bits; any other channel count must match the file.
    """
    path = Path(path)
    im = _open(path)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = _from_array((arr / top * 255.0).round().astype(np.uint8))
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        im = _from_array((np.clip(arr, 0, 1) * 255).round().astype(np.uint8))
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if in_channels in modes:
        arr = np.asarray(im.convert(modes[in_channels]))
    else:
        arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] != in_channels:
        raise DataError(f"{path}: has {arr.shape[2]} channels but model.in_channels is {in_channels}")
    return np.ascontiguousarray(arr.astype(np.uint8))


def _from_array(arr: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(arr)


def default_mean_std(data_cfg: Any, in_channels: int) -> tuple[list[float], list[float]]:
    """``data.mean``/``data.std`` when given (checked against ``in_channels``), else 0.5 / 0.25.

    Models here train from scratch, so there is no pretrained statistic to match; a fixed centring
    keeps every artifact's pre-processing trivial to reproduce on a device.
    """
    out = []
    for field, default in (("mean", DEFAULT_MEAN), ("std", DEFAULT_STD)):
        value = getattr(data_cfg, field)
        if value is None:
            out.append([default] * in_channels)
            continue
        if len(value) == 1:
            value = list(value) * in_channels
        if len(value) != in_channels:
            raise DataError(f"recipe field data.{field}: expected {in_channels} values (one per input channel), "
                            f"got {len(value)}")
        if field == "std" and any(v <= 0 for v in value):
            raise DataError(f"recipe field data.std: every value must be > 0, got {value}")
        out.append([float(v) for v in value])
    return out[0], out[1]
