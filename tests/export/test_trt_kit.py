"""build_engine.sh quotes every name: hostile folder and tensor names run no command (issue #12)."""

from __future__ import annotations

import shlex
import subprocess

from edgeseg.export import trt_kit

HOSTILE = "a b$(touch x)"


def _dry_run(script, *args, cwd, env=None):
    return subprocess.run(["bash", str(script), "--dry-run", *args], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_hostile_input_name_is_one_literal_argument(tmp_path):
    name = "in\"$(touch y)'`touch z`"
    shapes = trt_kit.shape_flags(name, 3, (64, 64), 16, dynamic=True)
    script = tmp_path / "build_engine.sh"
    script.write_text(trt_kit.build_script(shapes=shapes, int8=True))
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    for major, calls in (("10", 3), ("11", 2)):
        proc = _dry_run(script, "int8-qdq" if major == "11" else "all", cwd=tmp_path,
                        env={"TRT_MAJOR": major, "TRTEXEC": "/nonexistent/trtexec"})
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == (1 if major == "11" else calls)
        words = shlex.split(lines[0])  # bash's printf %q output parses back to the exact arguments
        assert words[0] == "/nonexistent/trtexec"
        assert f"--optShapes={name}:1x3x64x64" in words
    assert not any((tmp_path / f).exists() for f in ("y", "z", "build_int8.log"))


def test_kit_in_hostile_folder_dry_run_creates_nothing(tmp_path):
    kit = tmp_path / HOSTILE
    kit.mkdir()
    script = kit / "build_engine.sh"
    trt_kit.write_text(script, trt_kit.build_script(shapes={}, int8=False), executable=True)
    proc = subprocess.run([str(script), "--dry-run", "all"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "TRTEXEC": "trtexec"})
    assert proc.returncode == 0, proc.stderr
    assert shlex.split(proc.stdout) == ["trtexec", "--onnx=model.onnx", "--saveEngine=model.fp16.engine", "--fp16",
                                        "--memPoolSize=workspace:1024"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [HOSTILE]
    assert sorted(p.name for p in kit.iterdir()) == ["build_engine.sh"]
