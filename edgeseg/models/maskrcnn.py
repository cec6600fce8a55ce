"""Mask R-CNN (He et al., 2017): the two-stage instance family beside YOLACT, written without torchvision.

Network: backbone (C2-C5) -> FPN P2-P5 (+ P6 by stride-2 subsampling, RPN only) -> RPN (anchors of
one size per level, three aspect ratios; proposals by per-level Fast NMS) -> RoIAlign (the level by
box size, FPN eq. 1) -> box head (FC layers, class-specific deltas) -> per-class Fast NMS -> RoIAlign
on the detections -> mask head (3x3 convs, 2x transposed conv, one mask per class).

Inference output has a fixed number of detection slots (``max_dets``; empty slots score 0), so the
whole graph exports to one ONNX file: ``det_boxes`` N x D x 4 (input pixels), ``det_scores`` N x D,
``det_labels`` N x D (int64), ``det_roi_masks`` N x D x M x M (mask probabilities inside each box),
pasted into the image by the instance task's numpy decode. In training mode ``forward(x, targets)``
samples anchors and RoIs from the targets and returns what :mod:`edgeseg.train.losses_maskrcnn` needs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.catalog import INSTANCE_DEFAULTS as _T
from edgeseg.models.backbones import FusedMobileNet, ResNet
from edgeseg.models.base import SegModel
from edgeseg.models.blocks import init_weights
from edgeseg.models.maskrcnn_heads import (
    BoxHead,
    MaskHead,
    RPNHead,
    detect,
    level_anchors,
    multilevel_roi_align,
    proposals,
    select_class_masks,
)
from edgeseg.models.maskrcnn_targets import mask_targets, rpn_targets, sample_rois
from edgeseg.models.registry import register_model
from edgeseg.models.yolact import FPN, LITE_BACKBONE

STRIDES = (4, 8, 16, 32, 64)  # P2-P6
OUTPUT_NAMES = ("det_boxes", "det_scores", "det_labels", "det_roi_masks")
RATIOS = (0.5, 1.0, 2.0)


class MaskRCNN(SegModel):
    """Mask R-CNN with an FPN (P2-P6), static-shape proposals and detections.

    Args:
        num_classes: Object classes (the box head adds a background logit).
        in_channels: Input image channels.
        backbone, backbone_args: ``resnet`` or ``fused`` and its keyword arguments.
        fpn_width: Channels of the FPN levels (and of the RPN and the RoI features).
        anchor_sizes: Anchor side (input pixels) on P2..P6, one per level, ratios 0.5, 1, 2.
        rpn_pre_nms, rpn_post_nms, rpn_post_nms_train, rpn_nms: Proposal counts and NMS IoU.
        rpn_batch: Anchors sampled per image for the RPN loss.
        rois_per_image: RoIs sampled per image for the box and mask losses.
        box_pool, fc_dim, num_fc: Box head RoI size and its fully connected layers.
        mask_pool, mask_width, mask_convs: Mask head RoI size (masks are twice that), width, depth.
        canonical_size: Box side that pools from P4.
        sampling_ratio: RoIAlign samples per bin and axis.
        score_thresh, iou_thresh, top_k, max_dets: Detection thresholds (``top_k``: candidates before NMS).
    """

    stride = 32
    output_names = OUTPUT_NAMES
    takes_targets: ClassVar[bool] = True  # the training loop passes the targets to forward
    loss_name: ClassVar[str] = "maskrcnn"  # edgeseg.train.losses.LOSSES entry
    # Torch-Pruning's dependency graph does not follow channels through RoIAlign into the RoI heads.
    prune_refusal: ClassVar[str] = ("its RoI heads read the FPN through RoIAlign, which Torch-Pruning cannot trace, "
                                    "so channel pruning would break them; train a narrower variant instead")
    # Anchors are laid out per level from the feature sizes, and proposal/RoI counts are fixed, at export.
    dynamic_export_refusal: ClassVar[str] = ("its anchors are laid out for the feature-map sizes of one input size "
                                             "when the graph is built")

    def __init__(self, num_classes: int, in_channels: int, *, backbone: Literal["resnet", "fused"] = "fused",
                 backbone_args: dict[str, Any] | None = None, fpn_width: int = 64,
                 anchor_sizes: Sequence[float] = (16, 32, 64, 128, 256), rpn_pre_nms: int = 200,
                 rpn_post_nms: int = 100, rpn_post_nms_train: int = 300, rpn_nms: float = 0.7, rpn_batch: int = 256,
                 rois_per_image: int = 128, box_pool: int = 7, fc_dim: int = 256, num_fc: int = 2,
                 mask_pool: int = 7, mask_width: int = 64, mask_convs: int = 2, canonical_size: float = 224.0,
                 sampling_ratio: int = 2, score_thresh: float = _T.score_thresh, iou_thresh: float = _T.iou_thresh,
                 top_k: int = _T.top_k, max_dets: int = _T.max_dets) -> None:
        super().__init__(num_classes, in_channels)
        args = dict(backbone_args or {})
        if backbone not in ("resnet", "fused"):
            raise ValueError(f"backbone must be 'resnet' or 'fused', got {backbone!r}")
        self.backbone: nn.Module = ResNet(in_channels, **args) if backbone == "resnet" else FusedMobileNet(in_channels, **args)
        if len(anchor_sizes) != len(STRIDES):
            raise ValueError(f"anchor_sizes needs {len(STRIDES)} values (P2-P6), got {list(anchor_sizes)}")
        if rois_per_image > rpn_post_nms_train:
            raise ValueError(f"rois_per_image ({rois_per_image}) must not exceed rpn_post_nms_train ({rpn_post_nms_train})")
        c2 = [m for m in self.backbone.stages[0].modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
        self.fpn = FPN([c2, *self.backbone.out_channels], fpn_width)
        self.rpn = RPNHead(fpn_width, len(RATIOS))
        self.box_head = BoxHead(fpn_width, box_pool, fc_dim, num_fc, num_classes)
        self.mask_head = MaskHead(fpn_width, mask_width, mask_convs, num_classes)
        self.anchor_sizes = tuple(float(s) for s in anchor_sizes)
        self.rpn_pre_nms, self.rpn_post_nms, self.rpn_post_nms_train = rpn_pre_nms, rpn_post_nms, rpn_post_nms_train
        self.rpn_nms, self.rpn_batch, self.rois_per_image = rpn_nms, rpn_batch, rois_per_image
        self.box_pool, self.mask_pool, self.canonical_size = box_pool, mask_pool, canonical_size
        self.sampling_ratio = sampling_ratio
        self.score_thresh, self.iou_thresh, self.top_k, self.max_dets = score_thresh, iou_thresh, top_k, max_dets
        init_weights(self.backbone)
        init_weights(self.fpn)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """FPN levels P2-P6."""
        feats, y = [], self.backbone.stem(x)
        for stage in self.backbone.stages:
            y = stage(y)
            feats.append(y)
        pyramid = self.fpn(feats)
        return [*pyramid, F.max_pool2d(pyramid[-1], 1, 2)]

    def anchors(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level ``H*W*3 x 4`` anchors in input pixels."""
        return [level_anchors((int(f.shape[-2]), int(f.shape[-1])), s, a, RATIOS, f.device)
                for f, s, a in zip(feats, STRIDES, self.anchor_sizes)]

    def _pool(self, feats: list[torch.Tensor], boxes: torch.Tensor, size: int) -> torch.Tensor:
        return multilevel_roi_align(feats[:4], STRIDES[:4], boxes, size, self.sampling_ratio, self.canonical_size)

    def forward(self, x: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        """Inference: ``(det_boxes, det_scores, det_labels, det_roi_masks)``; training (``targets`` given,
        train mode): a dict of the loss inputs (see :class:`edgeseg.train.losses_maskrcnn.MaskRCNNLoss`)."""
        self.check_input(x)
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        feats = self.features(x)
        logits, deltas = self.rpn(feats)
        anchors = self.anchors(feats)
        if self.training:
            if targets is None:
                raise ValueError("MaskRCNN: training mode needs forward(images, targets)")
            return self._train_forward(feats, logits, deltas, anchors, targets, hw)
        props = proposals(logits, deltas, anchors, hw, pre_nms=self.rpn_pre_nms, post_nms=self.rpn_post_nms,
                          nms_thresh=self.rpn_nms)
        n, p = props.shape[:2]
        cls, box = self.box_head(self._pool(feats, props, self.box_pool))
        boxes, scores, labels = detect(cls.reshape(n, p, -1), box.reshape(n, p, self.num_classes, 4), props, hw,
                                       score_thresh=self.score_thresh, iou_thresh=self.iou_thresh,
                                       top_k=self.top_k, max_dets=self.max_dets)
        d = boxes.shape[1]
        masks = select_class_masks(self.mask_head(self._pool(feats, boxes, self.mask_pool)), labels.reshape(-1))
        return boxes, scores, labels, masks.sigmoid().reshape(n, d, *masks.shape[-2:])

    def _train_forward(self, feats: list[torch.Tensor], logits: list[torch.Tensor], deltas: list[torch.Tensor],
                       anchors: list[torch.Tensor], targets: list[dict[str, torch.Tensor]],
                       hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        rpn_labels, rpn_reg = rpn_targets(torch.cat(anchors), targets, batch=self.rpn_batch)
        with torch.no_grad():
            props = proposals([t.detach() for t in logits], [t.detach() for t in deltas], anchors, hw,
                              pre_nms=self.rpn_pre_nms, post_nms=self.rpn_post_nms_train, nms_thresh=self.rpn_nms)
        rois, roi_labels, roi_reg, matched = sample_rois(props, targets, self.num_classes, rois=self.rois_per_image)
        cls, box = self.box_head(self._pool(feats, rois, self.box_pool))
        flat_labels = roi_labels.reshape(-1)
        fg = flat_labels < self.num_classes
        # masks of the foreground RoIs only, image by image (their count differs)
        masks_in = [self._pool([f[i:i + 1] for f in feats], b[lab < self.num_classes][None], self.mask_pool)
                    for i, (b, lab) in enumerate(zip(rois, roi_labels))]
        mask_logits = self.mask_head(torch.cat(masks_in))
        return {"rpn_logits": torch.cat(logits, 1), "rpn_deltas": torch.cat(deltas, 1), "rpn_labels": rpn_labels,
                "rpn_targets": rpn_reg, "cls_logits": cls, "box_deltas": box, "roi_labels": flat_labels,
                "roi_targets": roi_reg.reshape(-1, 4),
                "mask_logits": select_class_masks(mask_logits, flat_labels[fg]),
                "mask_targets": mask_targets(rois, matched, targets, 2 * self.mask_pool)}

    def with_postprocess(self, **thresholds: Any) -> MaskRCNN:
        """This model with other detection thresholds (``score_thresh``, ``iou_thresh``, ``top_k``,
        ``max_dets``; the weights are shared): its postprocess is always in the graph."""
        out = copy.copy(self)
        for key in ("score_thresh", "iou_thresh", "top_k", "max_dets"):
            if thresholds.get(key) is not None:
                setattr(out, key, thresholds[key])
        return out.eval()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, mask_thresh: float = _T.mask_thresh) -> list[Any]:  # type: ignore[override]
        """Detections per image at the input size (RoI masks pasted into the image)."""
        from edgeseg.tasks.instance_postprocess import decode_roi_outputs

        outs = {k: v.cpu().numpy() for k, v in zip(OUTPUT_NAMES, self(x))}
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        return decode_roi_outputs(outs, input_hw=hw, image_hw=hw, placement="pad", score_thresh=0.0,
                                  mask_thresh=mask_thresh, max_dets=self.max_dets)


# ---------------------------------------------------------------------------------------------------------
# Registered variants


@register_model("maskrcnn", family="maskrcnn", task="instance", stride=32, input_size=(512, 512),
                output_names=OUTPUT_NAMES, backbone="resnet",
                backbone_args={"layers": (3, 4, 6, 3), "block": "bottleneck"}, fpn_width=256,
                anchor_sizes=(32, 64, 128, 256, 512), rpn_pre_nms=1000, rpn_post_nms=1000, rpn_post_nms_train=2000,
                rois_per_image=512, fc_dim=1024, num_fc=2, mask_pool=14, mask_width=256, mask_convs=4,
                description="Mask R-CNN, ResNet-50 + FPN P2-P6, 2-FC box head, 28x28 masks (GPU)")
def maskrcnn(*, num_classes: int, in_channels: int, **kwargs: Any) -> MaskRCNN:
    """Full Mask R-CNN: ResNet-50 + FPN 256 (P2-P6), 1000 proposals, 2x1024 FC box head, 4-conv 28x28 mask head."""
    return MaskRCNN(num_classes, in_channels, **kwargs)


@register_model("maskrcnn-lite", family="maskrcnn", task="instance", stride=32, input_size=(320, 320),
                output_names=OUTPUT_NAMES, backbone="fused", backbone_args=LITE_BACKBONE, fpn_width=48,
                anchor_sizes=(16, 32, 64, 128, 256), rpn_pre_nms=200, rpn_post_nms=100, rpn_post_nms_train=300,
                rois_per_image=128, fc_dim=256, num_fc=2, mask_pool=7, mask_width=64, mask_convs=2,
                description="Mask R-CNN edge model, yolact-lite's Fused-MBConv backbone, FPN 48, 14x14 masks")
def maskrcnn_lite(*, num_classes: int, in_channels: int, **kwargs: Any) -> MaskRCNN:
    """Edge Mask R-CNN: yolact-lite's backbone, FPN width 48, 100 proposals, 2x256 FC box head, 14x14 masks.

    FPN width by measurement (``count_macs``, one class): 48 gives 1.22 GMACs at 320x320 and 2.39 at
    512x512 beside yolact-lite's 0.97 and 2.49 (64 would give 1.56 and 3.17).
    """
    return MaskRCNN(num_classes, in_channels, **kwargs)


@register_model("maskrcnn_test", family="maskrcnn", task="instance", stride=32, input_size=(64, 64),
                output_names=OUTPUT_NAMES, backbone="fused",
                backbone_args={"stem": 8, "widths": (8, 16, 16, 24), "depths": (1, 1, 1, 1), "expand": (1, 1, 1, 1)},
                fpn_width=16, anchor_sizes=(8, 16, 32, 64, 128), rpn_pre_nms=50, rpn_post_nms=20,
                rpn_post_nms_train=48, rpn_batch=64, rois_per_image=32, fc_dim=32, num_fc=2, mask_pool=7,
                mask_width=16, mask_convs=1, top_k=50, max_dets=10,
                description="Tiny Mask R-CNN for tests")
def maskrcnn_test(*, num_classes: int, in_channels: int, **kwargs: Any) -> MaskRCNN:
    """Tiny Mask R-CNN for tests."""
    return MaskRCNN(num_classes, in_channels, **kwargs)
