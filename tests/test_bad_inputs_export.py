"""Issue #18, export and phone side: every option problem is refused before any work, in one line naming
the option; a .pte that is not one is told without importing ExecuTorch; a lock left by a dead process
is taken over while a live one still refuses.

The CLI entry runs in-process (as the console script runs it); conversions are replaced by a recorder
where a test is about what happens before them, so these tests take a second each.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_checkpoint
from tests.test_bad_inputs import cli


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture
def no_conversion(monkeypatch):
    """Fail the test if any converter starts (the refusals must come before any work)."""
    def converter(ctx):
        raise AssertionError("a conversion ran before the refusal")

    import edgeseg.export.formats as formats

    monkeypatch.setattr(formats, "load_converter", lambda spec: converter)


OPTION_CASES = {
    # issue 18.3: flags silently changed or ignored
    "--qat --epochs 0": (["--int8", "--qat", "--epochs", "0"], "--epochs 0: expected a value >= 1"),
    "--epochs without --qat": (["--int8", "--epochs", "3"], "--epochs: applies to quantization-aware training only"),
    "--qat without INT8": (["--qat"], "--qat: concerns INT8, which this export does not make; add --int8"),
    "--max-drop without INT8": (["--max-drop", "1"], "--max-drop: concerns INT8"),
    "--calib-images without INT8": (["--calib-images", "8"], "--calib-images: concerns INT8"),
    # issue 18.4: late errors, errors pointing at the wrong place
    "--qat --max-drop": (["--int8", "--qat", "--max-drop", "0.5"], "--qat and --max-drop cannot be combined"),
    "--max-drop -1": (["--int8", "--max-drop=-1"], "--max-drop -1.0: expected a value >= 0"),
    "--calib-images 0": (["--int8", "--calib-images", "0"], "--calib-images 0: expected a value >= 1"),
    "--calib-method nope": (["--int8", "--calib-method", "nope"], "--calib-method nope: expected one of 'minmax'"),
    "--int8-policy never": (["--int8", "--int8-policy", "never"], "--int8-policy never: expected one of 'auto'"),
    "--opset 7": (["--opset", "7"], "--opset 7: expected a value >= 11"),
    "--format nope": (["--format", "nope"], "unknown export format 'nope'"),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_export_option_refused_first_in_one_line_naming_the_option(case, ckpt, tmp_path, monkeypatch, capsys,
                                                                 no_conversion):
    argv, expected = OPTION_CASES[case]
    out = tmp_path / "ex"
    code, err = cli(monkeypatch, capsys, "export", ckpt, "--out", out, *argv)
    assert code == 2, err
    assert err.startswith("edgeseg: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert "stored recipe" not in err  # the value came from the command line, not the checkpoint's recipe
    assert not out.exists()  # no folder, no model.onnx, no export.json with an `error`


def test_instance_int8_executorch_is_refused_before_any_work(tmp_path, monkeypatch, capsys, no_conversion):
    """Issue 18.5: YOLACT's FP32 .pte is exported (parity like every family); its INT8 program is refused in
    one line before anything is converted, whether --int8 or the recipe's precisions ask for it."""
    yolact = make_checkpoint(tmp_path / "y.pt", model="yolact_test")
    for argv in (["--int8"], ["--set", "export.precisions=[fp32,int8]"]):
        code, err = cli(monkeypatch, capsys, "export", yolact, "--format", "executorch", "--out", tmp_path / "ex",
                        *argv)
        assert code == 2 and err.count("\n") == 1, err
        assert "INT8 with --format executorch: not offered for instance models" in err, err
        assert not (tmp_path / "ex").exists()


def test_a_refused_export_keeps_the_previous_one(ckpt, tmp_path, monkeypatch, capsys, no_conversion):
    out = tmp_path / "ex"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"previous")
    (out / "export.json").write_text(json.dumps({"artifacts": [{"path": str(out / "model.onnx")}]}))
    code, err = cli(monkeypatch, capsys, "export", ckpt, "--out", out, "--int8", "--qat", "--max-drop", "0.5")
    assert code == 2 and "cannot be combined" in err
    assert (out / "model.onnx").read_bytes() == b"previous" and sorted(p.name for p in out.iterdir()) == [
        "export.json", "model.onnx"]


def test_recipe_values_are_named_by_their_field(ckpt, tmp_path):
    from edgeseg.export import ExportError, export

    with pytest.raises(ExportError, match=r"^export.qat and export.max_drop cannot be combined"):
        export(ckpt, tmp_path / "ex", precisions=["int8"], overrides=["export.qat.epochs=1", "export.max_drop=1"])
    assert not (tmp_path / "ex").exists()


def test_options_lie_over_the_recipe_section():
    from edgeseg.export.options import apply_options
    from edgeseg.recipe import ExportCfg

    assert apply_options(ExportCfg(), {"--qat": ("qat", True)}).qat.epochs == 3  # QatCfg's default
    assert apply_options(ExportCfg(qat={"epochs": 5}), {"--qat": ("qat", True)}).qat.epochs == 5  # the recipe's
    cfg = apply_options(ExportCfg(), {"--qat": ("qat", True), "--epochs": ("qat.epochs", 1),
                                      "--calib-images": ("calibration.images", 8), "--static": ("dynamic", False)})
    assert (cfg.qat.epochs, cfg.calibration.images, cfg.calibration.method, cfg.dynamic) == (1, 8, "minmax", False)
    # --epochs alone is honoured when the recipe already trains QAT
    assert apply_options(ExportCfg(qat={"epochs": 5}), {"--epochs": ("qat.epochs", 2)}).qat.epochs == 2


def test_format_help_lists_every_catalog_format(monkeypatch, capsys):
    from edgeseg import catalog
    from edgeseg.cli import main

    monkeypatch.setattr(sys, "argv", ["edgeseg", "export", "--help"])
    with pytest.raises(SystemExit) as info:
        main()
    text = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0 and all(name in text for name in catalog.FORMATS), text


def test_a_text_file_named_pte_is_refused_without_importing_executorch(tmp_path, monkeypatch, capsys, hide_package):
    (tmp_path / "text.pte").write_text("hello\n")
    hide_package("executorch")  # the header check must come first: nothing of ExecuTorch is imported
    code, err = cli(monkeypatch, capsys, "eval", tmp_path / "text.pte")
    assert code == 2 and err.count("\n") == 1, err
    assert "text.pte: not an ExecuTorch program (expected the file identifier 'ET' + 2 digits" in err, err


# --- issue 18.7: the output folder's lock ---------------------------------------------------------------

def _recording_export(monkeypatch) -> list[Path]:
    """Replace the conversions by a recorder (the lock is what is tested); returns the folders it saw."""
    import importlib

    export_mod = importlib.import_module("edgeseg.export")  # the package, not the lazy edgeseg.export verb
    seen: list[Path] = []

    def fake(out, plan):
        seen.append(out)
        lock = json.loads((out / ".edgeseg.lock").read_text())
        assert lock["pid"] == __import__("os").getpid()  # this process holds it now
        return {"artifacts": []}

    monkeypatch.setattr(export_mod, "_export_into", fake)
    return seen


def test_a_lock_left_by_a_dead_process_is_taken_over(ckpt, tmp_path, monkeypatch, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "ex"
    out.mkdir()
    (out / ".edgeseg.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": "here",
                                                   "command": "edgeseg export (killed)", "since": "earlier"}))
    seen = _recording_export(monkeypatch)
    code, err = cli(monkeypatch, capsys, "export", ckpt, "--out", out)
    assert code == 0, err
    assert seen == [out] and not (out / ".edgeseg.lock").exists()


HOLDER = """
import sys, time
from edgeseg.artifacts.outputs import folder_lock
with folder_lock(sys.argv[1], command="edgeseg export (running)"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_live_lock_still_refuses(ckpt, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ex"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        seen = _recording_export(monkeypatch)
        code, err = cli(monkeypatch, capsys, "export", ckpt, "--out", out)
        assert code == 2 and err.count("\n") == 1, err
        assert f"in use by process {holder.pid}" in err and "edgeseg export (running)" in err, err
        assert seen == []
    finally:
        holder.kill()
        holder.wait()
