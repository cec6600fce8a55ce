"""Hostile result lines: names render as text everywhere, oversized lines are refused (issue #12)."""

from __future__ import annotations

import csv
import json
import re

import pytest

from edgeseg.bench.rows import MAX_DEPTH, MAX_LINE_CHARS, MAX_STRING_CHARS, ResultsError
from edgeseg.report import report
from edgeseg.report.escape import md_text
from tests.report.test_report import _row

SCRIPT = "<script>alert(1)</script>"
EVIL_MODEL = f"m|{SCRIPT}\n| x | [link](http://e.x) `code` $\\nocommand$"


def _hostile_rows():
    rows = [_row(EVIL_MODEL, "fp32", 10.0, 0.8, label=f"dev|{SCRIPT}", backend="ort|<b>"),
            _row(EVIL_MODEL, "int8", 5.0, 0.79, label=f"dev|{SCRIPT}", backend="ort|<b>"),
            _row("plain", "fp32", 7.0, 0.7, label="other device")]
    rows[1]["artifact"]["name"] = f"=cmd|' /C calc'!A0 {SCRIPT}.onnx"
    rows[1]["latency"]["noise_reason"] = f"noisy|{SCRIPT}\nsecond line"
    rows[1]["noisy"] = True
    for r in rows[:2]:
        r["machine"]["cpu"] = f"cpu</p>{SCRIPT}"
    rows.append({**_row("plain", "fp32", 1.0, 0.7), "error": f"failed | {SCRIPT}\n# heading",
                 "artifact": {"name": f"bad|{SCRIPT}.onnx", "path": "p"}})
    return rows


def test_hostile_names_render_as_text(tmp_path):
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in _hostile_rows()))
    paths = report([results], tmp_path / "out", title=f"t {SCRIPT}")
    page = paths["html"].read_text()
    assert "<script" not in page.lower() and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "ort|&lt;b&gt;" in page
    assert "cpu&lt;/p&gt;&lt;script&gt;" in page and page.count("<p>") == page.count("</p>")
    md = paths["md"].read_text()
    assert "<script" not in md.lower() and "<b>" not in md and "[link]" not in md and "\\[link\\](http" in md
    rows = [re.split(r"(?<!\\)\|", line[2:-2]) for line in md.splitlines() if line.startswith("| ")]
    assert len(rows) == 3 + 2 + 4  # header + measured rows per device table, header + 3 side-by-side rows
    assert all(len(r) == len(rows[0]) for r in rows[:3]) and all(len(r) == 6 for r in rows[5:])
    evil = [r for r in rows if r[2].strip() == "int8"]
    assert len(evil) == 2 and all(r[0].strip() == md_text(EVIL_MODEL) for r in evil)  # device table + side by side
    assert f"## dev\\|{md_text(SCRIPT)}" in md.splitlines()
    assert "second line" in md and "\n# heading" not in md and "\nsecond line" not in md
    with paths["csv"].open() as fh:
        names = [r["artifact"] for r in csv.DictReader(fh)]
    assert any(n.startswith("'=cmd") for n in names) and not any(n.startswith("=") for n in names)
    assert paths["pareto"].stat().st_size > 0  # the $...$ in a name is text, not (broken) mathtext


def _write(tmp_path, row_text: str):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_row("ok", "fp32", 1.0, 0.5)) + "\n" + row_text + "\n")
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["model"].update(name="x" * (MAX_STRING_CHARS + 1)),
     rf"r.jsonl:2: field model.name is a {MAX_STRING_CHARS + 1}-character string"),
    (lambda r: r.update(notes=[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]),
     rf"r.jsonl:2: field notes(\.0)+ is nested more than {MAX_DEPTH} levels deep"),
    (lambda r: r["accuracy"].update(per_class=list(range(20_000))),
     r"r.jsonl:2: field accuracy.per_class has 20000 items"),
    (lambda r: r["latency"].update(p50_ms="12 ms"), r"r.jsonl:2: field latency.p50_ms is str, expected a number"),
    (lambda r: r.update(batch=True), r"r.jsonl:2: field batch is bool, expected an integer"),
    (lambda r: r["model"].update(task="<evil>"), r"r.jsonl:2: field model.task is '<evil>', expected one of"),
    (lambda r: r["accuracy"].update(mask_ap="<b>high</b>"), r"r.jsonl:2: field accuracy.mask_ap is str, expected a num"),
])
def test_oversized_or_mistyped_line_is_refused(tmp_path, mutate, message):
    row = _row("evil", "int8", 1.0, 0.5)
    mutate(row)
    with pytest.raises(ResultsError, match=message):
        report([_write(tmp_path, json.dumps(row))], tmp_path / "out")
    assert not (tmp_path / "out" / "report.html").exists()


def test_huge_and_bomb_lines_are_refused_before_parsing(tmp_path):
    with pytest.raises(ResultsError, match=rf"r.jsonl:2: line longer than {MAX_LINE_CHARS} characters"):
        report([_write(tmp_path, '{"schema": "' + "a" * (MAX_LINE_CHARS + 10) + '"}')], tmp_path / "out")
    with pytest.raises(ResultsError, match=r"r.jsonl:2: nested more than"):
        report([_write(tmp_path, "[" * 200_000 + "]" * 200_000)], tmp_path / "out")
