"""Markdown, self-contained HTML and CSV renderings of report entries.

Each device gets one table per task present (semantic and instance rows side by side in the same
report), with the task's own accuracy columns; a semantic-only report has one table per device.
"""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path
from typing import Any

from edgeseg.report.escape import csv_value, html_text, md_text
from edgeseg.report.table import Entry, by_task, score_label, side_by_side, task_order
from edgeseg.tasks import get_task

HEAD = ["model", "artifact", "precision", "backend", "threads", "batch", "size (MB)", "params (M)", "GMACs",
        "p50 (ms)", "p90 (ms)"]


def columns(task: str) -> list[str]:
    """Table columns for ``task``: latency with postprocess where the task has one, its accuracy columns."""
    t = get_task(task)
    return (HEAD + (["p50 + postprocess (ms)"] if t.has_postprocess else []) + ["img/s", "peak mem (MB)"]
            + [c.label for c in t.report_columns]
            + ["images", "speed-up vs FP32", f"Δ{t.headline.label} (pts)", "Pareto"])




def fmt(v: Any, spec: str) -> str:
    """`v` formatted with `spec`, or an en dash for a missing value."""
    return "–" if v is None else format(v, spec)


def speedup_text(e: Entry) -> str:
    """'1.80x', with the baseline's backend named when it is not the row's own."""
    if e.speedup is None:
        return "–"
    return f"{e.speedup:.2f}x" + (f" (vs {e.baseline_backend})" if e.baseline_backend else "")


def cells(e: Entry) -> list[str]:
    """The table cells of one entry, in ``columns(e.task)`` order; noisy latencies get a '~'."""
    noisy = "~" if e.noisy else ""
    t = get_task(e.task)
    return [e.model, e.artifact, e.precision, e.backend, fmt(e.threads, "d") if e.threads else "default", str(e.batch),
            fmt(e.size_mb, ".2f"), fmt(e.params / 1e6 if e.params else None, ".2f"), fmt(e.gmacs, ".3g"),
            noisy + fmt(e.p50_ms, ".2f"), noisy + fmt(e.p90_ms, ".2f"),
            *([noisy + fmt(e.e2e_p50_ms, ".2f")] if t.has_postprocess else []),
            fmt(e.throughput, ".1f"), fmt(e.peak_mb, ".0f"),
            *(fmt(e.figures.get(c.key), c.fmt) for c in t.report_columns), fmt(e.images, "d"),
            speedup_text(e), fmt(e.score_delta_points, "+.2f"), "★" if e.pareto else ""]


def _machine_line(entries: list[Entry]) -> str:
    row = entries[0].row
    m, v = row.get("machine", {}), row.get("versions", {})
    gpus = ", ".join(f"{g.get('name')} (driver {g.get('driver')})" if isinstance(g, dict) else str(g)
                     for g in m.get("gpus") or []) or "no GPU"
    libs = ", ".join(f"{k} {v[k]}" for k in ("onnxruntime", "torch", "tensorrt", "openvino") if k in v)
    return (f"{m.get('cpu', '?')}, {m.get('usable_cores', m.get('cores', '?'))} cores, {gpus}; "
            f"{m.get('os', '')}; python {v.get('python', m.get('python', '?'))}; {libs}")


def _md_row(values: list[str]) -> str:
    return "| " + " | ".join(md_text(v) for v in values) + " |"


def intro(entries: list[Entry]) -> str:
    """The paragraph under the title (Markdown and HTML alike): what the columns and marks mean."""
    label = score_label(entries)
    delta = f"Δ score ({label})" if " or " in label else f"Δ{label}"
    return ("Latency per call (the network alone; instance models also with their postprocess); "
            f"speed-up and {delta} are against the FP32 artifact of the same model on the same device, threads "
            "and batch; ★ marks the Pareto frontier (no other result at the same batch size, scored on the same "
            "images, is both faster and more accurate); "
            "~ marks a noisy latency (p90 more than 15% above p50, too few runs, stopped by the time cap, or "
            "other processes competing for the cores; reasons under each table). Accuracy is on the whole "
            "split named per row, with the image count.")


def table_notes(entries: list[Entry]) -> list[tuple[str, str]]:
    """(label, text) notes under a device's table: the same in Markdown and HTML."""
    notes = []
    no_acc = sorted({f"{e.artifact} on {e.backend} ({e.row['accuracy']['error']})"
                     for e in entries if (e.row.get("accuracy") or {}).get("error")})
    splits = sorted({f"{e.row['accuracy'].get('split')} of {e.row['accuracy'].get('data')}"
                     for e in entries if (e.row.get("accuracy") or {}).get("split")})
    noisy = [e for e in entries if e.noisy]
    if no_acc:
        notes.append(("Accuracy failed", "; ".join(no_acc)))
    if splits:
        notes.append(("Accuracy data", "; ".join(splits)))
    if noisy:
        notes.append(("Noisy", "; ".join(f"{e.artifact} ({', '.join(e.notes)})" for e in noisy)))
    return notes


def failed_text(r: dict[str, Any]) -> str:
    """One 'Not measured' line."""
    return (f"{r['artifact'].get('name')} on {r.get('backend')} (threads {r.get('threads')}, batch {r.get('batch')}): "
            f"{r['error']}")


def markdown(title: str, groups: dict[str, list[Entry]], failed: list[dict[str, Any]], sources: list[str],
             images: dict[str, str]) -> str:
    """The report as Markdown (plots referenced by relative file name); every value is escaped text."""
    all_entries = [e for g in groups.values() for e in g]
    out = [f"# {md_text(title)}", "", f"Results from {', '.join(md_text(s) for s in sources)}. "
           f"{md_text(intro(all_entries))}", ""]
    for device, entries in groups.items():
        out += [f"## {md_text(device)}", "", f"Machine: {md_text(_machine_line(entries))}", ""]
        tasks = by_task(entries)
        for task, rows in tasks.items():
            cols = columns(task)
            if len(tasks) > 1:
                out += [f"{task.capitalize()} segmentation ({get_task(task).headline.label}):", ""]
            out += [_md_row(cols), "|" + "---|" * len(cols)]
            out += [_md_row(cells(e)) for e in rows] + [""]
        out.pop()
        for label, text in table_notes(entries):
            out += ["", f"{label}: " + md_text(text)]
        out.append("")
    if len(groups) > 1:
        headers, rows = side_by_side(groups)
        out += ["## Devices side by side", "", "Best p50 over the thread settings at the smallest batch measured; "
                "~ noisy.", "", _md_row(headers), "|" + "---|" * len(headers)]
        out += [_md_row(r) for r in rows] + [""]
    if failed:
        out += ["## Not measured", ""] + ["- " + md_text(failed_text(r)) for r in failed] + [""]
    out += [f"![{alt}]({name})" for alt, name in images.items()] + [""]
    return "\n".join(out)


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def html_page(title: str, groups: dict[str, list[Entry]], failed: list[dict[str, Any]], sources: list[str],
              images: dict[str, Path]) -> str:
    """A self-contained HTML page (plots embedded as data URIs); every value is escaped text."""
    esc = html_text
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
             "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
             "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}"
             "td:nth-child(-n+4){text-align:left}tr.pareto{background:#eef8ee}"
             "img{max-width:100%}</style></head><body>",
             f"<h1>{esc(title)}</h1><p>Results from {esc(', '.join(sources))}. "
             f"{esc(intro([e for g in groups.values() for e in g]))}</p>"]
    for device, entries in groups.items():
        parts.append(f"<h2>{esc(device)}</h2><p>Machine: {esc(_machine_line(entries))}</p>")
        tasks = by_task(entries)
        for task, rows in tasks.items():
            if len(tasks) > 1:
                parts.append(f"<h3>{esc(task.capitalize())} segmentation</h3>")
            parts.append("<table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns(task)) + "</tr>")
            for e in rows:
                parts.append(f"<tr class='{'pareto' if e.pareto else ''}'>"
                             + "".join(f"<td>{esc(c)}</td>" for c in cells(e)) + "</tr>")
            parts.append("</table>")
        parts += [f"<p><strong>{esc(label)}:</strong> {esc(text)}</p>" for label, text in table_notes(entries)]
    if len(groups) > 1:
        headers, rows = side_by_side(groups)
        parts.append("<h2>Devices side by side</h2><p>Best p50 over the thread settings at the smallest batch "
                     "measured; ~ noisy.</p><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
                     + "</table>")
    if failed:
        parts.append("<h2>Not measured</h2><ul>" + "".join(
            f"<li>{esc(failed_text(r))}</li>" for r in failed) + "</ul>")
    for alt, path in images.items():
        parts.append(f"<h2>{esc(alt)}</h2><img alt='{esc(alt)}' src='{_png_data_uri(path)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


CSV_FIELDS = ["device", "model", "task", "precision", "backend", "threads", "batch", "artifact", "size_mb", "params",
              "gmacs", "p50_ms", "p90_ms", "e2e_p50_ms", "throughput", "peak_mb", "metric", "score"]
CSV_TAIL = ["images", "speedup", "score_delta_points", "baseline", "pareto", "noisy", "noise_reason"]


def csv_fields() -> list[str]:
    """CSV columns: the entry's own fields, then every task's report columns by their result keys."""
    figures = [c.key for t in task_order() for c in get_task(t).report_columns]
    return CSV_FIELDS + list(dict.fromkeys(figures)) + CSV_TAIL


def csv_text(entries: list[Entry]) -> str:
    """One CSV row per entry with machine-friendly column names (a task's figures blank on other tasks' rows)."""
    buf = io.StringIO()
    fields = csv_fields()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    own = [f for f in CSV_FIELDS + CSV_TAIL if f not in ("metric", "noise_reason")]
    for e in entries:
        row = {**{k: e.figures.get(k) for k in fields}, **{f: getattr(e, f) for f in own},
               "metric": get_task(e.task).headline.key, "noise_reason": "; ".join(e.notes)}
        writer.writerow({k: csv_value(v) for k, v in row.items()})
    return buf.getvalue()
