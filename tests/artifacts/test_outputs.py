"""Output paths are checked before work starts; an output folder is locked by one process at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg.artifacts.outputs import LOCK_NAME, OutputError, check_output_file, check_output_folder, folder_lock


def test_a_file_is_not_an_output_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is an existing file; expected a folder"):
        check_output_folder(tmp_path / "f")
    with pytest.raises(OutputError, match="is a file, so the folder cannot be created"):
        check_output_folder(tmp_path / "f" / "sub")
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_a_folder_is_not_an_output_file(tmp_path):
    with pytest.raises(OutputError, match="is a folder; expected a file"):
        check_output_file(tmp_path)
    assert check_output_file(tmp_path / "r.jsonl") == tmp_path / "r.jsonl"


@pytest.mark.skipif(not Path("/proc/1").is_dir(), reason="needs a folder nobody may write (procfs)")
def test_an_unwritable_folder_is_refused():
    with pytest.raises(OutputError, match="cannot write in /proc/1"):
        check_output_folder("/proc/1/out")


HOLD = """
import sys, time
from edgeseg.artifacts.outputs import folder_lock
with folder_lock(sys.argv[1], command="edgeseg train (test)"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_held_lock_names_its_holder_and_a_dead_holder_is_stale(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError) as info:
            with folder_lock(tmp_path):
                pass
        assert f"in use by process {holder.pid}" in str(info.value) and "edgeseg train (test)" in str(info.value)
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the lock file stays behind
        holder.wait()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid
    with folder_lock(tmp_path, command="second"):  # stale: taken over
        assert json.loads((tmp_path / LOCK_NAME).read_text())["command"] == "second"
    assert not (tmp_path / LOCK_NAME).exists()
