"""Result lines are appended whole, by concurrent writers too, and earlier lines are never rewritten."""

from __future__ import annotations

import json
import multiprocessing as mp
import os

from edgeseg.bench.rows import append_rows


def _writer(path: str, who: int, n: int) -> None:
    for i in range(n):
        append_rows(path, [{"who": who, "i": i, "pad": "x" * 300}])


def test_concurrent_appends_keep_every_line(tmp_path):
    path = tmp_path / "r.jsonl"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 150)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 300
    assert {(r["who"], r["i"]) for r in rows} == {(w, i) for w in range(2) for i in range(150)}


def test_append_never_rewrites_and_mends_a_torn_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"b": 2')  # a writer killed mid-line
    inode = os.stat(path).st_ino
    append_rows(path, [{"c": 3}])
    assert os.stat(path).st_ino == inode  # same file, appended to (no temp file renamed over it)
    assert path.read_text() == '{"a": 1}\n{"b": 2\n{"c": 3}\n'
