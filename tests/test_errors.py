"""Only deliberate user errors print as one line; anything else keeps its traceback."""

from __future__ import annotations

import sys

import pytest

from edgeseg.errors import EdgesegError, UserError


def _user_error_types() -> list[type]:
    from edgeseg.artifacts import ArtifactError
    from edgeseg.bench.rows import ResultsError
    from edgeseg.data import DataError
    from edgeseg.export import ExportError
    from edgeseg.models.registry import ModelArgsError, UnknownModelError
    from edgeseg.recipe import RecipeError
    from edgeseg.runtime.base import BackendError
    from edgeseg.train.loop import TrainingDiverged

    return [ArtifactError, ResultsError, DataError, ExportError, ModelArgsError, UnknownModelError, RecipeError,
            BackendError, TrainingDiverged]


def test_every_domain_error_is_a_user_error():
    for cls in _user_error_types():
        assert issubclass(cls, UserError) and issubclass(cls, EdgesegError), cls
    assert not issubclass(KeyError, UserError) and not issubclass(FileNotFoundError, UserError)


def test_unknown_model_is_a_user_error_with_a_plain_message():
    from edgeseg.models import create_model
    from edgeseg.models.registry import UnknownModelError

    with pytest.raises(UnknownModelError) as info:
        create_model("unet-lyte", num_classes=2)
    assert isinstance(info.value, KeyError)  # callers catching KeyError keep working
    assert str(info.value).startswith("unknown model 'unet-lyte'; did you mean 'unet-lite'?")


def _main(monkeypatch, *argv: str) -> None:
    from edgeseg.cli import main

    monkeypatch.setattr(sys, "argv", ["edgeseg", *argv])
    main()


def test_cli_prints_a_user_error_as_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("EDGESEG_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        _main(monkeypatch, "eval", str(tmp_path / "missing.onnx"))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"edgeseg: error: {tmp_path / 'missing.onnx'}: file not found\n"


def test_cli_keeps_the_traceback_of_a_bug(monkeypatch):
    import edgeseg.models.profile as profile

    def broken(*args, **kwargs):
        raise KeyError("a bug, not bad input")

    monkeypatch.delenv("EDGESEG_DEBUG", raising=False)
    monkeypatch.setattr(profile, "model_table", broken)
    with pytest.raises(KeyError, match="a bug"):  # propagates: Python prints its traceback
        _main(monkeypatch, "models")


def test_debug_shows_user_errors_with_traceback(monkeypatch, tmp_path):
    from edgeseg.runtime.base import BackendError

    monkeypatch.setenv("EDGESEG_DEBUG", "1")
    with pytest.raises(BackendError, match="file not found"):
        _main(monkeypatch, "eval", str(tmp_path / "missing.onnx"))
