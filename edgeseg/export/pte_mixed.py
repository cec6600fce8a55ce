"""Latency-aware mixed precision for ExecuTorch INT8: layer kinds INT8 makes slower stay in float.

XNNPACK's INT8 (QC8) depthwise convolution is slower than its FP32 one on some CPUs (x86 with
AVX512-VNNI here: 3.02 vs 1.85 ms over unet-lite's depthwise layers, ``benchmarks/results/
executorch_profile.md``), while the pointwise and full convolutions gain from INT8. On ARM phones the
INT8 depthwise kernels may win. So nothing is hard-coded: :func:`depthwise_float_nodes` names the
candidate layers of the exported graph, ``torch2executorch.convert_int8`` builds the all-INT8 and the
mixed program and ships the one measured faster (``export.executorch.float_depthwise: auto``), or
follows the recipe (``always`` / ``never``). The float layers get a dequantize before and a quantize
after them (XNNPACK "Convert" operators), which the measurement includes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from edgeseg.catalog import DEPTHWISE_SCOPES as SCOPES
from edgeseg.catalog import FLOAT_DEPTHWISE
_CONV = ("aten.conv2d", "aten.convolution")


def _conv_groups(node: Any) -> int:
    """The ``groups`` argument of an ``aten.conv2d`` / ``aten.convolution`` node (1 when absent)."""
    target = str(node.target)
    args = list(node.args)
    if target.startswith("aten.convolution"):  # (x, w, b, stride, padding, dilation, transposed, out_pad, groups)
        return int(args[8]) if len(args) > 8 else int(node.kwargs.get("groups", 1))
    return int(args[6]) if len(args) > 6 else int(node.kwargs.get("groups", 1))


def _shape(node: Any) -> tuple[int, ...] | None:
    val = node.meta.get("val") if hasattr(node, "meta") else None
    return tuple(int(d) for d in val.shape) if isinstance(val, torch.Tensor) else None


def depthwise_convs(graph_module: Any) -> list[Any]:
    """Conv nodes of an exported graph that are depthwise: ``groups == in_channels > 1`` (not transposed)."""
    found = []
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or not str(node.target).startswith(_CONV):
            continue
        if str(node.target).startswith("aten.convolution") and len(node.args) > 6 and node.args[6]:
            continue  # transposed
        shape = _shape(node.args[0])
        groups = _conv_groups(node)
        if shape is not None and len(shape) == 4 and groups > 1 and groups == shape[1]:
            found.append(node)
    return found


def depthwise_float_nodes(graph_module: Any, scope: str = "all") -> dict[str, str]:
    """FX node -> reason for the depthwise convs kept in float (``scope``: every one, or only those at the
    largest spatial size among them, ``full_res``)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    convs = depthwise_convs(graph_module)
    if scope == "full_res" and convs:
        pixels = {n.name: math.prod(_shape(n)[2:]) for n in convs}  # type: ignore[index]
        top = max(pixels.values())
        convs = [n for n in convs if pixels[n.name] == top]
    why = "depthwise conv kept in float" + (", full-resolution scope" if scope == "full_res" else "")
    return {n.name: f"{why} ({_shape(n)[1]} ch, {'x'.join(map(str, _shape(n)[2:]))})" for n in convs}  # type: ignore[index]


def pick_faster(p50: dict[str, float], ratios: list[float], busy: str, base: str, challenger: str
                ) -> tuple[str, str, dict[str, Any]]:
    """Which of two INT8 programs to ship from paired rounds (ratio = base ms / challenger ms per round).

    Quiet machine: the lower best p50. Busy machine (where best-of-rounds is not to be trusted), as
    ``int8_policy: auto`` does there: the challenger only when the 95% interval of the ratio lies above 1
    (and its median agrees); undecided keeps ``base``, the program without extra Converts. Both
    candidates pass the same parity and FP32-vs-INT8 checks afterwards, so a wrong pick costs speed,
    never accuracy. Returns (chosen key, reason, record).
    """
    from edgeseg.export.int8_timing import RatioSamples

    samples = RatioSamples(ratios=list(ratios), busy=busy)
    ci = samples.ci95()
    mid = statistics.median(ratios) if ratios else 1.0
    record: dict[str, Any] = {"p50_ms": {k: round(v, 4) for k, v in p50.items()}, "rounds": len(ratios),
                              "ratios": [round(r, 4) for r in ratios],
                              "ratio_ci95": [round(v, 4) for v in ci] if ci else None, "busy": busy}
    if busy:
        faster = ci is not None and ci[0] > 1.0 and mid > 1.0
        record["certainty"] = ("95% interval excludes 1" if samples.excludes_one()
                               else f"undecided on a busy machine: kept {base}")
        span = f"95% CI {ci[0]:.2f}-{ci[1]:.2f}" if ci else "a single round"
        basis = (f"median {base}/{challenger} ratio {mid:.3f}, {span}, over {len(ratios)} paired rounds on a busy "
                 f"machine ({busy})")
    else:
        faster = p50[challenger] < p50[base]
        record["certainty"] = f"quiet machine: best p50 of {len(ratios)} paired rounds"
        basis = f"best p50 of {len(ratios)} paired rounds"
    chosen = challenger if faster else base
    reason = (f"{challenger} {p50[challenger]:.2f} ms vs {base} {p50[base]:.2f} ms ({basis}): shipped {chosen}")
    return chosen, reason, record


Builder = Callable[[str, "Callable[[Any], dict[str, str]] | None", Callable[[Any], None]], Path]


def choose_int8(ctx: Any, build: Builder, opener: Callable[[Path], Any]) -> dict[str, Any]:
    """Build the INT8 candidates ``ctx.cfg.executorch`` asks for and pick one; returns the export.json record.

    ``build(key, extra_float, seen)`` quantizes and lowers one candidate (``extra_float(gm)``: more
    float nodes; ``seen(gm)`` is shown the annotated graph) and returns its file. ``never``: all
    INT8; ``always``: the depthwise convs in float; ``auto``: both when the model has depthwise convs,
    timed in paired rounds (:func:`onnx2int8.measure_paired`, all-INT8 in the ``fp32`` slot), the
    faster kept (:func:`pick_faster`).
    """
    from edgeseg.export.onnx2int8 import measure_paired

    mode, scope = ctx.cfg.executorch.float_depthwise, ctx.cfg.executorch.depthwise_scope
    dw_key = f"int8+float_depthwise({scope})"
    found: dict[str, str] = {}
    files: dict[str, Path] = {}
    record: dict[str, Any] = {"float_depthwise": mode, "depthwise_scope": scope}

    def seen(gm: Any) -> None:
        found.update(depthwise_float_nodes(gm, scope))

    if mode != "always":
        files["int8"] = build("int8", None, seen)
    if mode == "always" or (mode == "auto" and found):
        files[dw_key] = build(dw_key, lambda gm: depthwise_float_nodes(gm, scope), seen)
    record["depthwise_convs"] = len(found)
    if len(files) == 1:
        chosen = next(iter(files))
        record["reason"] = {"never": "export.executorch.float_depthwise=never: every layer INT8",
                            "always": f"export.executorch.float_depthwise=always: {len(found)} depthwise convs "
                                      "in float, not timed against all-INT8"}.get(
            mode, "no depthwise convs: nothing to keep in float")
    else:
        ctx.say(f"ExecuTorch INT8: timing all-INT8 vs {len(found)} depthwise convs in float ({ctx.threads} threads)")
        latency, samples = measure_paired(ctx, {"fp32": files["int8"], "int8": files[dw_key]}, opener=opener,
                                          backend="executorch-xnnpack")
        p50 = {"int8": latency["fp32"]["p50_ms"], dw_key: latency["int8"]["p50_ms"]}
        chosen, reason, timing = pick_faster(p50, samples.ratios, samples.busy, "int8", dw_key)
        record.update(reason=reason, timing=timing)
        ctx.say(f"ExecuTorch INT8 mixed precision: {reason}")
    record["chosen"] = chosen
    record["float_depthwise_nodes"] = sorted(found) if chosen == dw_key else []
    return record


__all__ = ["FLOAT_DEPTHWISE", "SCOPES", "choose_int8", "depthwise_convs", "depthwise_float_nodes", "pick_faster"]
