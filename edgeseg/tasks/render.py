"""Drawing decoded predictions into image files (numpy + PIL, no torch): the low half of ``predict``.

Tasks render their predictions with these; :mod:`edgeseg.predict` (the verb) runs an artifact over images
and writes what the task rendered.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Distinct colours (tab10 then tab20's light shades); class i takes entry i mod len.
PALETTE = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
    [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [174, 199, 232], [255, 187, 120],
    [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148], [247, 182, 210], [219, 219, 141],
], dtype=np.uint8)


def class_colours(num_classes: int, palette: dict[str, tuple[int, int, int]] | None = None,
                  classes: list[str] | None = None) -> np.ndarray:
    """``num_classes x 3`` uint8 colours: the recipe's palette where given, else the default cycle."""
    colours = PALETTE[np.arange(num_classes) % len(PALETTE)].copy()
    for i, name in enumerate(classes or []):
        if palette and name in palette:
            colours[i] = palette[name]
    return colours


def overlay(image: np.ndarray, labels: np.ndarray, colours: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a colour-coded label map over an H x W x C uint8 image (grey images become RGB)."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * colours[labels].astype(np.float32)
    return blended.clip(0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """PNG file bytes of an array (paletted when ``palette`` is given)."""
    img = Image.fromarray(array)
    if palette is not None:
        img = img.convert("P")
        img.putpalette(palette.reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
