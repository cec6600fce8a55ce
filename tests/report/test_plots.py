"""The report's plots with matplotlib's real geometry: an honest score axis, every point label inside its axes."""

from __future__ import annotations

import pytest

from edgeseg.report.plots import MIN_SCORE_SPAN, pareto_figure, score_limits, size_figure
from edgeseg.report.table import build_entries, by_device
from tests.report.test_report import _instance_row, _row

# issue 18: FP32 and INT8 within 0.07 points; a zoomed axis drew that as a cliff
CLOSE = [_row("unet", "fp32", 9.0, 0.8252, size=8_000_000), _row("unet", "int8", 4.0, 0.8245, size=2_000_000),
         _row("unet-lite-with-a-long-name", "fp32", 1.0, 0.8250, size=900_000),
         _row("unet-lite-with-a-long-name", "int8", 0.6, 0.8249, size=300_000),
         _row("segnet", "fp32", 300.0, 0.8251, size=90_000_000)]


def _check(fig) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        assert ax.texts, "every point has a label"
        for text in ax.texts:
            ext = text.get_window_extent(renderer)
            assert (ext.x0 >= box.x0 - 0.5 and ext.x1 <= box.x1 + 0.5 and ext.y0 >= box.y0 - 0.5
                    and ext.y1 <= box.y1 + 0.5), f"label {text.get_text()!r} at {ext} spills out of {box}"
        lo, hi = ax.get_ylim()
        assert hi - lo >= MIN_SCORE_SPAN - 1e-9
        scores = [float(y) for coll in ax.collections for _, y in coll.get_offsets()]
        assert scores and all(lo <= s <= hi for s in scores)


def test_close_scores_get_at_least_a_five_point_axis_centred_on_them_and_labels_stay_inside():
    entries, _ = build_entries([dict(r) for r in CLOSE])
    fig = pareto_figure(by_device(entries))
    _check(fig)
    lo, hi = fig.axes[0].get_ylim()
    assert (lo + hi) / 2 == pytest.approx((0.8245 + 0.8252) / 2, abs=1e-6) and hi - lo < 0.1
    _check(size_figure(entries))


def test_mixed_tasks_and_devices_and_a_wide_range():
    rows = CLOSE[:2] + [_row("unet", "fp32", 3.0, 0.95, device="cuda", label="Jetson"),
                        _row("unet", "int8", 1.5, 0.10, device="cuda", label="Jetson"),
                        _instance_row("fp32", 20.0, 0.40, 23.0), _instance_row("int8", 12.0, 0.399, 15.5)]
    entries, _ = build_entries([dict(r) for r in rows])
    fig = pareto_figure(by_device(entries))
    assert len(fig.axes) == 3
    _check(fig)
    assert fig.axes[2].get_ylim()[1] <= 1.0  # the data near 1 is not pushed past the scale's end


def test_score_limits():
    lo, hi = score_limits([0.8245, 0.8252])
    assert hi - lo == pytest.approx(MIN_SCORE_SPAN) and (lo + hi) / 2 == pytest.approx(0.82485)
    assert score_limits([0.01, 0.02]) == pytest.approx((0.0, MIN_SCORE_SPAN))      # kept at or above 0
    assert score_limits([0.99, 0.995]) == pytest.approx((1 - MIN_SCORE_SPAN, 1.0))  # kept at or below 1
    lo, hi = score_limits([0.2, 0.8])
    assert lo < 0.2 and hi > 0.8 and hi - lo < 0.75  # a wide range is the data plus a margin
    assert score_limits([]) == (0.0, 1.0)
