"""Predict with any artifact: the files its task renders per image (class-index PNG and overlay, or instances)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgeseg.artifacts import atomic_write_bytes

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
    import io

    img = Image.fromarray(array)
    if palette is not None:
        img = img.convert("P")
        img.putpalette(palette.reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def predict(artifact: str | Path, images: list[str | Path], out: str | Path, *, backend: str | None = None,
            device: str = "cpu", threads: int | None = None, trust_checkpoint: bool = False,
            custom_op_library: str | Path | None = None, data: str | Path | None = None) -> list[dict[str, str]]:
    """Segment ``images`` with ``artifact`` (checkpoint, ONNX, ORT, engine) into ``out``.

    The artifact's task renders each image. Semantic: ``<stem>.mask.png`` (class indices as a
    paletted PNG: pixel value = class id) and ``<stem>.overlay.png``. Instance: ``<stem>.overlay.png``
    (masks, boxes, class and score), ``<stem>.instances.png`` (16-bit instance ids, 0 = background) and
    ``<stem>.detections.json``. Returns the written paths per image (keys: image, mask, overlay, ...).
    ``trust_checkpoint`` / ``custom_op_library``: see :func:`edgeseg.runtime.trust_options`. ``data``:
    the recipe of an ONNX file without edgeseg metadata (its classes and normalisation; required then).
    """
    from edgeseg.artifacts.outputs import check_output_folder
    from edgeseg.data import load_image, normalize
    from edgeseg.evaluate import predict_image
    from edgeseg.foreign import open_artifact
    from edgeseg.progress import track
    from edgeseg.tasks import get_task

    check_output_folder(out)
    rt = open_artifact(artifact, recipe=data, command="predict", backend=backend, device=device, threads=threads,
                       trust_checkpoint=trust_checkpoint, custom_op_library=custom_op_library)
    meta = rt.meta
    task = get_task(meta.task)
    out = Path(out)
    written = []
    for path in track([Path(p) for p in images], description="predict"):
        raw = load_image(path, meta.in_channels)
        prediction = predict_image(rt, normalize(raw, meta.mean, meta.std), meta.stride, task)
        row = {"image": str(path)}
        for suffix, data in task.render(raw, prediction, meta).items():
            target = out / f"{path.stem}.{suffix}"
            atomic_write_bytes(target, data)
            row[suffix.split(".")[0]] = str(target)
        written.append(row)
    return written
