"""`edgeseg optimize --backend executorch` (a phone): the plan's files are ExecuTorch programs (FP32, INT8 with
the XNNPACK quantizer), its device script times them over adb with the export kit's run_android.sh and turns
each log into a result line (run here against a fake adb whose executor_runner prints known times), those lines
decide the study, and the winner ships .pte files; timed here, the programs run on ExecuTorch's own runtime."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from edgeseg import catalog
from edgeseg.optimize import OptimizeError, optimize
from tests.optimize.test_optimize import LARGE, SMALL, target_defaults_recipe

pytest.importorskip("executorch.runtime", reason="the executorch extra is not installed here")

F = catalog.OPTIMIZE_FILES

# adb as the phone kit calls it: `push` copies nothing, `shell` runs commands; executor_runner prints its
# per-iteration times: 1 ms for the small width, 5 ms for the large one (named by the program's folder)
FAKE_ADB = f"""#!/usr/bin/env bash
if [ "$1" = shell ] && [[ "$*" == *executor_runner*--model_path* ]]; then
  ms=1.0; if [[ "$*" == *{LARGE}* ]]; then ms=5.0; fi
  echo "num threads = 2"
  for i in 1 2 3 4 5 6; do echo "Iteration $i of 6: $ms ms"; done
fi
exit 0
"""


@pytest.fixture(scope="module")
def phone_plan(tmp_path_factory):
    """An ExecuTorch plan, timed by its own run_on_device.sh against the fake adb (runner mode)."""
    out = tmp_path_factory.mktemp("opt-pte")
    doc = optimize(target_defaults_recipe(), out, plan=True, backend="executorch")
    assert "run_on_device.sh" in doc["summary"]
    bin_dir = out.parent / f"{out.name}-bin"
    bin_dir.mkdir()
    (bin_dir / "adb").write_text(FAKE_ADB)
    (bin_dir / "adb").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER": str(bin_dir / "adb"),
           "LABEL": "test phone", "ITERS": "5", "WARMUP": "1", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(out / F.runner_script), "runner"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_plan_holds_the_programs_and_the_phone_scripts(phone_plan):
    plan = json.loads((phone_plan / F.plan).read_text())
    assert plan["backend"] == "executorch" and plan["precisions"] == ["fp32", "int8"]
    assert sorted(plan["files"]) == sorted(f"{c}.{p}.pte" for c in (SMALL, LARGE) for p in ("fp32", "int8"))
    assert sorted(p.name for p in (phone_plan / F.candidates).iterdir()) == sorted(plan["files"])
    for name in plan["files"]:
        assert re.fullmatch(rb"ET\d\d", (phone_plan / F.candidates / name).read_bytes()[4:8])  # a program
    assert f"../{F.candidates}/{SMALL}.int8.pte" in (phone_plan / "phone" / "run_android.sh").read_text()
    lines = [json.loads(x) for x in (phone_plan / "device.jsonl").read_text().splitlines()]
    assert sorted(r["artifact"]["name"] for r in lines) == sorted(plan["files"])  # one line per program
    assert {r["device_label"] for r in lines} == {"test phone"}


def test_phone_lines_decide_the_study_and_the_winner_ships_programs(phone_plan):
    doc = optimize(target_defaults_recipe(), phone_plan, budget_ms=3, backend="executorch",
                   device_latency=phone_plan / "device.jsonl")
    assert doc["feasible"] == 1 and doc["candidate"] == SMALL and doc["predicted_latency_ms"] == 1.0
    assert [p.name for p in (phone_plan / F.runs / doc["study"]).iterdir()] == [SMALL]
    export = phone_plan / F.winner / "4_export"
    assert (export / "model.pte").is_file() and (export / "phone" / "run_android.sh").is_file()
    assert doc["final_latency_ms"] is not None and doc["final_miou"] is not None  # the .pte's own bench line
    assert doc["final_timing"] is None  # timed on the phone: no paired timing here


def test_programs_timed_here_with_a_relative_budget(tmp_path):
    rcp = target_defaults_recipe()
    rcp.optimize.widths, rcp.optimize.precisions = [1.0], ["fp32"]
    doc = optimize(rcp, tmp_path, budget_ratio=1.5, backend="et")
    lines = [json.loads(x) for x in (tmp_path / F.latency).read_text().splitlines()]
    assert {(r["backend"], r["artifact"]["name"]) for r in lines} == {("executorch", f"{SMALL}.fp32.pte")}
    assert len(lines) == catalog.OPTIMIZE_LATENCY_ROUNDS
    assert doc["candidate"] == SMALL and doc["final_timing"]["own"] == SMALL
    final = [json.loads(x) for x in (tmp_path / F.final_latency).read_text().splitlines()]
    assert {r["artifact"]["name"] for r in final} == {"model.pte", f"{SMALL}.fp32.pte"}


def test_fp16_is_not_an_executorch_form(tmp_path):
    rcp = target_defaults_recipe()
    rcp.optimize.precisions = ["fp16"]
    with pytest.raises(OptimizeError, match="fp16 is not a form of the executorch target"):
        optimize(rcp, tmp_path, plan=True, backend="executorch")
