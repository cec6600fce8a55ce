"""Every command README.md prints runs, exactly as printed, with tiny data added by ``--set``.

The fenced ``bash`` blocks are read from the README itself (continuation lines joined, comments cut), so
a documented command that crashes, or a block whose commands no longer hand their files to each other,
fails here. Commands run in order, one block per test, in a scratch folder that holds links to the
recipes and the shared data plus the input files the README assumes (``img1.png``, ``their_model.onnx``).
Only the set-up lines (``pip install ...``) and the test command itself are not run. ``edgeseg ...`` is
run as ``python -m edgeseg ...`` (the console script's own entry, ``edgeseg.cli:main``) inside the test
process, ``torchrun`` as a subprocess.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Appended to every command that takes --set: tiny data, one epoch, quick calibration and timing.
TINY = ("train.epochs=1", "train.batch_size=8", "data.image_size=64", "data.train_repeats=1",
        "data.synthetic.num_train=16", "data.synthetic.num_val=8", "data.synthetic.size=64",
        "export.calibration.images=4", "bench.min_runs=3", "bench.min_time_s=0", "bench.warmup=1")
TAKES_SET = ("train", "run", "export", "prune")
NOT_RUN = ("pip install", "python -m pytest")


def readme_blocks(text: str) -> list[list[str]]:
    """The commands of every ```bash block: continuation lines joined, comments and set-up lines dropped."""
    blocks = []
    for body in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        commands, pending = [], ""
        for raw in body.splitlines():
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1].rstrip() + " "
                continue
            pending = ""
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
        commands = [c for c in commands if not c.startswith(NOT_RUN)]
        if commands:
            blocks.append(commands)
    return blocks


def as_argv(command: str) -> list[str]:
    """The argv this interpreter runs for a README command (``edgeseg`` and ``torchrun`` by module)."""
    argv = shlex.split(command)
    if argv[0] == "edgeseg":
        argv = [sys.executable, "-m", "edgeseg", *argv[1:]]
    elif argv[0] == "torchrun":
        argv = [sys.executable, "-m", "torch.distributed.run", *argv[1:]]
    elif argv[:2] == ["python", "-m"]:
        argv = [sys.executable, *argv[1:]]
    verb = next((a for a in argv[argv.index("edgeseg") + 1:] if not a.startswith("-")), "") \
        if "edgeseg" in argv else ""
    if verb in TAKES_SET:
        argv += [x for key in TINY for x in ("--set", key)]
    return argv


def _scratch(folder: Path) -> Path:
    """A folder laid out as the README assumes: recipes/, img*.png and a foreign ONNX file."""
    from PIL import Image

    folder.mkdir()
    (folder / "recipes").symlink_to(ROOT / "recipes")  # their data paths resolve from the real file
    rng = np.random.default_rng(0)
    for name in ("img1.png", "img2.png", "img.png"):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(folder / name)
    _foreign_onnx(folder / "their_model.onnx")
    return folder


def _foreign_onnx(path: Path) -> None:
    """An ONNX segmentation model edgeseg did not make (no metadata; dynamic height and width, 4 classes)."""
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    torch.onnx.export(net.eval(), (torch.randn(1, 3, 64, 64),), str(path), dynamo=False, input_names=["images"],
                      output_names=["logits"], dynamic_axes={"images": {2: "h", 3: "w"}, "logits": {2: "h", 3: "w"}})


def _run_module(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``python -m MODULE ARGS`` (argv as :func:`as_argv` gives it) in this process: ``runpy`` runs the
    module as ``__main__`` with that ``sys.argv``, exactly what the interpreter does, without paying an
    interpreter and a torch import per command (~3 s each, most of a block's time). Returns (exit code,
    output); the torch thread count a command sets is put back."""
    import runpy

    import torch

    threads, saved = torch.get_num_threads(), sys.argv
    sys.argv = [argv[2], *argv[3:]]
    try:
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.argv = saved
        torch.set_num_threads(threads)
    out, err = capfd.readouterr()
    return code, out + err


def _run_block(commands: list[str], folder: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Each command as printed, in ``folder``: ``python -m`` ones in this process (:func:`_run_module`),
    others (``torchrun``: it starts processes of its own) as a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    timings: list[str] = []  # printed at the end: shown with a failure (or -rP)
    for command in commands:
        start = time.perf_counter()
        argv = as_argv(command)
        if argv[1] == "-m" and argv[2] != "torch.distributed.run":
            code, tail = _run_module(argv, capfd)
        else:
            done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
            code, tail = done.returncode, done.stdout + done.stderr
        tail = tail[-3000:]
        timings.append(f"{time.perf_counter() - start:7.1f} s  {command}")
        assert code == 0, f"README command failed ({code}): {command}\n{tail}\n" + "\n".join(timings)
        assert "Traceback" not in tail, f"README command printed a traceback: {command}\n{tail}"
    print("\n".join(timings))


def _covered_elsewhere() -> set[str]:
    """Commands another test runs as printed with settings of their own: `edgeseg optimize`, the device
    runner on its candidates and `train --time` need a one-candidate space and a seconds-long budget
    (tests/optimize/test_readme_optimize.py); the prune commands run on a tiny model and have their
    figures checked (tests/compress/test_prune_readme.py)."""
    from tests.compress.test_prune_readme import COMMANDS as PRUNE_COMMANDS
    from tests.optimize.test_readme_optimize import readme_commands

    return set(readme_commands()) | {re.sub(r"\s+#.*$", "", c).strip() for c in PRUNE_COMMANDS}


def _new_commands(blocks: list[list[str]]) -> list[list[str]]:
    """Each block without the commands covered elsewhere or already run by an earlier block (a block
    left with nothing new is dropped)."""
    seen, kept = _covered_elsewhere(), []
    for block in blocks:
        fresh = [c for c in block if c not in seen]
        seen |= set(fresh)
        if fresh:
            kept.append(fresh)
    return kept


BLOCKS = _new_commands(readme_blocks(README.read_text()))


def test_the_readme_blocks_are_found() -> None:
    flat = [c for block in readme_blocks(README.read_text()) for c in block]
    assert any(c.startswith("edgeseg run") for c in flat) and any(c.startswith("edgeseg prune") for c in flat)
    assert _covered_elsewhere() <= set(flat), "a test elsewhere runs a command the README no longer prints"
    assert as_argv("edgeseg train r.yaml")[:4] == [sys.executable, "-m", "edgeseg", "train"]
    assert readme_blocks("```bash\nedgeseg a \\\n  --b c   # note\n# comment\npip install x\n```\n") == \
        [["edgeseg a --b c"]]


def _tour_results(folder: Path) -> None:
    """What the tour's export -> bench -> report hand each other: one row per (file, backend, threads) with
    accuracy on the whole (tiny) val split, and the report's pages and plot."""
    import json

    rows = [json.loads(line) for line in (folder / "runs/qs/5_bench/results.jsonl").read_text().splitlines()]
    # (the file also holds the lines `edgeseg run --out runs/qs` appended before)
    assert {(r["artifact"]["name"], r["backend"], r["threads"]) for r in rows} >= \
        {(f, b, t) for f, b in (("model.onnx", "onnxruntime"), ("model.pt", "torch")) for t in (1, 2)}
    assert all(r["accuracy"]["num_images"] == 8 for r in rows)
    assert all((folder / "runs/qs/6_report" / f).is_file() for f in ("report.md", "report.html", "pareto.png"))


CHECKS = {"edgeseg models": _tour_results}  # block (by its first command) -> what its files must hold


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: BLOCKS[i][0].split("#")[0][:40])
def test_readme_block_runs_as_printed(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capfd: pytest.CaptureFixture[str]) -> None:
    folder = _scratch(tmp_path / "work")
    monkeypatch.chdir(folder)
    _run_block(BLOCKS[index], folder, capfd)
    CHECKS.get(BLOCKS[index][0], lambda _: None)(folder)
