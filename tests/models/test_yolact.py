"""YOLACT-style family: registry, head shapes, decoding, Fast NMS, mask assembly, in-graph postprocess, ONNX."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from edgeseg.models import create_model, get_model_info, list_models
from edgeseg.models.profile import count_macs
from edgeseg.models.yolact import (OUTPUT_NAMES, YolactWithPostprocess, assemble_masks, box_iou, crop_masks,
                                   decode_boxes, fast_nms, float_tail_nodes, points, postprocess)


def _tiny(num_classes: int = 3, **kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("yolact_test", num_classes=num_classes, **kw).eval()


def test_registered_as_instance_models() -> None:
    assert {"yolact", "yolact-lite"} <= set(list_models("instance"))
    assert "yolact_test" in list_models("instance", include_test=True)
    for name in ("yolact", "yolact-lite", "yolact_test"):
        info = get_model_info(name)
        assert info.task == "instance" and info.output_names == OUTPUT_NAMES and info.stride == 32


@pytest.mark.parametrize("hw", [(64, 96), (96, 64)])
def test_head_shapes(hw: tuple[int, int]) -> None:
    model = _tiny(num_classes=3, in_channels=1)
    outs = model(torch.randn(2, 1, *hw))
    a = sum((hw[0] // s) * (hw[1] // s) for s in (8, 16, 32))
    k = model.config["num_protos"]
    assert [tuple(o.shape) for o in outs] == [(2, a, 3), (2, a, 4), (2, a, k), (2, k, hw[0] // 4, hw[1] // 4)]
    assert outs[2].abs().max() <= 1 and outs[3].min() >= 0  # tanh coefficients, ReLU prototypes


def test_full_variants_on_meta_and_lite_budget() -> None:
    with torch.device("meta"):
        full = create_model("yolact", num_classes=80)
        scores, boxes, coefs, protos = full.eval()(torch.empty(1, 3, 512, 512))
    assert scores.shape == (1, 64 * 64 + 32 * 32 + 16 * 16, 80) and protos.shape == (1, 32, 128, 128)
    with torch.device("meta"):
        lite = create_model("yolact-lite", num_classes=80)
    assert count_macs(lite, (320, 320)) <= 1.6e9  # issue 9 budget at 320x320


def test_semantic_head_only_in_training() -> None:
    model = _tiny(semantic_head=True).train()
    outs = model(torch.randn(2, 3, 64, 64))
    assert len(outs) == 5 and outs[4].shape == (2, 3, 8, 8)
    assert len(model.eval()(torch.randn(1, 3, 64, 64))) == 4


def test_bad_input_side_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        _tiny()(torch.randn(1, 3, 48, 64))


def test_decode_boxes_around_points() -> None:
    raw = torch.full((1, 4, 2, 3), -20.0)  # softplus ~ 0: degenerate boxes at the points
    raw[0, :, 1, 2] = torch.log(torch.expm1(torch.tensor(2.0)))  # softplus = 2 -> 2 * stride each side
    boxes = decode_boxes(raw, 8)
    assert torch.allclose(boxes[0, :, 0, 0], torch.tensor([4.0, 4.0, 4.0, 4.0]), atol=1e-4)
    assert torch.allclose(boxes[0, :, 1, 2], torch.tensor([20.0 - 16, 12.0 - 16, 20.0 + 16, 12.0 + 16]), atol=1e-4)
    centres, strides = points((64, 32))
    assert centres.shape == (8 * 4 + 4 * 2 + 2 * 1, 2) and strides[-1] == 32
    assert centres[0].tolist() == [4.0, 4.0] and centres[8 * 4].tolist() == [8.0, 8.0]


def _greedy_nms(boxes: torch.Tensor, thresh: float) -> torch.Tensor:
    keep = torch.ones(len(boxes), dtype=torch.bool)
    for i in range(len(boxes)):
        if keep[i]:
            iou = box_iou(boxes[i:i + 1], boxes)[0]
            later = torch.arange(len(boxes)) > i
            keep &= ~(later & (iou >= thresh))
    return keep


def test_fast_nms_against_greedy_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        # Well-separated clusters: inside each, the best box suppresses all others in both forms.
        centres = torch.arange(5)[:, None].float() * 100 + 20
        jitter = torch.rand(5, 6, 2, generator=gen) * 4
        xy = (centres[:, None, :] + jitter).reshape(-1, 2)
        boxes = torch.cat([xy, xy + 30], 1)[torch.randperm(30, generator=gen)]
        keep_fast, keep_greedy = fast_nms(boxes, torch.zeros(30), 0.5), _greedy_nms(boxes, 0.5)
        assert torch.equal(keep_fast, keep_greedy) and keep_fast.sum() == 5
        # On arbitrary boxes Fast NMS suppresses at least what greedy NMS does (suppressed boxes still count).
        xy = torch.rand(40, 2, generator=gen) * 80
        boxes = torch.cat([xy, xy + 10 + torch.rand(40, 2, generator=gen) * 30], 1)
        fast, greedy = fast_nms(boxes, torch.zeros(40), 0.4), _greedy_nms(boxes, 0.4)
        assert not (fast & ~greedy).any()
    # The chain where they differ: A suppresses B, B overlaps C, A does not overlap C.
    chain = torch.tensor([[0.0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]])
    assert fast_nms(chain, torch.zeros(3), 0.3).tolist() == [True, False, False]
    assert _greedy_nms(chain, 0.3).tolist() == [True, False, True]


def test_mask_assembly_and_crop() -> None:
    protos = torch.zeros(2, 4, 6)
    protos[0, :2] = 3.0  # top half
    protos[1, :, :3] = 3.0  # left half
    coefs = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    logits = assemble_masks(protos, coefs)
    expected = torch.sigmoid(torch.einsum("khw,dk->dhw", protos, coefs))
    assert torch.allclose(logits.sigmoid(), expected)
    assert torch.allclose(logits[1], protos[0] + protos[1])
    cropped = crop_masks(logits > 0, torch.tensor([[0.0, 0.0, 6.0, 4.0], [1.0, 0.0, 2.6, 1.0]]))
    assert cropped[0].sum() == 12  # whole top half
    assert cropped[1].nonzero().tolist() == [[0, 1], [0, 2]]  # pixel centres 1.5 and 2.5 inside [1, 2.6]


def _raw_outputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    torch.nn.init.normal_(model.head.cls.bias, 0.0, 1.0)  # spread the scores so there is something to keep
    with torch.no_grad():
        return dict(zip(OUTPUT_NAMES, model(x)))


def test_in_graph_postprocess_equals_postprocess() -> None:
    model = _tiny()
    x = torch.randn(2, 3, 64, 96)
    outs = _raw_outputs(model, x)
    ref = postprocess(outs, input_hw=(64, 96), image_hw=(64, 96), top_k=20, max_dets=30)
    wrapped = YolactWithPostprocess(model, top_k=20, max_dets=30).eval()
    with torch.no_grad():
        boxes, scores, labels, masks = wrapped(x)
    assert boxes.shape == (2, 30, 4) and masks.shape == (2, 30, 64, 96)
    for i, det in enumerate(ref):
        n = len(det)
        assert n > 0 and (scores[i] > 0).sum() == n
        np.testing.assert_allclose(scores[i, :n].numpy(), det.scores, rtol=1e-6)
        np.testing.assert_array_equal(labels[i, :n].numpy(), det.labels)
        np.testing.assert_allclose(boxes[i, :n].numpy(), det.boxes, atol=1e-4)
        assert (masks[i, :n].numpy() != det.masks).mean() < 1e-4


def test_onnx_export_of_both_variants_matches_pytorch(tmp_path) -> None:  # noqa: ANN001
    import onnxruntime as ort

    from edgeseg.tasks.instance_postprocess import postprocess as np_postprocess

    model = _tiny()
    x = torch.randn(1, 3, 64, 64)
    outs = _raw_outputs(model, x)
    ref = postprocess(outs, input_hw=(64, 64), image_hw=(64, 64), top_k=50, max_dets=40)[0]
    wrapped = YolactWithPostprocess(model, top_k=50, max_dets=40).eval()
    # The dynamo exporter (edgeseg's first choice) for the in-graph postprocess; TorchScript for the heads.
    for net, names, dynamo in ((model, OUTPUT_NAMES, False), (wrapped, wrapped.output_names, True)):
        path = tmp_path / f"{type(net).__name__}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dynamo:
                torch.onnx.export(net, (x,), dynamo=True, opset_version=18, input_names=["input"],
                                  output_names=list(names), verbose=False).save(str(path))
            else:
                torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                                  output_names=list(names))
        got = dict(zip(names, ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})))
        if net is model:
            import onnx

            proto = onnx.load(str(path))
            tail = set(float_tail_nodes(proto))
            ops = {n.op_type for n in proto.graph.node if n.name in tail}
            producers = {o: n.name for n in proto.graph.node for o in n.output}
            assert "Conv" not in ops and "Softplus" in ops and "Tanh" in ops  # box decode, coefficients
            assert {producers[o] for o in ("scores", "boxes", "coefs")} <= tail
            det = np_postprocess(got, input_hw=(64, 64), image_hw=(64, 64), top_k=50, max_dets=40)[0]
            boxes, scores, masks = det.boxes, det.scores, det.masks
        else:
            n = int((got["det_scores"][0] > 0).sum())
            boxes, scores, masks = got["det_boxes"][0, :n], got["det_scores"][0, :n], got["det_masks"][0, :n]
        assert len(scores) == len(ref) > 0
        np.testing.assert_allclose(scores, ref.scores, atol=1e-5)
        np.testing.assert_allclose(boxes, ref.boxes, atol=1e-3)
        assert (masks != ref.masks).mean() < 1e-3
