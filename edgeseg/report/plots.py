"""Pareto plot (latency vs the task's headline score, one panel per device and task) and size vs score, as PNG
files (matplotlib Agg). Semantic panels plot mIoU, instance panels mask AP.

The score axis spans at least :data:`MIN_SCORE_SPAN` (5 points) centred on the data, so a 0.07-point
difference between FP32 and INT8 looks as small as it is; point labels are moved inside their axes.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.report.escape import plot_text
from edgeseg.report.table import Entry, by_task, score_label, task_order
from edgeseg.tasks import get_task


LABEL_OFFSETS = [(5, 5), (5, -18), (5, 17), (5, -30)]
MIN_SCORE_SPAN = 0.05  # headline scores are fractions: 5 points of mIoU / mask AP at least
DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    import io

    from edgeseg.artifacts import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _log_x(ax) -> None:
    """Log x axis with plain-number ticks at 1, 2, 5 x 10^k."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    ax.xaxis.set_major_formatter(fmt)
    ax.xaxis.set_minor_formatter(NullFormatter())


def score_limits(scores: list[float], min_span: float = MIN_SCORE_SPAN) -> tuple[float, float]:
    """Score axis limits: the data plus a margin, at least ``min_span`` wide, centred on the data and kept
    within 0..1 where the data is."""
    if not scores:
        return 0.0, 1.0
    lo, hi = min(scores), max(scores)
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    # Shift (not shrink) a range that crosses 0 or 1, unless the data itself lies outside 0..1.
    if lo < 0 <= min(scores):
        lo, hi = 0.0, hi - lo
    if hi > 1 >= max(scores):
        lo, hi = lo - (hi - 1), 1.0
    return lo, hi


def _keep_labels_inside(ax) -> None:
    """Move each point label that spills over the axes' edge back inside: first to the other side of its
    point, then by the overhang (matplotlib's own geometry, at the DPI the PNG is written with)."""
    ax.set_xlim(ax.get_xlim())  # freeze the autoscaled limits the labels are placed against
    ax.set_ylim(ax.get_ylim())
    renderer = ax.figure.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    to_points = 72.0 / ax.figure.dpi
    for text in ax.texts:
        dx, dy = text.xyann
        ext = text.get_window_extent(renderer)
        if ext.x1 > box.x1 and dx > 0:
            text.set_horizontalalignment("right")
            dx = -dx
        if ext.y1 > box.y1 and dy > 0:
            text.set_verticalalignment("top")
            dy = -dy
        text.xyann = (dx, dy)
        ext = text.get_window_extent(renderer)
        shift_x = max(box.x0 - ext.x0, 0) - max(ext.x1 - box.x1, 0)
        shift_y = max(box.y0 - ext.y0, 0) - max(ext.y1 - box.y1, 0)
        text.xyann = (dx + shift_x * to_points, dy + shift_y * to_points)


def pareto_plot(groups: dict[str, list[Entry]], path: Path) -> Path:
    """Latency p50 (log x) vs the headline score per device and task; the Pareto frontier is a step line."""
    return _save(pareto_figure(groups), path)


def pareto_figure(groups: dict[str, list[Entry]]):
    """The figure :func:`pareto_plot` writes (one panel per device and task)."""
    plt = _pyplot()
    panels = [(d, t, rows) for d, entries in groups.items() for t, rows in by_task(entries).items()]
    panels = panels or [("(no results)", task_order()[0], [])]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False, dpi=DPI)
    for ax, (device, task, rows) in zip(axes[0], panels):
        pts = [e for e in rows if e.p50_ms and e.score is not None]
        # Latency per call is comparable only at one batch size: plot the smallest one measured.
        batch = min((e.batch for e in pts), default=1)
        pts = [e for e in pts if e.batch == batch]
        datasets = sorted({e.dataset for e in pts})
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, ds in enumerate(datasets):
            color = colors[i % len(colors)]
            ds_pts = [e for e in pts if e.dataset == ds]
            acc = ds_pts[0].row.get("accuracy") or {}
            name = (acc.get("dataset") or {}).get("name") or acc.get("data") or "accuracy data"
            for j, e in enumerate(sorted(ds_pts, key=lambda e: e.p50_ms)):
                marker = "o" if e.precision == "fp32" else ("s" if e.precision == "int8" else "^")
                ax.scatter(e.p50_ms, e.score, marker=marker, s=60 if e.pareto else 30, color=color,
                           edgecolors="black" if e.pareto else "none", zorder=3)
                # Neighbouring points often share a y value (INT8 ~ FP32 accuracy): stagger the labels.
                ax.annotate(plot_text(f"{e.model} {e.precision}") + "\n" + plot_text(f"{e.backend} t{e.threads}"),
                            (e.p50_ms, e.score),
                            fontsize=7, xytext=LABEL_OFFSETS[j % len(LABEL_OFFSETS)], textcoords="offset points")
            # Scores on different images are not comparable: one frontier per accuracy dataset.
            front = sorted((e for e in ds_pts if e.pareto), key=lambda e: e.p50_ms)
            if len(front) > 1:
                ax.step([e.p50_ms for e in front], [e.score for e in front], where="post", color=color, lw=1,
                        ls="--", label=plot_text(f"Pareto frontier ({name})"))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
        if pts:
            _log_x(ax)
        multi = len({t for _, t, _ in panels}) > 1
        ax.set_title(plot_text(f"{device}, batch {batch}" + (f", {task}" if multi else "")), fontsize=9)
        ax.set_xlabel("latency p50 per call (ms, log scale)")
        ax.set_ylabel(f"{get_task(task).headline.label} (validation split)")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_ylim(*score_limits([e.score for e in pts]))
        _keep_labels_inside(ax)
    fig.suptitle("latency vs accuracy (o fp32, s int8, ^ other; outlined = Pareto-optimal)", fontsize=10, y=1.04)
    return fig


def size_plot(entries: list[Entry], path: Path) -> Path:
    """File size (log x) vs the headline score, one point per artifact (size does not depend on the device)."""
    return _save(size_figure(entries), path)


def size_figure(entries: list[Entry]):
    """The figure :func:`size_plot` writes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.6), dpi=DPI)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    datasets = sorted({e.dataset for e in entries})
    seen = set()
    points = []
    for e in sorted(entries, key=lambda e: (e.size_mb or 0, e.score or 0)):
        key = (e.row["artifact"].get("sha256"), e.artifact, e.dataset)
        if key in seen or e.size_mb is None or e.score is None:
            continue
        seen.add(key)
        points.append(e)
    for j, e in enumerate(points):
        color = colors[datasets.index(e.dataset) % len(colors)]  # one colour per accuracy dataset, as in pareto.png
        ax.scatter(e.size_mb, e.score, zorder=3, color=color, marker="o" if e.precision == "fp32" else "s")
        ax.annotate(plot_text(e.model) + "\n" + plot_text(e.artifact), (e.size_mb, e.score), fontsize=7,
                    xytext=LABEL_OFFSETS[j % len(LABEL_OFFSETS)], textcoords="offset points")
    if seen:
        _log_x(ax)
    ax.set_xlabel("artifact size (MB, log scale)")
    ax.set_ylabel(f"{score_label(entries)} (validation split)")
    ax.set_title("size vs accuracy", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_ylim(*score_limits([e.score for e in points if e.score is not None]))
    _keep_labels_inside(ax)
    return fig
