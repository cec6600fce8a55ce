"""`edgeseg optimize --backend tensorrt` (a Jetson): the plan's files are the TensorRT forms (FP16, INT8 with
TensorRT's Q/DQ placement), its device script builds one engine per file with trtexec (TensorRT 10 flags or
strongly typed 11) and times them with the torch-free runner; the engines' lines come back named by engine
and decide the study; without TensorRT here the local route stops before building anything, in one line."""

from __future__ import annotations

import hashlib
import json
import subprocess

import onnx
import pytest
from onnx import numpy_helper

from edgeseg import catalog
from edgeseg.bench.runner import run as runner
from edgeseg.export.onnx2trt import tensorrt_status
from edgeseg.optimize import OptimizeError, optimize
from tests.optimize.test_optimize import SMALL, target_defaults_recipe

F = catalog.OPTIMIZE_FILES


@pytest.fixture(scope="module")
def trt_plan(tmp_path_factory):
    """A TensorRT plan, and the lines a device would send back: the runner's lines of the candidate files
    (ONNX Runtime here), renamed to the engines the script builds, p50 1 ms (small width) or 5 ms."""
    out = tmp_path_factory.mktemp("opt-trt")
    doc = optimize(target_defaults_recipe(), out, plan=True, backend="tensorrt")
    assert "run_on_device.sh" in doc["summary"]
    runner([str(out / F.candidates), "--out", str(out / "cpu.jsonl"), "--threads", "1", "--warmup", "1",
            "--min-runs", "3", "--min-time", "0", "--no-memory"])
    rows = [json.loads(line) for line in (out / "cpu.jsonl").read_text().splitlines()]
    for r in rows:
        r["artifact"]["name"] = r["artifact"]["name"].replace(".onnx", ".engine")
        r["artifact"]["sha256"] = "0" * 64  # an engine's own hash: not the plan file's
        r["backend"] = "tensorrt"
        r["latency"]["p50_ms"] = 1.0 if r["artifact"]["name"].startswith(SMALL) else 5.0
    (out / "device.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_plan_holds_the_tensorrt_forms_their_checksums_and_metadata(trt_plan):
    plan = json.loads((trt_plan / F.plan).read_text())
    assert plan["backend"] == "tensorrt" and plan["precisions"] == ["fp16", "int8"]
    assert sorted(p.name for p in (trt_plan / F.candidates).iterdir()) == sorted(plan["files"])
    sums = dict(reversed(line.split("  ")) for line in (trt_plan / F.checksums).read_text().splitlines())
    for name, sha in plan["files"].items():
        data = (trt_plan / F.candidates / name).read_bytes()
        assert sums[f"{F.candidates}/{name}"] == sha == hashlib.sha256(data).hexdigest()
        meta = json.loads((trt_plan / F.engines / (name.removesuffix(".onnx") + ".engine.meta.json")).read_text())
        assert meta["precision"] == name.split(".")[-2]
    int8 = onnx.load(str(trt_plan / F.candidates / f"{SMALL}.int8.onnx"))
    zero_points = [numpy_helper.to_array(t) for t in int8.graph.initializer if t.name.endswith("zero_point")]
    first_q = next(n for n in int8.graph.node if n.op_type == "QuantizeLinear")
    activation_zp = next(numpy_helper.to_array(t) for t in int8.graph.initializer if t.name == first_q.input[2])
    assert zero_points and activation_zp.dtype.name == "int8" and not activation_zp.any()  # TensorRT: symmetric int8
    fp16 = onnx.load(str(trt_plan / F.candidates / f"{SMALL}.fp16.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)


@pytest.mark.parametrize("major, flags", [("10", {"fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}),
                                          ("11", {"fp16": ["--stronglyTyped"], "int8": ["--stronglyTyped"]})])
def test_device_script_builds_each_engine_with_its_flags_then_times_them(trt_plan, major, flags):
    out = subprocess.run(["bash", str(trt_plan / F.runner_script), "--dry-run"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "TRT_MAJOR": major}, check=True).stdout.splitlines()
    builds, last = out[:-1], out[-1]
    assert len(builds) == 4  # 2 architectures x (fp16, int8)
    for line in builds:
        words = line.split()
        onnx_file = next(w for w in words if w.startswith("--onnx=")).removeprefix(f"--onnx={F.candidates}/")
        precision = onnx_file.split(".")[-2]
        assert f"--saveEngine={F.engines}/{onnx_file.removesuffix('.onnx')}.engine" in words
        assert [w for w in words if w in ("--fp16", "--int8", "--stronglyTyped")] == flags[precision]
        assert "--optShapes=input:1x3x32x32" in words  # dynamic axes: timed at batch 1, the candidate's size
    assert last == f"python3 -m edgeseg.bench.runner {F.engines}/*.engine --backend tensorrt --device cuda --out device.jsonl"


def test_engine_lines_decide_the_study_and_the_winner_ships_a_kit(trt_plan):
    doc = optimize(target_defaults_recipe(), trt_plan, budget_ms=3, backend="tensorrt",
                   device_latency=trt_plan / "device.jsonl")
    assert doc["feasible"] == 1 and doc["candidate"] == SMALL and doc["precision"] == "fp16"
    assert doc["predicted_latency_ms"] == 1.0
    assert (trt_plan / F.winner / "4_export" / "tensorrt" / "build_engine.sh").is_file()
    if not tensorrt_status()[0]:  # no engine here: accuracy from the ONNX file, latency left to the device
        assert doc["final_latency_ms"] is None and doc["final_miou"] is not None
        assert "timed on the device" in doc["summary"] and "build_engine.sh" in doc["summary"]


def test_a_plan_is_used_with_its_own_backend_only(trt_plan):
    with pytest.raises(OptimizeError, match="is a plan for --backend tensorrt") as err:
        optimize(target_defaults_recipe(), trt_plan, budget_ms=3, device_latency=trt_plan / "device.jsonl")
    assert "\n" not in str(err.value)


@pytest.mark.skipif(tensorrt_status()[0], reason="TensorRT and a GPU are here: engines would be built and timed")
def test_local_tensorrt_without_tensorrt_stops_before_building(tmp_path):
    with pytest.raises(OptimizeError, match="--backend tensorrt: .*--plan, run run_on_device.sh there") as err:
        optimize(target_defaults_recipe(), tmp_path / "out", budget_ms=3, backend="tensorrt")
    assert "\n" not in str(err.value) and not (tmp_path / "out" / F.candidates).exists()
