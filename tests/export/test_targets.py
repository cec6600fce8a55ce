"""ORT mobile format, the TensorRT / Jetson kit (cache format, script), OpenVINO, and the CLI."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess

import numpy as np
import pytest

from edgeseg import runtime
from edgeseg.export import export
from edgeseg.export import trt_kit
from edgeseg.export.onnx2trt import tensorrt_status
from edgeseg.recipe import ExportCfg
from tests.export.conftest import fitted_checkpoint

TRT_OK, TRT_WHY = tensorrt_status()


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """segnet_test exported to ONNX FP32 + INT8, ORT format and the TensorRT kit in one call."""
    import edgeseg.export.onnx2int8 as q

    root = tmp_path_factory.mktemp("targets")
    ckpt = fitted_checkpoint(root / "model.pt", model="segnet_test")
    saved = (q.LATENCY_KW, q.LATENCY_ROUNDS)
    q.LATENCY_KW, q.LATENCY_ROUNDS = {"warmup": 1, "min_runs": 3, "min_time_s": 0.0, "max_time_s": 5.0}, 1
    try:
        doc = export(ckpt, root / "out", formats=["ort", "tensorrt"], precisions=["fp32", "int8"],
                     cfg=ExportCfg(int8_policy="always", calibration={"images": 8}))
    finally:
        q.LATENCY_KW, q.LATENCY_ROUNDS = saved
    return root / "out", doc


def _records(doc, fmt):
    return {a["precision"]: a for a in doc["artifacts"] if a["format"] == fmt}


def test_ort_format_loads_and_matches(targets):
    out, doc = targets
    ort = _records(doc, "ort")
    assert set(ort) >= {"fp32", "int8"}
    for precision, rec in ort.items():
        assert rec["shipped"] and rec["match_onnx"]["argmax_agreement"] >= 0.999, rec
        be = runtime.open(rec["path"])
        assert be.meta.precision == precision and be.meta.model_name == "segnet_test"
    config = (out / "required_operators.config").read_text()
    assert "Conv" in config and str(out) not in config
    ops = {op for names in ort["int8"]["required_operators"].values() for op in names}
    assert "Conv" in ops and ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv"}


def test_tensorrt_absent_says_so_and_writes_the_kit(targets):
    out, doc = targets
    trt = _records(doc, "tensorrt")
    assert trt["kit"]["shipped"] and (out / "tensorrt").is_dir()
    if not TRT_OK:
        for precision in ("fp16", "int8"):
            assert not trt[precision]["shipped"] and "TensorRT" in trt[precision]["reason"]
        assert any("TensorRT" in n for n in doc["notes"])
    kit = out / "tensorrt"
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.qdq.onnx", "calibration.cache", "build_engine.sh",
                 "README.txt"):
        assert (kit / name).is_file(), name


def test_segnet_onnx_has_no_maxunpool_and_the_kit_uses_it(targets):
    """export writes SegNet with mask unpooling (SegModel.export_form): ORT runs it faster and TensorRT
    has no MaxUnpool; the kit's graph is that same file."""
    import onnx

    out, doc = targets
    shipped = onnx.load(str(out / "model.onnx")).graph.node
    ops = {n.op_type for n in shipped}
    assert "MaxUnpool" not in ops and "ScatterND" not in ops, ops
    assert all(len([o for o in n.output if o]) == 1 for n in shipped if n.op_type == "MaxPool")  # no indices output
    assert (out / "tensorrt" / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()
    fp32 = next(a for a in doc["artifacts"] if a["format"] == "onnx" and a["precision"] == "fp32")
    assert fp32["parity"]["argmax_agreement"] >= 0.999
    assert any("unpool='compare'" in n for n in doc["notes"])
    assert not any("postprocess inside the graph" in n for n in doc["notes"])  # the form is not a postprocess


def test_kit_qdq_model_is_symmetric_int8_and_runs(targets):
    import onnx
    from onnx import numpy_helper

    out, _ = targets
    model = onnx.load(str(out / "tensorrt" / "model.int8.qdq.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    assert not any(n.op_type == "ConvTranspose" and n.input[1] in inits and inits[n.input[1]].dtype == np.int8
                   for n in model.graph.node)
    be = runtime.open(out / "tensorrt" / "model.int8.qdq.onnx")
    assert be(np.zeros((1, 3, 64, 64), np.float32))["logits"].shape[1] == be.meta.num_classes


def test_calibration_cache_is_tensorrt_text_format(targets):
    out, doc = targets
    text = (out / "tensorrt" / "calibration.cache").read_text()
    lines = text.splitlines()
    assert lines[0] == f"TRT-{trt_kit.trt_version_code(trt_kit.DEFAULT_TRT_VERSION)}-EntropyCalibration2"
    header, scales = trt_kit.parse_calibration_cache(text)
    assert header == lines[0] and len(scales) == len(lines) - 1 > 5
    for line in lines[1:]:
        name, value = line.rsplit(": ", 1)
        assert len(value) == 8 and struct.unpack(">f", bytes.fromhex(value))[0] > 0
    assert "input" in scales  # the network input has a range too


def test_cache_writer_round_trip_and_version_codes():
    text = trt_kit.calibration_cache({"a": 127.0, "b": 0.0, "conv/out": 2.54}, trt_version="8.6.1")
    header, scales = trt_kit.parse_calibration_cache(text)
    assert header == "TRT-8601-EntropyCalibration2"
    assert scales["a"] == pytest.approx(1.0) and scales["conv/out"] == pytest.approx(0.02) and scales["b"] > 0
    assert trt_kit.scale_hex(1.0) == "3f800000"
    assert trt_kit.trt_version_code("10.3.0") == "100300"
    with pytest.raises(ValueError, match="TRT-"):
        trt_kit.parse_calibration_cache("nonsense\n")


def test_build_script_is_valid_bash_with_trtexec_lines(targets, tmp_path):
    out, _ = targets
    script = (out / "tensorrt" / "build_engine.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash")
    assert "--calib=calibration.cache" in script and "--onnx=model.int8.qdq.onnx" in script
    assert "--stronglyTyped" in script and "--minShapes=input:" in script
    assert subprocess.run(["bash", "-n", str(out / "tensorrt" / "build_engine.sh")]).returncode == 0
    # Run it against a fake trtexec that records its arguments: every mode calls trtexec correctly.
    kit = tmp_path / "kit"
    shutil.copytree(out / "tensorrt", kit)
    fake = tmp_path / "trtexec"
    fake.write_text('#!/usr/bin/env bash\nif [ "$1" = "--help" ]; then echo "TensorRT v100300"; exit 0; fi\n'
                    'echo "$@" >> "$(dirname "$0")/calls.txt"\n')
    fake.chmod(0o755)
    proc = subprocess.run(["bash", str(kit / "build_engine.sh"), "all"], capture_output=True, text=True,
                          env={"TRTEXEC": str(fake), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 3
    assert "--saveEngine=model.fp16.engine --fp16" in calls[0]
    assert "--onnx=model.int8.qdq.onnx" in calls[1] and "--int8" in calls[1]
    assert "--calib=calibration.cache" in calls[2]


def test_exported_kit_in_hostile_folder_dry_run_runs_nothing(targets, tmp_path):
    out, _ = targets
    kit = tmp_path / "a b$(touch x)"
    shutil.copytree(out / "tensorrt", kit)
    before = sorted(p.name for p in kit.iterdir())
    proc = subprocess.run([str(kit / "build_engine.sh"), "--dry-run", "all"], cwd=tmp_path, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "TRTEXEC": str(tmp_path / "no-trtexec")})
    assert proc.returncode == 0, proc.stderr
    assert [ln.split()[1] for ln in proc.stdout.splitlines()] == [
        "--onnx=model.onnx", "--onnx=model.int8.qdq.onnx", "--onnx=model.onnx"]
    assert not (tmp_path / "x").exists() and not (kit / "x").exists()
    assert sorted(p.name for p in kit.iterdir()) == before  # no log, no engine, cache untouched
    assert (kit / "calibration.cache").read_bytes() == (out / "tensorrt" / "calibration.cache").read_bytes()


@pytest.mark.tensorrt
@pytest.mark.skipif(not TRT_OK, reason=f"no TensorRT engine build here: {TRT_WHY}")
def test_engines_match_onnxruntime(targets):
    _, doc = targets
    for precision in ("fp16", "int8"):
        rec = _records(doc, "tensorrt")[precision]
        assert rec["shipped"] and rec["match_onnxruntime"]["argmax_agreement"] >= 0.98


def test_openvino_missing_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    from edgeseg.export import ExportError

    monkeypatch.setitem(sys.modules, "openvino", None)  # as on a machine without the extra
    ckpt = fitted_checkpoint(tmp_path / "model.pt", steps=10)
    with pytest.raises(ExportError, match="needs the openvino package"):
        export(ckpt, tmp_path / "out", formats=["openvino"])
    assert (tmp_path / "out" / "model.onnx").is_file()  # the ONNX export before it stands
    assert "openvino" in json.loads((tmp_path / "out" / "export.json").read_text())["error"]


def test_openvino_ir_runs_with_metadata(tmp_path):
    pytest.importorskip("openvino", reason="the openvino extra is not installed here")
    ckpt = fitted_checkpoint(tmp_path / "model.pt", steps=20)
    doc = export(ckpt, tmp_path / "out", formats=["openvino"], precisions=["fp32"])
    rec = _records(doc, "openvino")["fp32"]
    assert rec["shipped"] and rec["parity"]["argmax_agreement"] >= 0.999, rec
    assert rec["parity"]["max_rel_err"] < 1e-3
    be = runtime.open(rec["path"])
    assert be.meta.model_name == "unet_test" and be.meta.precision == "fp32"
    assert be(np.zeros((1, 3, 64, 64), np.float32))["logits"].shape[1] == be.meta.num_classes


def test_cli_export_end_to_end(tmp_path, quick_latency):
    from typer.testing import CliRunner

    from edgeseg.cli import app

    ckpt = fitted_checkpoint(tmp_path / "model.pt", steps=20)
    res = CliRunner().invoke(app, ["export", str(ckpt), "--int8", "--int8-policy", "always", "--calib-images", "4",
                                   "--calib-method", "entropy", "--static", "--out", str(tmp_path / "ex")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ex" / "model.onnx").is_file() and (tmp_path / "ex" / "model.int8.onnx").is_file()
    assert "export.json" in res.output
    doc = json.loads((tmp_path / "ex" / "export.json").read_text())
    int8 = _records(doc, "onnx")["int8"]
    assert int8["calibration"]["method"] == "entropy" and int8["calibration"]["images"] == 4
    assert int8["shipped"] and int8["policy"] == "always" and doc["inputs"]["cfg"]["dynamic"] is False
    from tests.test_cli import edgeseg

    bad = edgeseg("export", tmp_path / "missing.pt", "--out", tmp_path / "ex2")
    assert bad.returncode == 2 and "checkpoint not found" in bad.stderr and "Traceback" not in bad.stderr
    bad = edgeseg("export", ckpt, "--format", "coreml", "--out", tmp_path / "ex2")
    assert bad.returncode == 2 and "unknown export format 'coreml'" in bad.stderr
    bad = edgeseg("export", ckpt, "--int8", "--calib-method", "median", "--out", tmp_path / "ex2")
    assert bad.returncode == 2 and "--calib-method median: expected one of 'minmax'" in bad.stderr, bad.stderr
    assert not (tmp_path / "ex2").exists()
