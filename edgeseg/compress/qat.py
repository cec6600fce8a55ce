"""Quantization-aware training over NNCF, exported as a plain QDQ ONNX model.

Why NNCF and not torchao's PT2E QAT: NNCF's PyTorch path keeps the model an ``nn.Module`` with the same
``forward``, so edgeseg's own training loop fine-tunes it unchanged (AMP, DDP, validation, logs), and
its route to ONNX is documented and checked here: ``nncf.strip(..., NATIVE)`` turns its quantizers into
torch ``FakeQuantize`` modules, which the TorchScript exporter writes as QuantizeLinear/DequantizeLinear
(standard domain, runs in ONNX Runtime). PT2E QAT works on a captured graph (``torch.export``), which
needs a second training loop over a ``GraphModule`` and whose quantized-decomposed ops have no equally
settled ONNX path in torch 2.13 (see docs/compress.md).

The preset follows the target: ``mixed`` (symmetric int8 weights, asymmetric uint8 activations: the
fast u8*s8 path of ONNX Runtime on AVX2 CPUs) or ``performance`` with signed activations (symmetric
int8 everywhere, zero points 0: what TensorRT's explicit quantization runs).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.catalog import FILES
from edgeseg.quiet import quiet_tools

PRESETS = {"onnxruntime-cpu": "mixed", "tensorrt": "performance"}
# TensorRT runs only signed int8 Q/DQ; NNCF's symmetric activation quantizers go unsigned (uint8) after a
# ReLU, and nncf 3.4 refuses ``signedness_to_force`` with its default HW config: they are flipped to
# signed after placement (same maximum, half the resolution: what TensorRT does anyway), before training.
SIGNED_ACTIVATIONS = {"tensorrt"}


def fold_batchnorms(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a conv inside an ``nn.Sequential`` into that conv.

    Why: with fake-quantized weights the exporter cannot fold BN any more (the weight is no constant),
    so the ONNX graph becomes DQ -> Conv -> BatchNormalization -> Relu -> Q, which ONNX Runtime cannot
    fuse into its INT8 convolution and runs in float plus Q/DQ overhead (measured: slower than FP32).
    Folded first, the graph is DQ -> Conv -> Relu -> Q, the pattern it fuses. Returns the count folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                seq._modules[b] = nn.Identity()
                folded += 1
    return folded


# SegNet's ``compare`` unpooling builds a 0/1 mask by comparing a tensor with its own 2x2 window max:
# NNCF would quantize the two sides of that comparison with different quantizers (and the mask arithmetic
# too), so the comparison fails and the unpooling breaks (seen: val Dice 0.84 -> 0.77 after one epoch).
# The mask ops stay float (NNCF's op type names); the convs around them are quantized as usual.
MASK_UNPOOL_OPS = ("__eq__", "mul", "interpolate")


def ignored_ops(model: nn.Module) -> list[str]:
    """NNCF op types that stay float in ``model`` (SegNet's mask unpooling), else none."""
    return list(MASK_UNPOOL_OPS) if getattr(model, "unpool", None) == "compare" else []


def insert_fake_quantizers(model: nn.Module, calibration: list[torch.Tensor], target: str = "onnxruntime-cpu"
                           ) -> nn.Module:
    """``nncf.quantize`` on ``calibration`` inputs: a trainable model with fake quantizers, same ``forward``.

    BatchNorms are folded into their convs first (:func:`fold_batchnorms`; ``model`` is changed in
    place); :func:`ignored_ops` stay float. The model's ``config`` (registry constructor arguments) is
    carried over so the training loop and checkpoint metadata keep working.
    """
    # The C++ extension compiles on first use; a loaded 2-core machine needs more than NNCF's 60 s.
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "600")
    import nncf

    preset = nncf.QuantizationPreset(PRESETS[target])
    fold_batchnorms(model.eval())
    ignored = ignored_ops(model)
    scope = nncf.IgnoredScope(types=ignored, validate=False) if ignored else None
    with quiet_tools("nncf", stdout=False):  # NNCF logs per step; torch warns about TorchScript
        qmodel = nncf.quantize(model.eval(), nncf.Dataset(calibration), preset=preset,
                               subset_size=len(calibration), ignored_scope=scope)
    if target in SIGNED_ACTIVATIONS:
        _force_signed(qmodel)
    for attr in ("config", "num_classes", "in_channels", "stride", "output_names"):
        if hasattr(model, attr) and not hasattr(qmodel, attr):
            setattr(qmodel, attr, getattr(model, attr))
    return qmodel


def _force_signed(qmodel: nn.Module) -> int:
    """Make every symmetric quantizer signed int8 (zero point 0); returns how many were unsigned."""
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.quantization.layers import SymmetricQuantizer

    flipped = 0
    for module in [*get_hook_storage(qmodel).modules(), *qmodel.modules()]:
        if isinstance(module, SymmetricQuantizer) and not module.signed:
            module.signed = True
            flipped += 1
    return flipped


def export_qdq_onnx(qmodel: nn.Module, example: torch.Tensor, *, opset: int = 17, dynamic: bool = True,
                    output_names: tuple[str, ...] = ("logits",)) -> Any:
    """Strip NNCF's quantizers to torch FakeQuantize and export with the TorchScript exporter.

    Returns:
        The ONNX ModelProto (QuantizeLinear/DequantizeLinear only in the standard domain).

    Raises:
        RuntimeError: the exported graph holds custom-domain nodes (it would not load in ONNX Runtime).
    """
    import nncf
    import onnx

    qmodel.eval()
    with quiet_tools("nncf", stdout=False):  # NNCF logs per step; torch warns about TorchScript
        native = nncf.strip(qmodel, strip_format=nncf.StripFormat.NATIVE, example_input=example)
        _convert_shared_quantizers(native)
        axes = {0: "batch", 2: "height", 3: "width"}
        buf = io.BytesIO()
        # The dynamo exporter of torch 2.13 fails on FakeQuantize modules; TorchScript writes Q/DQ.
        torch.onnx.export(native, (example,), buf, dynamo=False, opset_version=max(13, opset),
                          input_names=["input"], output_names=list(output_names),
                          dynamic_axes={n: axes for n in ["input", *output_names]} if dynamic else None,
                          do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    foreign = sorted({n.domain for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise RuntimeError(f"QAT export left custom-domain nodes ({', '.join(foreign)}); ONNX Runtime cannot "
                           "load them")
    return proto


def _convert_shared_quantizers(model: nn.Module) -> None:
    """Convert quantizers that ``nncf.strip`` left behind: one quantizer shared by two hooks (a tensor read by
    two ops, e.g. a U-Net skip feeding both the pool and the concatenation) is listed once by its
    deduplicating walk, so the second reference stays an NNCF quantizer and exports as
    ``org.openvinotoolkit:FakeQuantize`` (seen with nncf 3.4)."""
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.quantization.layers import BaseQuantizer
    from nncf.torch.quantization.strip import convert_to_torch_fakequantizer

    storage = get_hook_storage(model)
    for name, module in list(storage.named_modules(remove_duplicate=False)):
        if isinstance(module, BaseQuantizer):
            storage.set_submodule(name, convert_to_torch_fakequantizer(module))


def qat_finetune(model: nn.Module, recipe: Any, out: Path, *, epochs: int, lr: float | None,
                 calibration: list[torch.Tensor], target: str = "onnxruntime-cpu", distill: bool = False
                 ) -> tuple[nn.Module, dict[str, Any]]:
    """Insert fake quantizers and fine-tune ``epochs`` on the training split with edgeseg's training loop.

    The default rate is ``train.lr / 100``: the quantizers start from calibrated ranges and the weights
    from a trained model, so QAT only has to adapt them to the rounding (measured on the pruned U-Net:
    ``lr / 10`` first lost 3 Dice points and ended below PTQ). ``distill`` adds logit distillation from
    the float model (semantic models). The loop's run folder is ``out`` (train_log.csv, metrics.json); the
    best validation epoch's weights and quantizer ranges are restored (the loop's model-selection rule;
    the calibrated start is validated too and kept when no epoch beats it: ``best_epoch`` 0), then its
    .pt files are removed since a fake-quantized state dict is not a model checkpoint edgeseg
    can rebuild. Returns the fine-tuned model and figures.
    """
    import copy

    from edgeseg.train.loop import train

    teacher = copy.deepcopy(model).eval() if distill else None
    qmodel = insert_fake_quantizers(model, calibration, target)
    ft = recipe.model_copy(deep=True)
    ft.train.epochs = epochs
    ft.train.warmup_epochs = 0.0
    ft.train.eval_every = 1
    ft.train.lr = lr if lr is not None else ft.train.lr * 0.01
    extra = None
    if teacher is not None:
        from edgeseg.compress.prune import logit_distillation

        extra = logit_distillation(teacher)
    result = train(ft, out, model=qmodel, extra_loss=extra, validate_start=True)
    best, best_epoch = out / FILES.model, None
    if best.is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)
        qmodel.load_state_dict(state["model_state"])
        best_epoch = int(state.get("epoch", -1)) + 1
    for name in (FILES.model, FILES.last):
        (out / name).unlink(missing_ok=True)
    metrics = result.get("metrics", {})
    return qmodel.cpu().eval(), {"epochs": epochs, "lr": ft.train.lr, "preset": PRESETS[target], "distill": distill,
                                 "calibration_images": len(calibration), "train_seconds": result.get("train_seconds"),
                                 "best_epoch": best_epoch, "start_val_score": result.get("start_score"),
                                 "train_val_miou": metrics.get("miou"),
                                 "log": str(out / FILES.train_log)}
