"""RoIAlign (He et al., 2017) in torch that exports to ONNX's own ``RoiAlign`` op (opset 16).

In PyTorch it is one ``grid_sample`` over every sampling point of every box (bilinear, ``border``
padding, then zeroed where a point lies more than one pixel outside the map, averaged per bin): the
same arithmetic as Detectron2's / ONNX Runtime's kernel, with gradients. During ONNX export it becomes
one ``RoiAlign`` node (``mode=avg``, ``coordinate_transformation_mode=half_pixel`` for
``aligned=True``), written by ``torch.onnx.ops.symbolic`` under the dynamo exporter and by an
autograd ``symbolic`` under the TorchScript fallback, so ONNX Runtime, TensorRT and OpenVINO run it
natively. ``sampling_ratio`` must be fixed (> 0): the adaptive count depends on the box sizes, which
an exported graph cannot make static.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

ONNX_OPSET = 16  # RoiAlign with coordinate_transformation_mode


def _sample_axis(lo: torch.Tensor, hi: torch.Tensor, bins: int, ratio: int, size: int, scale: float,
                 aligned: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling coordinates along one axis (``... x bins*ratio``, clamped into the map) and their validity."""
    offset = 0.5 if aligned else 0.0
    start = lo * scale - offset
    length = (hi - lo) * scale
    if not aligned:  # the legacy op stretches boxes smaller than one pixel
        length = length.clamp(min=1.0)
    steps = (torch.arange(bins * ratio, dtype=lo.dtype, device=lo.device) + 0.5) / (bins * ratio)
    pos = start[..., None] + steps * length[..., None]
    valid = (pos >= -1.0) & (pos <= float(size))
    return pos.clamp(0.0, float(size - 1)), valid


def roi_align_torch(features: torch.Tensor, boxes: torch.Tensor, output_size: tuple[int, int],
                    spatial_scale: float, sampling_ratio: int = 2, aligned: bool = True) -> torch.Tensor:
    """RoIAlign of ``boxes`` N x P x 4 (xyxy, input pixels) on ``features`` N x C x H x W -> N*P x C x oh x ow."""
    n, c, h, w = features.shape
    p = boxes.shape[1]
    (oh, ow), r = output_size, sampling_ratio
    ys, vy = _sample_axis(boxes[..., 1], boxes[..., 3], oh, r, h, spatial_scale, aligned)  # N x P x Sy
    xs, vx = _sample_axis(boxes[..., 0], boxes[..., 2], ow, r, w, spatial_scale, aligned)  # N x P x Sx
    sy, sx = oh * r, ow * r
    # align_corners=True: -1 and 1 are the centres of the first and last pixels
    gy = ys / max(h - 1, 1) * 2 - 1
    gx = xs / max(w - 1, 1) * 2 - 1
    grid = torch.stack([gx[:, :, None, :].expand(n, p, sy, sx), gy[:, :, :, None].expand(n, p, sy, sx)], dim=-1)
    out = F.grid_sample(features, grid.reshape(n, p * sy, sx, 2), mode="bilinear", padding_mode="border",
                        align_corners=True)  # N x C x P*Sy x Sx
    valid = (vy[:, :, :, None] & vx[:, :, None, :]).to(out.dtype)  # N x P x Sy x Sx
    out = out.reshape(n, c, p, sy, sx) * valid[:, None]
    out = out.reshape(n, c, p, oh, r, ow, r).mean(dim=(4, 6))
    return out.permute(0, 2, 1, 3, 4).reshape(n * p, c, oh, ow)


def _flat_rois(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K x 4 boxes, K batch indices) of N x P x 4 boxes, in image-major order."""
    n, p = boxes.shape[:2]
    index = torch.arange(n, device=boxes.device).repeat_interleave(p)
    return boxes.reshape(n * p, 4), index


def _attrs(output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int, aligned: bool) -> dict:
    return {"coordinate_transformation_mode": "half_pixel" if aligned else "output_half_pixel", "mode": "avg",
            "output_height": int(output_size[0]), "output_width": int(output_size[1]),
            "sampling_ratio": int(sampling_ratio), "spatial_scale": float(spatial_scale)}


class _TorchScriptRoiAlign(torch.autograd.Function):
    """The TorchScript exporter's view: ``forward`` computes, ``symbolic`` writes the ONNX node."""

    @staticmethod
    def forward(ctx, features, rois, index, oh, ow, scale, ratio, aligned):  # type: ignore[override]
        boxes = rois.reshape(features.shape[0], -1, 4)
        return roi_align_torch(features, boxes, (oh, ow), scale, ratio, aligned)

    @staticmethod
    def symbolic(g, features, rois, index, oh, ow, scale, ratio, aligned):  # type: ignore[no-untyped-def]
        a = _attrs((oh, ow), scale, ratio, aligned)
        return g.op("RoiAlign", features, rois, index, coordinate_transformation_mode_s=a["coordinate_transformation_mode"],
                    mode_s="avg", output_height_i=oh, output_width_i=ow, sampling_ratio_i=ratio, spatial_scale_f=scale)


def roi_align(features: torch.Tensor, boxes: torch.Tensor, output_size: Sequence[int], spatial_scale: float,
              sampling_ratio: int = 2, aligned: bool = True) -> torch.Tensor:
    """RoIAlign of a fixed number of boxes per image.

    Args:
        features: N x C x H x W feature map.
        boxes: N x P x 4 xyxy boxes in input pixels (``spatial_scale`` takes them to the map).
        output_size: (oh, ow) bins.
        spatial_scale: Map pixels per input pixel (1 / stride).
        sampling_ratio: Sampling points per bin along each axis (fixed, > 0).
        aligned: Shift by half a pixel (Detectron2's ``aligned=True``; ONNX ``half_pixel``).

    Returns:
        N*P x C x oh x ow, image-major (box j of image i at ``i * P + j``).
    """
    if sampling_ratio < 1:
        raise ValueError(f"sampling_ratio must be >= 1 (a fixed count exports), got {sampling_ratio}")
    size = (int(output_size[0]), int(output_size[1]))
    if not torch.onnx.is_in_onnx_export():
        return roi_align_torch(features, boxes, size, spatial_scale, sampling_ratio, aligned)
    rois, index = _flat_rois(boxes)
    if torch.jit.is_tracing():  # the TorchScript exporter
        return _TorchScriptRoiAlign.apply(features, rois, index, size[0], size[1], float(spatial_scale),
                                          int(sampling_ratio), bool(aligned))
    return torch.onnx.ops.symbolic("RoiAlign", (features, rois, index), _attrs(size, spatial_scale, sampling_ratio, aligned),
                                   dtype=features.dtype, shape=(rois.shape[0], features.shape[1], *size),
                                   version=ONNX_OPSET)
