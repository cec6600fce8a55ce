"""The error base classes, low in the tree: this module imports nothing, so the CLI starts light.

Every error edgeseg raises on purpose derives from :class:`EdgesegError`. Those caused by the user's
input (a file, a recipe field, an option, the machine lacking a package) derive from
:class:`UserError`: the CLI prints their message as one line and exits with code 2. Any other
exception is a bug and keeps its traceback; ``EDGESEG_DEBUG=1`` shows the traceback for all.

Domain errors live beside the code that raises them and keep a builtin base too, so callers that
catch ``ValueError``/``RuntimeError``/``KeyError`` still work: ``RecipeError`` (recipe/sections.py),
``ArtifactError`` (artifacts), ``DataError`` (data/base.py), ``BackendError`` (runtime/base.py),
``UnknownModelError`` (models/registry.py), ``ExportError`` (here, re-exported by export/formats.py), ``ResultsError``
(bench/rows.py), ``TrainingDiverged`` (train/loop.py).
"""

from __future__ import annotations


class EdgesegError(Exception):
    """Base of every error edgeseg raises deliberately."""


class UserError(EdgesegError):
    """Bad input: the message names the file, field or option and what was expected.

    The CLI prints it as one line (exit code 2) instead of a traceback.
    """

    def __str__(self) -> str:
        # KeyError subclasses would otherwise print the repr of their message (quoted).
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ExportError(UserError, RuntimeError):
    """An export cannot be done or failed its checks; the message says which and what to do.

    Here rather than beside export: the torch -> ONNX writer under the artifacts raises it too.
    """


__all__ = ["EdgesegError", "ExportError", "UserError"]
