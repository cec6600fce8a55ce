"""The HTML report carries the same notes as the Markdown one (noisy reasons, accuracy data and failures)."""

from __future__ import annotations

import html
import json
import re

from edgeseg.report import report
from tests.report.test_report import ROWS


def test_html_has_every_markdown_note(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[1] = {**rows[1], "accuracy": {"error": "DataError: data/root missing"}}
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = report([results], tmp_path / "out")
    md, page = paths["md"].read_text(), html.unescape(re.sub(r"<[^>]+>", "", paths["html"].read_text()))
    notes = [line for line in md.splitlines() if line.split(":")[0] in ("Noisy", "Accuracy data", "Accuracy failed")]
    assert {n.split(":")[0] for n in notes} == {"Noisy", "Accuracy data", "Accuracy failed"}
    for note in notes:
        assert note.replace("\\", "") in page, note
    assert "TensorRT is not installed" in page and "(threads None, batch 1)" in page
    assert "p90 more than 15% above p50" in page  # the legend too
