"""Output paths checked before any work starts, and a lock so two runs never share an output folder.

A folder that is really a file, a results file that is really a folder, or a location that cannot be
written is refused up front (an ``OutputError`` naming the path), so a long training or benchmark
never fails at its very end. :func:`folder_lock` holds ``OUT/.edgeseg.lock`` (PID, host, command)
for the duration of a command: a second command on the same folder gets a one-line error naming the
holder. The lock is an ``flock`` on that file, so the kernel releases it when its process dies; a
lock file left by a dead process is therefore stale by construction and simply taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from edgeseg.catalog import FILES
from edgeseg.errors import UserError

LOCK_NAME = FILES.lock


class OutputError(UserError, ValueError):
    """An output path is of the wrong kind, cannot be written, or is in use by another edgeseg process."""


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _writable(folder: Path) -> bool:
    """Try it: ``os.access`` says yes to root on a read-only file system."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".edgeseg-probe.", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def check_output_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` is a folder or can be created as one, and can be written; raises :class:`OutputError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: is an existing file; expected a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise OutputError(f"{option} {path}: {base} is a file, so the folder cannot be created")
    if not _writable(base):
        raise OutputError(f"{option} {path}: cannot write in {base} (permission denied or read-only)")
    return path


def check_output_file(path: str | Path, option: str = "--out", example: str = "results.jsonl") -> Path:
    """``path`` is a file (or does not exist yet) whose folder can be written; raises :class:`OutputError`."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; expected a file (e.g. {path / example})")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{option} {path}: file is not writable")
    check_output_folder(path.parent, option=f"{option} {path}: folder")
    return path


def _holder(lock: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(lock.read_text() or "{}")
    return {}


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str | None = None) -> Iterator[Path]:
    """Hold ``folder``'s lock while the block runs (the folder is created); :class:`OutputError` if held.

    Args:
        folder: the output folder a command owns.
        command: what holds it, for the other process's error message (default: this process's argv).
    """
    import fcntl

    folder = check_output_folder(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = _holder(lock)
            who = f"process {h.get('pid', '?')}" + (f" on {h['host']}" if h.get("host") else "")
            what = f" ({h['command']}, since {h.get('since', '?')})" if h.get("command") else ""
            raise OutputError(f"{folder}: in use by {who}{what}; wait for it to finish or choose another "
                              "output folder") from None
        # The holder before us may have unlinked the file between our open and flock: lock the live one.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield folder
    except BaseException:
        if created:  # a command that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                os.unlink(lock)
                folder.rmdir()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


__all__ = ["LOCK_NAME", "OutputError", "check_output_file", "check_output_folder", "folder_lock"]
