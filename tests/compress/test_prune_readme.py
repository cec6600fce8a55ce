"""Every `edgeseg prune` command README.md prints runs exactly as printed (issue #18: the first one used to
end in ``KeyError: 'latency_ms'``), on an untrained tiny U-Net (unet_test), 64 px."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import make_checkpoint

README = Path(__file__).resolve().parents[2] / "README.md"
WRONG_SPEED = re.compile(r"\b0\.\d+x faster")


def readme_commands(verb: str) -> list[str]:
    """Lines of README.md's ``bash`` blocks that run ``edgeseg <verb>``."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip().startswith(f"edgeseg {verb} ")]


COMMANDS = readme_commands("prune")


def test_the_readme_shows_prune_commands() -> None:
    assert len(COMMANDS) >= 3 and any("--finetune-epochs" in c for c in COMMANDS)
    assert any("--ratio" in c and "--finetune-epochs" not in c for c in COMMANDS)  # the path the suite missed


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme_prune")
    make_checkpoint(root / "runs/qs/1_train/model.pt", model="unet_test", num_classes=2)
    return root


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_prune_command_runs_as_printed(command: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from edgeseg.cli import app

    argv = shlex.split(command, comments=True)
    monkeypatch.chdir(workdir)
    res = CliRunner().invoke(app, argv[1:])
    assert res.exit_code == 0, f"{command}\n{res.output}"
    out = workdir / argv[argv.index("--out") + 1]
    doc = json.loads((out / "prune.json").read_text())
    fig, rows = doc["figures"], doc["candidates"]
    assert (out / "model.pt").is_file() and [r["name"] for r in rows if r["chosen"]] != []
    assert not WRONG_SPEED.search(res.output) and "latency_ms" in fig["after"]
    chosen = next(r for r in rows if r["chosen"])
    if fig["speed"] == "unchanged":  # a latency target the start meets
        assert chosen["name"] == "start" and fig["before"]["latency_ms"] <= doc["inputs"]["config"]["target_latency_ms"]
        return
    assert f"{fig['speed']} than the start" in res.output and fig["after"]["macs"] < fig["before"]["macs"]
    if "--finetune-epochs" in argv:  # the most accurate of the pruned model and each epoch
        scores = [r["val"]["miou"] for r in rows if r["name"] != "start"]
        assert len(scores) == 1 + int(argv[argv.index("--finetune-epochs") + 1])
        assert chosen["val"]["miou"] >= max(scores) - 1e-4
