"""Instance export parity counts every scored detection, so a weak model cannot pass over zero detections."""

from __future__ import annotations

import numpy as np

from edgeseg.tasks import get_task


def _graph_outputs(boxes: np.ndarray, score: float) -> dict[str, np.ndarray]:
    """A graph with its postprocess inside: 3 slots, all scored ``score`` (below the usual 0.05 threshold)."""
    n = len(boxes)
    masks = np.zeros((1, n, 32, 32), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        masks[0, i, y0:y1, x0:x1] = 1.0
    return {"det_boxes": boxes[None].astype(np.float32), "det_scores": np.full((1, n), score, np.float32),
            "det_labels": np.zeros((1, n), np.int64), "det_masks": masks}


def test_low_scored_detections_that_moved_fail_parity() -> None:
    task = get_task("instance")
    ref_boxes = np.array([[2, 2, 10, 10], [12, 12, 20, 20], [20, 2, 30, 12]], np.float32)
    ref = _graph_outputs(ref_boxes, score=0.02)
    moved = _graph_outputs(np.clip(ref_boxes + 9, 0, 32), score=0.02)  # no box overlaps its old place enough
    x = [np.zeros((1, 3, 32, 32), np.float32)]
    same = task.parity([ref], [ref], x)
    assert same["detections"] == 3 and same["agreement"] == 1.0
    figures = task.parity([ref], [moved], x)
    assert figures["detections"] == 3 and figures["agreement"] < 1.0
