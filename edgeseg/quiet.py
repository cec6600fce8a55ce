"""Silence third-party tools during a call whose result edgeseg checks itself.

The exporters (torch.onnx, torch.export, ExecuTorch, torchao, NNCF) log, warn and print at length
on success; edgeseg verifies what they produce (parity, graph checks) and reports failures as one
line, so their chatter is dropped instead of shown to the user. Some of it does not come through
Python at all: torchao's "Failed to load ...so" at import, ExecuTorch's ``[cpuinfo_utils.cpp:...]``
lines when its runtime starts are written by native code straight to the process's file
descriptors, so ``native=True`` points descriptors 1 and 2 at a scratch file meanwhile.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from importlib import import_module
from types import ModuleType

# Loggers that print at import or on every call of the ExecuTorch / torchao stack.
PHONE_STACK_LOGGERS = ("torchao", "executorch", "torch.export", "torch._export", "torch.utils._pytree", "root")


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """Point file descriptors 1 and 2 at a scratch file while the block runs (native libraries' prints).

    A process without those descriptors (a daemon) runs the block unchanged.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


@contextlib.contextmanager
def quiet_tools(*logger_names: str, stdout: bool = True, native: bool = False) -> Iterator[None]:
    """Raise the named loggers to ERROR, ignore warnings and (optionally) swallow stdout, then restore.

    ``native=True`` also silences what native code writes to the process's stdout and stderr.
    """
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.ExitStack() as stack:
            warnings.simplefilter("ignore")
            if native:
                stack.enter_context(native_output_silenced())
            if stdout:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def quiet_import(module: str, *logger_names: str) -> ModuleType:
    """Import ``module`` with the phone stack's loggers (and ``logger_names``) and native output silenced.

    For packages that report optional native libraries they could not load (torchao) on import; an
    ImportError still reaches the caller.
    """
    if module in sys.modules:  # an import statement's path all the same (cheap; an import hook sees it)
        __import__(module)
        return sys.modules[module]
    with quiet_tools(*PHONE_STACK_LOGGERS, *logger_names, native=True):
        return import_module(module)


def first_line(exc: BaseException) -> str:
    """``Type: first non-empty line of the message``, at most 300 characters, for one-line errors."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
