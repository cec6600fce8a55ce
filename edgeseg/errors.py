"""The user-facing error types the CLI reports as one clear line (no traceback)."""

from __future__ import annotations

from edgeseg.artifacts import ArtifactError
from edgeseg.recipe import RecipeError
from edgeseg.runtime.base import BackendError


def _user_errors() -> tuple[type[BaseException], ...]:
    from edgeseg.bench.rows import ResultsError
    from edgeseg.data import DataError
    from edgeseg.train.loop import TrainingDiverged

    errors: list[type[BaseException]] = [RecipeError, ArtifactError, BackendError, DataError, TrainingDiverged,
                                         ResultsError, KeyError, FileNotFoundError]
    try:
        from edgeseg.export import ExportError

        errors.append(ExportError)
    except ImportError:
        pass
    return tuple(errors)


USER_ERRORS = _user_errors()
