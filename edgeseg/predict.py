"""Predict with any artifact: the files its task renders per image (class-index PNG and overlay, or instances)."""

from __future__ import annotations

from pathlib import Path

from edgeseg.artifacts import atomic_write_bytes


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
