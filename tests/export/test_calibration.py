"""INT8 calibration: training split only, methods selectable, streamed in bounded chunks, ranges reused."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.compress import calibration as calib_mod
from edgeseg.compress.ptq import CPU_SETTINGS, TENSORRT_SETTINGS, CalibMethod, calibrate, quantize, tensor_amax
from edgeseg.export.torch2onnx import export_onnx
from edgeseg.recipe import recipe_from_dict
from edgeseg.artifacts.checkpoint import load_checkpoint
from tests.conftest import make_checkpoint, tiny_recipe_dict


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """An FP32 unet_test ONNX file (random weights: calibration needs no fitted model)."""
    root = tmp_path_factory.mktemp("calib")
    ckpt = load_checkpoint(make_checkpoint(root / "model.pt"))
    path = root / "model.onnx"
    export_onnx(ckpt.model, ckpt.meta, path, hw=(64, 64))
    return path


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, 64, 64)).astype(np.float32) * (i + 1) for i in range(n)]


def test_calibration_uses_only_the_training_split(monkeypatch):
    import edgeseg.data as data

    splits = []
    real = data.build_dataset

    def spy(cfg, split, **kw):
        splits.append(split)
        return real(cfg, split, **kw)

    monkeypatch.setattr(data, "build_dataset", spy)
    recipe = recipe_from_dict(tiny_recipe_dict())
    images, info = calib_mod.calibration_images(recipe.data, 3, count=20, size=(32, 48), seed=1, num_classes=4)
    arrays = list(images)
    assert splits == ["train"]
    assert info.split == "train" and info.images == 20 == len(arrays)
    assert info.distinct_images == 16  # 16 training images, cycled with fresh crops
    assert all(a.shape == (1, 3, 32, 48) and a.dtype == np.float32 for a in arrays)


def _range(ranges, name: str) -> tuple[float, float]:
    lo, hi = ranges[name].range_value
    return float(np.asarray(lo).reshape(-1)[0]), float(np.asarray(hi).reshape(-1)[0])


@pytest.mark.parametrize("method", [m.value for m in CalibMethod])
def test_calibration_streams_in_bounded_chunks(tiny_onnx, method, monkeypatch):
    chunk_sizes = []

    class Reader(calib_mod.ArrayReader):  # one reader per collect_data call: record what it holds
        def __init__(self, name, arrays):
            arrays = list(arrays)
            chunk_sizes.append(len(arrays))
            super().__init__(name, arrays)

    monkeypatch.setattr(calib_mod, "ArrayReader", Reader)
    images = _images(10)
    ranges = calibrate(tiny_onnx, iter(images), method=method, total=10)
    chunk = CalibMethod(method).chunk
    assert sum(chunk_sizes) == 10 and max(chunk_sizes) <= chunk and len(chunk_sizes) == -(-10 // chunk)
    lo, hi = _range(ranges, "input")
    if method == "minmax":  # the input's range is exactly the extremes of all images, across chunks
        assert lo == pytest.approx(min(float(x.min()) for x in images), rel=1e-6)
        assert hi == pytest.approx(max(float(x.max()) for x in images), rel=1e-6)
    else:  # histogram methods clip outliers: never wider than the extremes
        assert 0 < hi <= max(float(np.abs(x).max()) for x in images) * 1.001
    assert len(list(ranges)) > 10  # every float tensor, so TensorRT's cache covers each layer


def test_one_calibration_feeds_both_quantizations(tiny_onnx, tmp_path):
    import onnx
    from onnx import numpy_helper

    ranges = calibrate(tiny_onnx, iter(_images(4)), method="minmax")
    cpu = quantize(tiny_onnx, tmp_path / "cpu.onnx", ranges, CPU_SETTINGS)
    trt = quantize(tiny_onnx, tmp_path / "trt.onnx", ranges, TENSORRT_SETTINGS)
    assert cpu["quantized_nodes"] > 0 and cpu["skipped_nodes"] == 0
    assert trt["skipped_by_op"].get("ConvTranspose", 0) == sum(
        n.op_type == "ConvTranspose" for n in onnx.load(str(tiny_onnx)).graph.node) > 0
    for path, dtype in ((tmp_path / "cpu.onnx", np.uint8), (tmp_path / "trt.onnx", np.int8)):
        model = onnx.load(str(path))
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        q_input = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
        assert inits[q_input.input[2]].dtype == dtype  # activations: u8 on CPU, symmetric s8 for TensorRT
        scale = float(inits[q_input.input[1]])
        lo, hi = _range(ranges, "input")
        expected = (hi - min(lo, 0)) / 255 if dtype == np.uint8 else max(abs(lo), abs(hi)) / 127
        assert scale == pytest.approx(expected, rel=1e-3)
    amax = tensor_amax(ranges)
    assert amax["input"] == pytest.approx(max(abs(lo), abs(hi)))


def test_unknown_calibration_method_is_an_error():
    with pytest.raises(ValueError, match="'median'"):
        CalibMethod("median")
