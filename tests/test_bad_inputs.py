"""Every bad input of issue #8 through the CLI: a one-line error naming the problem, exit 2, nothing written.

The CLI entry (``edgeseg.cli.main``) runs in-process, as the console script runs it, so usage errors,
user errors and exit codes are exactly what a user sees, without a subprocess per case.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_checkpoint

NOBODY_WRITES = Path("/proc/1/edgeseg-out")  # procfs: not even root may create files there
SMALL = ["--set", "model.name=unet_test", "--set", "data.synthetic.num_train=4", "--set",
         "data.synthetic.num_val=2", "--set", "train.epochs=1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    img = root / "img.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    (root / "empty.yaml").write_text("\n# nothing but a comment\n")
    (root / "a_file").write_text("not a folder")
    (root / "r.jsonl").write_text("")
    return {"ckpt": make_checkpoint(root / "model.pt"), "img": img, "empty": root / "empty.yaml",
            "file": root / "a_file", "results": root / "r.jsonl", "dir": root}


def cli(monkeypatch, capsys, *argv: object) -> tuple[int, str]:
    from edgeseg.cli import main

    monkeypatch.setattr(sys, "argv", ["edgeseg", *map(str, argv)])
    monkeypatch.delenv("EDGESEG_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err


CASES = {
    # numeric options (CLI)
    "bench --batch 0": (["bench", "{ckpt}", "--batch", "0", "--out", "{tmp}/r.jsonl"], "'--batch': 0 is not allowed"),
    "bench --threads 0": (["bench", "{ckpt}", "--threads", "0", "--out", "{tmp}/r.jsonl"], "'--threads': 0 is not"),
    "bench --threads -1": (["bench", "{ckpt}", "--threads=-1", "--out", "{tmp}/r.jsonl"], "'--threads': -1 is not"),
    "bench --threads abc": (["bench", "{ckpt}", "--threads", "abc", "--out", "{tmp}/r.jsonl"],
                            "'--threads': 'abc' is not an integer"),
    "bench --min-runs 0": (["bench", "{ckpt}", "--min-runs", "0", "--out", "{tmp}/r.jsonl"], "'--min-runs'"),
    "eval --threads abc": (["eval", "{ckpt}", "--threads", "abc"], "'--threads'"),
    "predict --threads 0": (["predict", "{ckpt}", "{img}", "--threads", "0", "--out", "{tmp}/p"], "'--threads'"),
    # recipes
    "empty recipe": (["train", "{empty}", "--out", "{tmp}/t"], "the recipe is empty"),
    "image_size 50 on U-Net": (["train", *SMALL, "--set", "data.image_size=50", "--out", "{tmp}/t"],
                               "data.image_size: 50x50 is not a multiple of unet_test's stride 4"),
    "image_size 48 on FCN": (["train", *SMALL, "--set", "model.name=fcn_test", "--set", "data.image_size=48",
                              "--out", "{tmp}/t"], "stride 32 (use 32 or 64)"),
    "unknown model.args": (["train", *SMALL, "--set", "model.args.foo=1", "--out", "{tmp}/t"], "['foo']"),
    "invalid model.args": (["train", *SMALL, "--set", "model.args.upsample=nonsense", "--out", "{tmp}/t"],
                           "upsample must be one of"),
    "bench --set-less bad recipe batch": (["run", *SMALL, "--set", "bench.batch=[0]", "--out", "{tmp}/t"],
                                          "bench.batch.0"),
    # output paths that are the wrong kind or cannot be written
    "train --out FILE": (["train", *SMALL, "--out", "{file}"], "is an existing file; expected a folder"),
    "export --out FILE": (["export", "{ckpt}", "--out", "{file}"], "is an existing file; expected a folder"),
    "predict --out FILE": (["predict", "{ckpt}", "{img}", "--out", "{file}"], "is an existing file"),
    "report --out FILE": (["report", "{results}", "--out", "{file}"], "is an existing file"),
    "run --out FILE": (["run", *SMALL, "--out", "{file}"], "is an existing file"),
    "bench --out DIR": (["bench", "{ckpt}", "--out", "{dir}"], "is a folder; expected a file"),
    "train unwritable": (["train", *SMALL, "--out", NOBODY_WRITES], "cannot write in /proc/1"),
    "export unwritable": (["export", "{ckpt}", "--out", NOBODY_WRITES], "cannot write in /proc/1"),
    "predict unwritable": (["predict", "{ckpt}", "{img}", "--out", NOBODY_WRITES], "cannot write in /proc/1"),
    "report unwritable": (["report", "{results}", "--out", NOBODY_WRITES], "cannot write in /proc/1"),
    "bench unwritable": (["bench", "{ckpt}", "--out", NOBODY_WRITES / "r.jsonl"], "cannot write in /proc/1"),
}


@pytest.mark.skipif(not Path("/proc/1").is_dir(), reason="the unwritable-folder cases use procfs")
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, files, tmp_path, monkeypatch, capsys):
    argv, expected = CASES[case]
    before = {p: p.stat().st_mtime_ns for p in files["dir"].iterdir()}
    argv = [str(a).format(tmp=tmp_path, **files) for a in argv]
    code, err = cli(monkeypatch, capsys, *argv)
    assert code == 2, err
    assert err.startswith("edgeseg: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert list(tmp_path.iterdir()) == []  # no partial output
    assert {p: p.stat().st_mtime_ns for p in files["dir"].iterdir()} == before
