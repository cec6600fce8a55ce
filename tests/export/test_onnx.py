"""ONNX export of every family x {fp32, int8}: parity, metadata round-trip, export.json, INT8 policy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg import runtime
from edgeseg.export import ExportError, export
from edgeseg.export.onnx2int8 import int8_decision
from edgeseg.recipe import ExportCfg
from edgeseg.artifacts.checkpoint import load_checkpoint
from tests.export.conftest import fitted_checkpoint

FAMILIES = ["unet_test", "segnet_test", "fcn_test"]


@pytest.fixture(scope="module", params=FAMILIES)
def exported(request, tmp_path_factory):
    """Each tiny family fitted briefly, exported to FP32 + INT8 ONNX (INT8 always kept)."""
    import edgeseg.export.onnx2int8 as q

    root = tmp_path_factory.mktemp(request.param)
    ckpt = fitted_checkpoint(root / "model.pt", model=request.param)
    saved = (q.LATENCY_KW, q.LATENCY_ROUNDS)
    q.LATENCY_KW, q.LATENCY_ROUNDS = {"warmup": 1, "min_runs": 3, "min_time_s": 0.0, "max_time_s": 5.0}, 1
    try:
        cfg = ExportCfg(int8_policy="always", calibration={"images": 8})
        doc = export(ckpt, root / "out", precisions=["fp32", "int8"], cfg=cfg)
    finally:
        q.LATENCY_KW, q.LATENCY_ROUNDS = saved
    return ckpt, root / "out", doc


def _record(doc, fmt, precision):
    return next(a for a in doc["artifacts"] if a["format"] == fmt and a["precision"] == precision)


def test_fp32_parity_and_export_json(exported):
    ckpt, out, doc = exported
    fp32 = _record(doc, "onnx", "fp32")
    assert fp32["shipped"] and fp32["parity"]["passed"]
    assert fp32["parity"]["max_abs_err"] < 1e-3 and fp32["parity"]["argmax_agreement"] >= 0.999
    assert fp32["export"]["exporter"] in ("dynamo", "torchscript")
    on_disk = json.loads((out / "export.json").read_text())
    assert on_disk["artifacts"] == json.loads(json.dumps(doc["artifacts"], default=str))
    assert on_disk["inputs"]["checkpoint"] == str(ckpt) and on_disk["versions"]["onnxruntime"]


def test_int8_runs_in_onnxruntime_with_agreement(exported):
    _, out, doc = exported
    int8 = _record(doc, "onnx", "int8")
    assert int8["shipped"] and (out / "model.int8.onnx").is_file()  # int8_policy=always
    assert int8["parity"]["argmax_agreement"] >= 0.9
    q = int8["quantization"]
    assert q["quantized_nodes"] > 0 and q["qdq_nodes"] > 0
    cal = int8["calibration"]
    assert cal["split"] == "train" and cal["images"] == 8 and cal["method"] == "minmax"
    acc = int8["accuracy"]
    assert acc["int8"]["num_images"] == acc["fp32"]["num_images"] == 6
    assert abs(acc["miou_drop_points"]) < 15
    be = runtime.open(out / "model.int8.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    assert be(x)["logits"].shape[:2] == (2, be.meta.num_classes)


def test_metadata_round_trip(exported):
    ckpt, out, _ = exported
    meta = load_checkpoint(ckpt).meta
    for name, precision in (("model.onnx", "fp32"), ("model.int8.onnx", "int8")):
        got = runtime.open(out / name).meta
        assert got.precision == precision
        for field in ("model_name", "family", "classes", "mean", "std", "input_size", "stride", "num_classes",
                      "recipe_hash", "recipe"):
            assert getattr(got, field) == getattr(meta, field), field


def test_eval_needs_only_the_onnx_file(exported):
    from edgeseg.evaluate import evaluate

    _, out, doc = exported
    res = evaluate(out / "model.onnx")
    assert res["num_images"] == 6
    assert res["miou"] == pytest.approx(_record(doc, "onnx", "int8")["accuracy"]["fp32"]["miou"])


def test_fp16_export(tmp_path):
    ckpt = fitted_checkpoint(tmp_path / "model.pt", steps=10)
    doc = export(ckpt, tmp_path / "out", precisions=["fp16"])
    fp16 = _record(doc, "onnx", "fp16")
    assert fp16["shipped"], fp16["reason"]
    be = runtime.open(tmp_path / "out" / "model.fp16.onnx")
    assert be.meta.precision == "fp16" and be.inputs[0].dtype == "float32"  # float32 I/O, fp16 inside
    assert fp16["parity"]["argmax_agreement"] > 0.95


@pytest.mark.parametrize("fp32_ms, int8_ms, policy, ship", [
    (10.0, 5.0, "auto", True), (10.0, 12.0, "auto", False), (10.0, 10.0, "auto", False),
    (10.0, 12.0, "always", True)])
def test_int8_policy_decision(fp32_ms, int8_ms, policy, ship):
    shipped, reason = int8_decision(fp32_ms, int8_ms, policy)
    assert shipped is ship
    assert f"{int8_ms:.2f} ms" in reason and f"{fp32_ms:.2f} ms" in reason


def test_int8_policy_rejects_unknown_policies():
    with pytest.raises(ValueError, match="int8_policy must be 'auto' or 'always', got 'never'"):
        int8_decision(10.0, 5.0, "never")


def test_auto_policy_rejects_a_slower_int8(tmp_path, monkeypatch, quick_latency):
    import edgeseg.export.onnx2int8 as q

    def fake_measure(ctx, paths):  # INT8 twice as slow, whatever this machine does
        return {"fp32": {"p50_ms": 1.0}, "int8": {"p50_ms": 2.0}}, q.RatioSamples([0.5])

    monkeypatch.setattr(q, "measure_paired", fake_measure)
    ckpt = fitted_checkpoint(tmp_path / "model.pt", steps=5)
    doc = export(ckpt, tmp_path / "out", precisions=["int8"], cfg=ExportCfg(calibration={"images": 4}))
    int8 = _record(doc, "onnx", "int8")
    assert not int8["shipped"] and "not faster than FP32" in int8["reason"] and "0.50x" in int8["reason"]
    assert not (tmp_path / "out" / "model.int8.onnx").exists()
    assert (tmp_path / "out" / "model.int8.rejected.onnx").is_file()
    assert doc["figures"]["int8_shipped"] is False


def test_clear_errors(tmp_path):
    import torch

    from edgeseg.artifacts import ArtifactError

    with pytest.raises(ArtifactError, match="checkpoint not found"):
        export(tmp_path / "nope.pt", tmp_path / "out")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ArtifactError, match="not an edgeseg checkpoint"):
        export(foreign, tmp_path / "out")
    ckpt = fitted_checkpoint(tmp_path / "model.pt", steps=1)
    not_a_checkpoint = tmp_path / "model.onnx"
    not_a_checkpoint.write_bytes(b"\x08\x07\x12\x07pytorch")  # e.g. an ONNX file passed by mistake
    with pytest.raises(ArtifactError, match=r"model\.onnx: not a readable PyTorch checkpoint"):
        export(not_a_checkpoint, tmp_path / "out")
    with pytest.raises(ExportError, match="unknown export format 'coreml'"):
        export(ckpt, tmp_path / "out", formats=["coreml"])
    with pytest.raises(ExportError, match="unknown precision 'int4'"):
        export(ckpt, tmp_path / "out", precisions=["int4"])


def test_predict_needs_only_the_int8_file(exported, tmp_path):
    from PIL import Image

    from edgeseg.predict import predict

    _, out, _ = exported
    img = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(img)
    written = predict(out / "model.int8.onnx", [img], tmp_path / "preds")
    mask = np.asarray(Image.open(written[0]["mask"]))
    assert mask.shape == (40, 56) and mask.max() < 4
    assert Image.open(written[0]["overlay"]).size == (56, 40)


def test_dynamo_failure_falls_back_and_is_reported(tmp_path, monkeypatch):
    import edgeseg.artifacts.onnx_export as writer  # the torch -> ONNX writer lives under the artifacts

    def broken(*args, **kwargs):
        raise RuntimeError("dynamo cannot trace this\nsecond line of a long trace")

    monkeypatch.setattr(writer, "_dynamo_export", broken)
    ckpt = fitted_checkpoint(tmp_path / "model.pt", model="fcn_test", steps=10)
    doc = export(ckpt, tmp_path / "out")
    info = _record(doc, "onnx", "fp32")["export"]
    assert info["exporter"] == "torchscript"
    assert info["fallback_reason"] == "RuntimeError: dynamo cannot trace this"
    assert any("used the TorchScript exporter" in n and "dynamo cannot trace this" in n for n in doc["notes"])
    assert _record(doc, "onnx", "fp32")["parity"]["passed"]


def test_failing_fp32_parity_is_an_error_with_figures(tmp_path, monkeypatch):
    from edgeseg.export.context import ExportContext

    real = ExportContext.reference_outputs

    def shifted(self):  # as if the ONNX graph computed something else than PyTorch
        return [{"logits": ref["logits"] + np.where(np.arange(ref["logits"].shape[1]) == 0, 5.0, 0.0)[
            None, :, None, None].astype(np.float32)} for ref in real(self)]

    monkeypatch.setattr(ExportContext, "reference_outputs", shifted)
    ckpt = fitted_checkpoint(tmp_path / "model.pt", steps=10)
    with pytest.raises(ExportError, match=r"model\.onnx: ONNX output differs from PyTorch"):
        export(ckpt, tmp_path / "out", precisions=["int8"])
    doc = json.loads((tmp_path / "out" / "export.json").read_text())
    fp32 = _record(doc, "onnx", "fp32")
    assert "differs from PyTorch" in doc["error"] and not fp32["shipped"] and not fp32["parity"]["passed"]
    assert fp32["parity"]["max_abs_err"] == pytest.approx(5.0, rel=1e-3)
    assert not any(a["precision"] == "int8" for a in doc["artifacts"])  # nothing built on a failed reference


def test_recipe_export_section_and_overrides_apply(tmp_path, quick_latency):
    ckpt = fitted_checkpoint(tmp_path / "model.pt", steps=10)
    doc = export(ckpt, tmp_path / "out", precisions=["int8"],
                 overrides=["export.calibration.method=percentile", "export.calibration.images=3",
                            "export.int8_policy=always", "export.dynamic=false"])
    int8 = _record(doc, "onnx", "int8")
    assert int8["calibration"]["method"] == "percentile" and int8["calibration"]["images"] == 3
    assert int8["policy"] == "always" and int8["shipped"]
    assert doc["inputs"]["cfg"]["dynamic"] is False
    be = runtime.open(tmp_path / "out" / "model.onnx")
    assert be.inputs[0].shape == (1, 3, 64, 64)  # static export at the recipe's input size


def test_calibration_and_quantization_failures_are_one_line_errors(tmp_path, monkeypatch):
    import edgeseg.export.onnx2int8 as q

    ckpt = fitted_checkpoint(tmp_path / "model.pt", steps=10)

    def ort_failure(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : cannot run the augmented model\n  deep detail")

    monkeypatch.setattr(q, "calibrate", ort_failure)
    with pytest.raises(ExportError, match=r"model\.onnx: INT8 calibration \(minmax, 4 training images\) failed: "
                                          r"RuntimeError: \[ONNXRuntimeError\] .* augmented model$"):
        export(ckpt, tmp_path / "a", precisions=["int8"], cfg=ExportCfg(calibration={"images": 4}))
    monkeypatch.undo()
    monkeypatch.setattr(q, "quantize", lambda *a, **k: (_ for _ in ()).throw(KeyError("node_Conv_3")))
    with pytest.raises(ExportError, match=r"model\.onnx: INT8 quantization for onnxruntime-cpu failed: KeyError"):
        export(ckpt, tmp_path / "b", precisions=["int8"], cfg=ExportCfg(calibration={"images": 4}))
    assert "INT8 quantization" in json.loads((tmp_path / "b" / "export.json").read_text())["error"]
