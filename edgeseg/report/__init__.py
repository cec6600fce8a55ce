"""Latency-accuracy reports from bench result lines: Markdown, HTML, CSV and Pareto plots.

Rows from several files (and several devices: a workstation's `edgeseg bench`, a Jetson's runner)
merge into one report with a table per device.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.artifacts import atomic_write_text
from edgeseg.bench.rows import ResultsError, load_rows

__all__ = ["ResultsError", "report"]

# report format -> file it writes (the recipe's ``report.formats`` choices come from here)
FORMATS: dict[str, str] = {"md": "report.md", "html": "report.html", "csv": "results.csv"}


def report(inputs: list[str | Path], out: str | Path, *, formats: list[str] | None = None,
           title: str = "edgeseg report") -> dict[str, Path]:
    """Render ``inputs`` (JSON-lines result files) into ``out``.

    Returns the written paths by kind: ``md`` (report.md), ``html`` (report.html), ``csv``
    (results.csv), ``pareto`` (pareto.png), ``size_accuracy`` (size_accuracy.png).
    """
    from edgeseg.report.plots import pareto_plot, size_plot
    from edgeseg.report.render import csv_text, html_page, markdown
    from edgeseg.report.table import build_entries, by_device

    formats = list(formats or FORMATS)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ResultsError(f"unknown report format {unknown[0]!r}; expected one of {', '.join(FORMATS)}")
    if not inputs:
        raise ResultsError("no results files given: pass the JSON-lines files `edgeseg bench` wrote")
    from edgeseg.artifacts.outputs import check_output_folder

    check_output_folder(out)
    rows = load_rows(list(inputs))
    if not rows:
        raise ResultsError(f"{', '.join(map(str, inputs))}: no result lines")
    entries, failed = build_entries(rows)
    groups = by_device(entries)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"pareto": pareto_plot(groups, out / "pareto.png"),
             "size_accuracy": size_plot(entries, out / "size_accuracy.png")}
    sources = [str(p) for p in inputs]
    images = {"latency vs accuracy": paths["pareto"], "size vs accuracy": paths["size_accuracy"]}
    render = {"md": lambda: markdown(title, groups, failed, sources, {k: v.name for k, v in images.items()}),
              "html": lambda: html_page(title, groups, failed, sources, images),
              "csv": lambda: csv_text([e for g in groups.values() for e in g])}
    for kind in FORMATS:
        if kind in formats:
            paths[kind] = atomic_write_text(out / FORMATS[kind], render[kind]())
    return paths
