"""YOLACT-style instance segmentation (Bolya et al., 2019) with anchor-free points, and its torch postprocess.

Network: backbone (:mod:`edgeseg.models.backbones`) -> FPN P3-P5 -> a head shared across levels giving,
per location ("point"), class logits, a box and ``k`` mask coefficients; a protonet on P3 gives ``k``
prototypes at stride ``proto_stride`` (4 or 8). Outputs are four separate tensors
(``scores, boxes, coefs, protos``, see :data:`OUTPUT_NAMES`): never concatenated, since mixing box
coordinates and scores in one tensor ruins a shared INT8 scale. Boxes are decoded in the graph (input
pixels), so the postprocess needs no point grid and any input size that is a multiple of 32 works.

Postprocess (same semantics as the numpy one in :mod:`edgeseg.tasks.instance_postprocess`): class-wise
sigmoid, per class the ``top_k`` highest scores, Fast NMS (YOLACT's matrix form), the ``max_dets`` best
overall, mask logits ``protos x coefs^T`` upsampled bilinearly to the image, cropped to the box and
thresholded. :class:`YolactWithPostprocess` is the same with static shapes, for exporting inside ONNX.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.catalog import INSTANCE_DEFAULTS as _T
from edgeseg.models.backbones import ConvBNAct, FusedMobileNet, ResNet
from edgeseg.models.base import SegModel
from edgeseg.models.blocks import init_weights
from edgeseg.models.box_ops import box_iou, fast_nms  # noqa: F401  (shared with Mask R-CNN; box_iou re-exported)
from edgeseg.models.registry import register_model
from edgeseg.tasks.instance_postprocess import GRAPH_OUTPUTS, OUTPUT_NAMES, Detections, logit, target_size

STRIDES = (8, 16, 32)
PRIOR_PROB = 0.01  # initial foreground probability of the class logits (focal-loss practice)


class FPN(nn.Module):
    """Top-down feature pyramid: 1x1 laterals, nearest 2x upsampling + add, 3x3 smoothing."""

    def __init__(self, in_channels: Sequence[int], width: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(ConvBNAct(c, width, 1, act=False) for c in in_channels)
        self.smooth = nn.ModuleList(ConvBNAct(width, width, 3) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        x = self.lateral[-1](feats[-1])
        outs = [x]
        for i in range(len(feats) - 2, -1, -1):
            x = self.lateral[i](feats[i]) + F.interpolate(x, scale_factor=2.0, mode="nearest")
            outs.insert(0, x)
        return [s(o) for s, o in zip(self.smooth, outs)]


class ProtoNet(nn.Module):
    """``k`` prototypes from P3: 3x3 convs, a 2x upsampling when ``stride == 4``, 1x1 to ``k``, ReLU."""

    def __init__(self, in_channels: int, width: int, num_protos: int, stride: int, convs: int = 1) -> None:
        super().__init__()
        if stride not in (4, 8):
            raise ValueError(f"proto_stride must be 4 or 8, got {stride}")
        self.pre = nn.Sequential(*(ConvBNAct(in_channels if i == 0 else width, width, 3) for i in range(convs)))
        self.post = ConvBNAct(width, width, 3) if stride == 4 else nn.Identity()
        self.upsample = stride == 4
        self.out = nn.Conv2d(width, num_protos, 1)

    def forward(self, p3: torch.Tensor) -> torch.Tensor:
        x = self.pre(p3)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.relu(self.out(self.post(x)))


class PointHead(nn.Module):
    """Head shared across FPN levels: a conv tower (shared weights, per-level BatchNorm), then 3x3 predictors.

    Per-level BatchNorm: statistics of P3 and P5 differ a lot, and unshared BN folds into each level's
    conv at export time, so sharing costs nothing at inference.
    """

    def __init__(self, width: int, num_classes: int, num_protos: int, convs: int, levels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, bias=False) for _ in range(convs))
        self.norms = nn.ModuleList(nn.ModuleList(nn.BatchNorm2d(width) for _ in range(convs)) for _ in range(levels))
        self.cls = nn.Conv2d(width, num_classes, 3, padding=1)
        self.box = nn.Conv2d(width, 4, 3, padding=1)
        self.coef = nn.Conv2d(width, num_protos, 3, padding=1)
        self.box_scale = nn.Parameter(torch.ones(levels))

    def forward(self, x: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        for conv, norm in zip(self.convs, self.norms[level]):
            x = F.relu(norm(conv(x)))
        return self.cls(x), self.box(x) * self.box_scale[level], torch.tanh(self.coef(x))


def _flatten(t: torch.Tensor) -> torch.Tensor:
    """N x C x H x W -> N x (H*W) x C."""
    return t.flatten(2).transpose(1, 2)


def decode_boxes(raw: torch.Tensor, stride: int) -> torch.Tensor:
    """Raw distances (N x 4 x H x W) -> x1, y1, x2, y2 in input pixels around the points ((x+.5)s, (y+.5)s)."""
    h, w = raw.shape[-2:]
    ys = (torch.arange(h, dtype=raw.dtype, device=raw.device) + 0.5) * stride
    xs = (torch.arange(w, dtype=raw.dtype, device=raw.device) + 0.5) * stride
    dist = F.softplus(raw) * stride
    px = xs.view(1, w)
    py = ys.view(h, 1)
    return torch.stack([px - dist[:, 0], py - dist[:, 1], px + dist[:, 2], py + dist[:, 3]], dim=1)


class Yolact(SegModel):
    """YOLACT-style network with anchor-free points on P3-P5 (strides 8, 16, 32).

    Args:
        num_classes: Object classes (no background class: scores are class-wise sigmoid logits).
        in_channels: Input image channels.
        backbone: ``resnet`` or ``fused`` (Fused-MBConv mobile net).
        backbone_args: Keyword arguments of the backbone class.
        fpn_width: Channels of the FPN levels and of the head.
        head_convs: Shared tower depth of the head.
        num_protos: ``k`` prototypes / coefficients.
        proto_stride: 4 or 8.
        proto_width: Channels inside the protonet.
        proto_convs: 3x3 convs of the protonet before the upsampling.
        semantic_head: Train an auxiliary semantic-segmentation 1x1 conv on P3 (training only; its
            output is appended to the training-mode outputs, never exported).
    """

    stride = 32
    output_names = OUTPUT_NAMES

    def __init__(self, num_classes: int, in_channels: int, *, backbone: Literal["resnet", "fused"] = "fused",
                 backbone_args: dict[str, Any] | None = None, fpn_width: int = 64, head_convs: int = 2,
                 num_protos: int = 32, proto_stride: int = 4, proto_width: int = 64, proto_convs: int = 1,
                 semantic_head: bool = False) -> None:
        super().__init__(num_classes, in_channels)
        args = dict(backbone_args or {})
        if backbone == "resnet":
            self.backbone: nn.Module = ResNet(in_channels, **args)
        elif backbone == "fused":
            self.backbone = FusedMobileNet(in_channels, **args)
        else:
            raise ValueError(f"backbone must be 'resnet' or 'fused', got {backbone!r}")
        self.proto_stride = proto_stride
        self.num_protos = num_protos
        self.fpn = FPN(self.backbone.out_channels, fpn_width)
        self.protonet = ProtoNet(fpn_width, proto_width, num_protos, proto_stride, proto_convs)
        self.head = PointHead(fpn_width, num_classes, num_protos, head_convs, len(STRIDES))
        self.semantic = nn.Conv2d(fpn_width, num_classes, 1) if semantic_head else None
        self._init_weights()

    def _init_weights(self) -> None:
        init_weights(self)
        for pred in (self.head.cls, self.head.box, self.head.coef):
            nn.init.normal_(pred.weight, std=0.01)
        nn.init.constant_(self.head.cls.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))
        if self.semantic is not None:
            nn.init.constant_(self.semantic.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))

    def unwrapped_parameters(self) -> list[tuple[nn.Parameter, int | None]]:
        """The head's box scale: one number per FPN level, no channel axis."""
        return [(self.head.box_scale, None)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(scores N x A x C, boxes N x A x 4, coefs N x A x k, protos N x k x H/s x W/s)``.

        In training mode with ``semantic_head`` a fifth output (N x C x H/8 x W/8 logits) follows.
        """
        self.check_input(x)
        feats = self.fpn(self.backbone(x))
        scores, boxes, coefs = [], [], []
        for level, (p, s) in enumerate(zip(feats, STRIDES)):
            cls, box, coef = self.head(p, level)
            scores.append(_flatten(cls))
            boxes.append(_flatten(decode_boxes(box, s)))
            coefs.append(_flatten(coef))
        outs = (torch.cat(scores, 1), torch.cat(boxes, 1), torch.cat(coefs, 1), self.protonet(feats[0]))
        if self.training and self.semantic is not None:
            return (*outs, self.semantic(feats[0]))
        return outs

    def with_postprocess(self, **thresholds: Any) -> YolactWithPostprocess:
        """This model followed by its Fast-NMS postprocess with static shapes (``export.postprocess: graph``)."""
        return YolactWithPostprocess(self, **thresholds).eval()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, **kwargs: Any) -> list[Detections]:  # type: ignore[override]
        """Detections per image at the input size (``kwargs``: :func:`postprocess` thresholds)."""
        outs = self(x)
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        return postprocess(dict(zip(OUTPUT_NAMES, outs)), input_hw=hw, image_hw=hw, **kwargs)


def points(input_hw: tuple[int, int], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(A x 2 point centres x, y in input pixels, A strides) in the order of the model's outputs."""
    centres, strides = [], []
    for s in STRIDES:
        h, w = input_hw[0] // s, input_hw[1] // s
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        centres.append(torch.stack([xs.flatten(), ys.flatten()], 1).float().add(0.5).mul(s))
        strides.append(torch.full((h * w,), float(s), device=device))
    return torch.cat(centres), torch.cat(strides)


# ---------------------------------------------------------------------------------------------------------
# Postprocess


def _select(scores: torch.Tensor, boxes: torch.Tensor, *, score_thresh: float, iou_thresh: float, top_k: int,
            max_dets: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched, static-shape detection selection.

    Args:
        scores: N x A x C logits; boxes: N x A x 4.

    Returns:
        (scores N x D, labels N x D, point indices N x D, boxes N x D x 4) with D = min(max_dets, C * k);
        entries that are not detections have score 0.
    """
    probs = scores.sigmoid().transpose(1, 2)  # N x C x A
    k = min(top_k, probs.shape[-1])
    cand, idx = probs.topk(k, dim=-1, sorted=True)  # N x C x k
    n, c = cand.shape[:2]
    cand_boxes = torch.gather(boxes[:, None].expand(n, c, -1, 4), 2, idx[..., None].expand(n, c, k, 4))
    keep = fast_nms(cand_boxes, cand, iou_thresh) & (cand > score_thresh)
    flat = torch.where(keep, cand, torch.zeros_like(cand)).flatten(1)  # N x (C*k)
    d = min(max_dets, flat.shape[1])
    top, pos = flat.topk(d, dim=1, sorted=True)
    labels = torch.div(pos, k, rounding_mode="floor")
    point = torch.gather(idx.flatten(1), 1, pos)
    det_boxes = torch.gather(boxes, 1, point[..., None].expand(n, d, 4))
    return top, labels, point, det_boxes


def assemble_masks(protos: torch.Tensor, coefs: torch.Tensor) -> torch.Tensor:
    """Mask logits ``protos x coefs^T``: protos k x H x W, coefs D x k -> D x H x W (sigmoid gives masks)."""
    return torch.einsum("khw,dk->dhw", protos, coefs)


def crop_masks(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Keep mask pixels whose centre (x + .5, y + .5) lies inside the box: masks D x H x W, boxes D x 4."""
    h, w = masks.shape[-2:]
    ys = torch.arange(h, device=masks.device, dtype=boxes.dtype) + 0.5
    xs = torch.arange(w, device=masks.device, dtype=boxes.dtype) + 0.5
    inside_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] <= boxes[:, 3:4])
    inside_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] <= boxes[:, 2:3])
    return masks & (inside_y[:, :, None] & inside_x[:, None, :])


def postprocess(outputs: dict[str, torch.Tensor], *, input_hw: tuple[int, int], image_hw: tuple[int, int],
                score_thresh: float = _T.score_thresh, iou_thresh: float = _T.iou_thresh, top_k: int = _T.top_k,
                max_dets: int = _T.max_dets, mask_thresh: float = _T.mask_thresh, placement: Literal["resize", "pad"] = "resize") -> list[Detections]:
    """Detections per image from the raw outputs (torch twin of the numpy ``postprocess``).

    Args:
        outputs: ``scores, boxes, coefs, protos`` (batched).
        input_hw: Size the network saw.
        image_hw: Original image size the detections are returned at.
        score_thresh, iou_thresh, top_k, max_dets, mask_thresh: see module docstring.
        placement: ``resize``: the image was resized to ``input_hw`` (per-axis scale); ``pad``: it sits at
            the top-left of ``input_hw`` unscaled.
    """
    scores, boxes, coefs, protos = (outputs[n] for n in OUTPUT_NAMES)
    top, labels, point, det_boxes = _select(scores.float(), boxes.float(), score_thresh=score_thresh,
                                            iou_thresh=iou_thresh, top_k=top_k, max_dets=max_dets)
    (th, tw), (sy, sx) = target_size(input_hw, image_hw, placement)
    scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
    results = []
    for i in range(scores.shape[0]):
        valid = top[i] > 0
        det_scores, det_labels = top[i][valid], labels[i][valid]
        b = det_boxes[i][valid].cpu() * scale
        b[:, 0::2] = b[:, 0::2].clamp(0, image_hw[1])
        b[:, 1::2] = b[:, 1::2].clamp(0, image_hw[0])
        c = torch.gather(coefs[i].float(), 0, point[i][valid][:, None].expand(-1, coefs.shape[-1]))
        if len(c):
            logits = assemble_masks(protos[i].float(), c)
            up = F.interpolate(logits[None], size=(th, tw), mode="bilinear", align_corners=False)[0]
            up = up[:, :image_hw[0], :image_hw[1]].cpu()
            masks = crop_masks(up > logit(mask_thresh), b)
        else:
            masks = torch.zeros((0, *image_hw), dtype=torch.bool)
        results.append(Detections(boxes=b.numpy().astype(np.float32), scores=det_scores.cpu().numpy().astype(np.float32),
                                  labels=det_labels.cpu().numpy().astype(np.int64), masks=masks.numpy()))
    return results


class YolactWithPostprocess(nn.Module):
    """A YOLACT model followed by its postprocess with static shapes, for exporting inside ONNX.

    Outputs (batched, ``D = min(max_dets, C * top_k)`` rows per image, rows that are not detections
    have score 0 and an empty mask): ``det_boxes`` N x D x 4 (input pixels), ``det_scores`` N x D,
    ``det_labels`` N x D (int64), ``det_masks`` N x D x H x W (bool, input size, cropped to the box).
    """

    output_names = GRAPH_OUTPUTS

    def __init__(self, model: Yolact, top_k: int = _T.top_k, *, max_dets: int = _T.max_dets,
                 score_thresh: float = _T.score_thresh, iou_thresh: float = _T.iou_thresh,
                 mask_thresh: float = _T.mask_thresh) -> None:
        super().__init__()
        self.model = model
        self.top_k, self.max_dets = top_k, max_dets
        self.score_thresh, self.iou_thresh, self.mask_thresh = score_thresh, iou_thresh, mask_thresh
        self.stride = model.stride
        self.in_channels = model.in_channels
        self.num_classes = model.num_classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        scores, boxes, coefs, protos = self.model(x)[:4]
        top, labels, point, det_boxes = _select(scores, boxes, score_thresh=self.score_thresh,
                                                iou_thresh=self.iou_thresh, top_k=self.top_k, max_dets=self.max_dets)
        c = torch.gather(coefs, 1, point[..., None].expand(-1, -1, coefs.shape[-1]))  # N x D x k
        logits = torch.einsum("nkhw,ndk->ndhw", protos, c)
        up = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        h, w = x.shape[-2:]
        ys = torch.arange(h, dtype=x.dtype, device=x.device) + 0.5
        xs = torch.arange(w, dtype=x.dtype, device=x.device) + 0.5
        size = torch.stack([xs[-1], ys[-1], xs[-1], ys[-1]]) + 0.5  # w, h, w, h as tensors (dynamic shapes)
        det_boxes = torch.minimum(det_boxes.clamp(min=0), size)
        iy = (ys.view(1, 1, -1) >= det_boxes[..., 1:2]) & (ys.view(1, 1, -1) <= det_boxes[..., 3:4])
        ix = (xs.view(1, 1, -1) >= det_boxes[..., 0:1]) & (xs.view(1, 1, -1) <= det_boxes[..., 2:3])
        valid = (top > 0)[..., None, None]
        masks = (up > logit(self.mask_thresh)) & iy[..., :, None] & ix[..., None, :] & valid
        return det_boxes, top, labels, masks


def float_tail_nodes(onnx_model: Any) -> list[str]:
    """Names of the ONNX nodes between the last convolutions and the graph outputs (decode, flatten, concat).

    Keep them in float when quantizing: an 8-bit box output spanning a 704-px image has a ~3 px step,
    which alone moves a small nucleus' box edges (and its cropped mask) by a pixel or more.
    """
    producer = {o: n for n in onnx_model.graph.node for o in n.output}
    names: list[str] = []
    stack = [o.name for o in onnx_model.graph.output]
    seen: set[str] = set()
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen or node.op_type == "Conv":
            continue
        seen.add(node.name)
        names.append(node.name)
        stack.extend(node.input)
    return names


# ---------------------------------------------------------------------------------------------------------
# Registered variants

LITE_BACKBONE = {"stem": 16, "widths": (24, 48, 96, 160), "depths": (1, 2, 3, 2), "expand": (2, 2, 2, 2)}


@register_model("yolact", family="yolact", task="instance", stride=32, input_size=(512, 512),
                output_names=OUTPUT_NAMES, backbone="resnet",
                backbone_args={"layers": (3, 4, 6, 3), "block": "bottleneck"}, fpn_width=256, head_convs=2,
                num_protos=32, proto_stride=4, proto_width=256, proto_convs=3,
                description="YOLACT-style, ResNet-50 backbone, FPN 256, 32 prototypes at stride 4 (GPU)")
def yolact(*, num_classes: int, in_channels: int, **kwargs: Any) -> Yolact:
    """Full YOLACT-style model: ResNet-50 backbone, FPN width 256, anchor-free points on P3-P5."""
    return Yolact(num_classes, in_channels, **kwargs)


@register_model("yolact-lite", family="yolact", task="instance", stride=32, input_size=(320, 320),
                output_names=OUTPUT_NAMES, backbone="fused", backbone_args=LITE_BACKBONE, fpn_width=64,
                head_convs=2, num_protos=32, proto_stride=4, proto_width=64, proto_convs=1,
                description="YOLACT-style edge model, Fused-MBConv backbone (no depthwise), FPN 64, 32 protos")
def yolact_lite(*, num_classes: int, in_channels: int, **kwargs: Any) -> Yolact:
    """Edge YOLACT: Fused-MBConv backbone (dense 3x3 convs that quantize well on CPUs), FPN width 64."""
    return Yolact(num_classes, in_channels, **kwargs)


@register_model("yolact_test", family="yolact", task="instance", stride=32, input_size=(64, 64),
                output_names=OUTPUT_NAMES, backbone="fused",
                backbone_args={"stem": 8, "widths": (8, 16, 16, 24), "depths": (1, 1, 1, 1),
                               "expand": (1, 1, 1, 1)},
                fpn_width=16, head_convs=1, num_protos=8, proto_stride=4, proto_width=16, proto_convs=1,
                description="Tiny YOLACT-style model for tests")
def yolact_test(*, num_classes: int, in_channels: int, **kwargs: Any) -> Yolact:
    """Tiny YOLACT-style model for tests."""
    return Yolact(num_classes, in_channels, **kwargs)
