"""Silence third-party tools during a call whose result edgeseg checks itself.

The exporters (torch.onnx, torch.export, ExecuTorch, torchao, NNCF) log, warn and print at length
on success; edgeseg verifies what they produce (parity, graph checks) and reports failures as one
line, so their chatter is dropped instead of shown to the user.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_tools(*logger_names: str, stdout: bool = True) -> Iterator[None]:
    """Raise the named loggers to ERROR, ignore warnings and (optionally) swallow stdout, then restore."""
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.ExitStack() as stack:
            warnings.simplefilter("ignore")
            if stdout:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def first_line(exc: BaseException) -> str:
    """``Type: first non-empty line of the message``, at most 300 characters, for one-line errors."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
