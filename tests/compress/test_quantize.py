"""QAT export (plain QDQ, no PTQ) and accuracy-aware mixed precision, on tiny fitted models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import edgeseg.compress.sensitivity as sensitivity
import edgeseg.export.onnx2int8 as onnx2int8
from tests.export.conftest import QUICK_LATENCY, fitted_checkpoint


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fitted_checkpoint(tmp_path_factory.mktemp("fit") / "model.pt", steps=100)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx2int8, "LATENCY_KW", QUICK_LATENCY)
    monkeypatch.setattr(onnx2int8, "LATENCY_ROUNDS", 1)


def test_qat_export_is_plain_qdq_that_runs_in_onnxruntime_without_ptq(fitted: Path, tmp_path: Path, quick: None,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeseg.export import export
    from edgeseg.runtime.ort_rt import OrtBackend

    def no_ptq(*args: object, **kwargs: object) -> None:
        raise AssertionError("PTQ ran on the QAT path")

    monkeypatch.setattr(onnx2int8, "quantize", no_ptq)
    monkeypatch.setattr(onnx2int8, "calibrate", no_ptq)
    doc = export(fitted, tmp_path, precisions=["int8"],
                 overrides=["export.qat.epochs=1", "export.calibration.images=4", "export.int8_policy=always"])
    art = next(a for a in doc["artifacts"] if a["precision"] == "int8")
    model = onnx.load(art["path"])
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "FakeQuantize" not in ops
    assert art["quantization"]["method"] == "qat" and art["quantization"]["quantized_nodes"] >= 5
    assert art["quantization"]["qat"]["epochs"] == 1 and (tmp_path / "qat" / "train_log.csv").is_file()
    assert not list((tmp_path / "qat").glob("*.pt"))
    assert art["parity"]["argmax_agreement"] > 0.9 and art["accuracy"]["int8"]["num_images"] == 6
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    assert OrtBackend(art["path"], threads=1)(x)["logits"].shape == (1, 4, 64, 64)
    qat = art["quantization"]["qat"]
    from edgeseg.artifacts.checkpoint import load_checkpoint

    recipe_lr = load_checkpoint(fitted).meta.recipe["train"]["lr"]
    assert qat["distill"] is True and qat["lr"] == pytest.approx(recipe_lr / 100)
    # the calibrated start is a model-selection candidate like the epoch: the better one is exported
    import csv

    with open(tmp_path / "qat" / "train_log.csv") as f:
        epoch1 = float(next(csv.DictReader(f))["val_miou"])
    start = qat["start_val_score"]
    assert 0.0 < start <= 1.0 and qat["best_epoch"] in (0, 1)
    if abs(epoch1 - start) > 1e-4:  # the log rounds to 5 decimals
        assert qat["best_epoch"] == (1 if epoch1 > start else 0)
    # every conv but the float-output head runs as ORT's INT8 conv (U-Net concats and skips included)
    assert qat["graph_rewrites"]["concat_requantizers"] >= 1 and qat["graph_rewrites"]["folded_weight_quantizers"] >= 5
    fused = fused_ops(Path(art["path"]), tmp_path / "opt.onnx")
    assert fused["Conv"] + fused["FusedConv"] == 1 and fused["QLinearConv"] >= 5


def fused_ops(path: Path, optimized: Path) -> dict[str, int]:
    """Op counts of the graph ONNX Runtime runs for ``path`` (its CPU optimisations applied)."""
    from collections import Counter

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(optimized).graph.node)


def test_mixed_precision_honours_the_budget_where_full_int8_does_not(fitted: Path, tmp_path: Path, quick: None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeseg.export import export

    # No layer kind goes float for speed here, so the budget alone must pull layers back to float.
    monkeypatch.setattr(sensitivity, "KIND_MARGIN", float("inf"))
    doc = export(fitted, tmp_path, precisions=["int8"],
                 overrides=["export.max_drop=0.5", "export.int8_policy=always"])
    art = next(a for a in doc["artifacts"] if a["precision"] == "int8")
    mixed = art["quantization"]["mixed_precision"]
    assert mixed["full_int8_drop_points"] > 0.5, "the fixture must be a model that full INT8 hurts"
    assert mixed["mixed_drop_points"] <= 0.5
    assert art["accuracy"]["miou_drop_points"] == pytest.approx(mixed["mixed_drop_points"], abs=1e-6)
    layers = mixed["layers"]
    assert {r["precision"] for r in layers} == {"int8", "fp32"} and all(r["reason"] for r in layers)
    floats = [r for r in layers if r["precision"] == "fp32"]
    assert all("accuracy" in r["reason"] for r in floats)
    # The most sensitive layer went float first.
    top = max((r for r in layers if "sensitivity_points" in r), key=lambda r: r["sensitivity_points"])
    assert top["precision"] == "fp32"
    assert art["quantization"]["skipped_nodes"] == len(floats)
    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved["artifacts"][1]["quantization"]["mixed_precision"]["layers"] == layers


def test_an_int8_model_over_the_budget_is_not_shipped(fitted: Path, tmp_path: Path, quick: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """When no layer choice meets --max-drop (e.g. every conv already float for speed and the quantized
    elementwise ops still cost too much), the INT8 file is written as rejected, with the reason."""
    from edgeseg.export import export

    real = sensitivity.choose_float_layers

    def nothing_helps(*args: object, **kwargs: object) -> dict:
        choice = real(*args, **kwargs)
        return {**choice, "float_layers": []}  # as if the fallback had run out of layers

    monkeypatch.setattr(sensitivity, "choose_float_layers", nothing_helps)
    doc = export(fitted, tmp_path, precisions=["int8"], overrides=["export.max_drop=0.5", "export.int8_policy=always"])
    art = next(a for a in doc["artifacts"] if a["precision"] == "int8")
    assert art["accuracy"]["miou_drop_points"] > 0.5 and not art["shipped"]
    assert "no INT8 model within --max-drop 0.5" in art["reason"]
    assert (tmp_path / "model.int8.rejected.onnx").is_file() and not (tmp_path / "model.int8.onnx").exists()


def test_qat_and_max_drop_together_are_refused(fitted: Path, tmp_path: Path) -> None:
    from edgeseg.export import ExportError, export

    with pytest.raises(ExportError, match="cannot be combined"):
        export(fitted, tmp_path, precisions=["int8"], overrides=["export.qat.epochs=1", "export.max_drop=1"])


def test_tensorrt_kit_qat_is_symmetric_signed_qdq_without_ptq(fitted: Path, tmp_path: Path, quick: None,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from onnx import numpy_helper

    from edgeseg.export import export

    def no_ptq(*args: object, **kwargs: object) -> None:
        raise AssertionError("PTQ ran on the QAT path")

    monkeypatch.setattr(onnx2int8, "quantize", no_ptq)
    monkeypatch.setattr(onnx2int8, "calibrate", no_ptq)
    doc = export(fitted, tmp_path, formats=["tensorrt"], precisions=["int8"],
                 overrides=["export.qat.epochs=1", "export.calibration.images=4", "export.int8_policy=always"])
    kit = tmp_path / "tensorrt"
    model = onnx.load(str(kit / "model.int8.qdq.onnx"))
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:  # constants and their Identity copies (shared zero points)
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) >= 10
    for node in qdq:
        zero = values[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), f"{node.name}: zero point {zero} ({zero.dtype})"
    record = next(a for a in doc["artifacts"] if a["format"] == "tensorrt" and a["precision"] == "kit")
    assert record["quantization"]["qat"]["preset"] == "performance"
    assert not (kit / "calibration.cache").exists() and "int8-calib" not in (kit / "build_engine.sh").read_text()
    assert (tmp_path / "qat-tensorrt" / "train_log.csv").is_file()
