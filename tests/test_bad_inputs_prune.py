"""Bad `edgeseg prune` requests (issue #18): a one-line error naming the problem, exit 2, no output folder.

Run in-process through ``edgeseg.cli.main`` as the console script runs it. Every case here is refused
before any measurement or training (the ones that need the model pruned once take a second or two).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_checkpoint
from tests.test_bad_inputs import cli


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prune_inputs")
    return {"ckpt": make_checkpoint(root / "unet.pt"),
            "yolact": make_checkpoint(root / "yolact.pt", model="yolact_test", num_classes=2)}


CASES = {
    "--threads 0": (["--ratio", "0.5", "--threads", "0"], "'--threads': 0 is not allowed; expected an integer >= 1"),
    "--threads -2": (["--ratio", "0.5", "--threads=-2"], "'--threads': -2 is not allowed"),
    "no target": ([], "give exactly one of --ratio, --target-macs, --target-latency (got none)"),
    "two targets": (["--ratio", "0.5", "--target-macs", "0.5"], "give exactly one of --ratio"),
    "--ratio 1.5": (["--ratio", "1.5"], "ratio (--ratio): Input should be less than 1 (got 1.5)"),
    "--round-to 0": (["--ratio", "0.5", "--round-to", "0"], "round_to (--round-to): expected a positive integer"),
    "--importance": (["--ratio", "0.5", "--importance", "random"], "importance (--importance): Input should be"),
    "--target-latency": (["--target-latency", "fast"], "--target-latency 'fast': expected milliseconds"),
    "--keep unknown": (["--ratio", "0.5", "--keep", "nothing.here"], "--keep 'nothing.here': expected a layer-name"),
    "--keep blank": (["--ratio", "0.5", "--keep", " "], "keep (--keep): expected layer-name patterns"),
    "--distill without fine-tuning": (["--ratio", "0.5", "--distill"], "--distill works while fine-tuning"),
    "--distill on yolact": (["{yolact}", "--ratio", "0.5", "--distill", "--finetune-epochs", "1"],
                            "--distill (per-pixel logit distillation) is not available for instance models"),
    "--finetune-epochs -1": (["--ratio", "0.5", "--finetune-epochs", "-1"], "finetune_epochs (--finetune-epochs)"),
    "missing checkpoint": (["{missing}", "--ratio", "0.5"], "missing.pt"),
    "nothing to prune: --round-to 1000": (["--ratio", "0.5", "--round-to", "1000"],
                                          "nothing to prune in UNet with --round-to 1000"),
    "nothing to prune: --keep *": (["--ratio", "0.5", "--keep", "*"],
                                   "nothing to prune in UNet with --round-to 8 and --keep '*'"),
    "nothing to prune: --target-macs": (["--target-macs", "0.5", "--round-to", "1000"], "nothing to prune"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_prune_request_is_one_line_and_leaves_no_folder(case: str, ckpts, tmp_path, monkeypatch, capsys) -> None:
    args, expected = CASES[case]
    source = [] if args and str(args[0]).startswith("{") else [ckpts["ckpt"]]
    args = [str(a).format(yolact=ckpts["yolact"], missing=tmp_path / "missing.pt") for a in args]
    out = tmp_path / "pr" / "keepn"  # as the pr/keepn: nested, so a stray parent would show too
    code, err = cli(monkeypatch, capsys, "prune", *source, *args, "--out", out)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeseg: error: "), err
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "pr").exists()  # nothing created before the request passed its checks
