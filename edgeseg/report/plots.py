"""Pareto plot (latency vs the task's headline score, one panel per device and task) and size vs score, as PNG
files (matplotlib Agg). Semantic panels plot mIoU, instance panels mask AP."""

from __future__ import annotations

from pathlib import Path

from edgeseg.report.escape import plot_text
from edgeseg.report.table import Entry, by_task, score_label
from edgeseg.tasks import get_task


LABEL_OFFSETS = [(5, 5), (5, -18), (5, 17), (5, -30)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    import io

    from edgeseg.artifacts import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
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


def pareto_plot(groups: dict[str, list[Entry]], path: Path) -> Path:
    """Latency p50 (log x) vs the headline score per device and task; the Pareto frontier is a step line."""
    plt = _pyplot()
    panels = [(d, t, rows) for d, entries in groups.items() for t, rows in by_task(entries).items()]
    panels = panels or [("(no results)", "semantic", [])]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False)
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
    fig.suptitle("latency vs accuracy (o fp32, s int8, ^ other; outlined = Pareto-optimal)", fontsize=10, y=1.04)
    return _save(fig, path)


def size_plot(entries: list[Entry], path: Path) -> Path:
    """File size (log x) vs the headline score, one point per artifact (size does not depend on the device)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.6))
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
    return _save(fig, path)
