"""Accuracy- and latency-aware mixed precision: which layers of a QDQ model stay in float.

Two measurements decide, both on the target runtime (ONNX Runtime CPU here):

* **Latency, per layer kind** (full conv, depthwise, pointwise, transposed, matmul): the model quantized
  with one kind kept in float is timed against the fully quantized model, alternating rounds. A kind
  that runs faster in float (depthwise convs and Q/DQ pairs around cheap layers on AVX2 CPUs without
  VNNI) stays float in every layer. Per-layer timing differences are below the noise of a shared CPU;
  a kind's effect is the sum over its layers, which is measurable.
* **Accuracy, per layer**: validation mIoU of the model with only that layer back in float, against the
  fully quantized model (deterministic, no noise). While the mixed model loses more than the budget,
  the most sensitive layer still in INT8 goes back to float, and the mixed model is evaluated again.

Every layer's precision and the measured reason land in export.json.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

KIND_MARGIN = 0.03  # a kind stays float when floating it makes the model >= 3% faster than full INT8


def layer_kinds(model: Any) -> dict[str, str]:
    """Node name -> kind (conv | depthwise | pointwise | transposed | matmul) for every weighted node."""
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    kinds = {}
    for node in model.graph.node:
        if node.op_type == "ConvTranspose":
            kinds[node.name] = "transposed"
        elif node.op_type in ("Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in shapes:
            kinds[node.name] = "matmul"
        elif node.op_type == "Conv":
            w = shapes.get(node.input[1])
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if w is None:
                continue
            kinds[node.name] = ("depthwise" if group > 1 and w[1] == 1 else
                                "pointwise" if tuple(w[2:]) == (1, 1) else "conv")
    return kinds


def choose_float_layers(fp32_path: Path, *, quantize: Callable[[Path, list[str]], Any],
                        miou: Callable[[Path], float], latency: Callable[[dict[str, Path]], dict[str, float]],
                        max_drop: float, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Pick the layers kept in float so that mIoU drops <= ``max_drop`` points and the model is fastest.

    Args:
        fp32_path: The FP32 ONNX model.
        quantize: ``(out_path, excluded node names) -> figures``, writing a QDQ model.
        miou: Validation mIoU (0-1) of an ONNX file, on the whole split.
        latency: Median latencies of several files, measured side by side (alternating rounds).
        max_drop: Budget in mIoU points (0-100 scale).

    Returns:
        ``float_layers`` (node names), ``layers`` (per node: kind, precision, reason, sensitivity),
        ``kind_latency_ms``, the fp32 / full-INT8 / mixed mIoU and the evaluations spent.
    """
    import onnx

    kinds = layer_kinds(onnx.load(str(fp32_path)))
    reasons: dict[str, str] = {}
    sensitivity: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgeseg-mixed-") as tmp:
        work = Path(tmp)

        def build(name: str, excluded: list[str]) -> Path:
            path = work / f"{name}.onnx"
            quantize(path, excluded)
            return path

        fp32_miou = miou(fp32_path)
        full = build("full", [])
        full_miou = miou(full)
        log(f"mixed precision: FP32 mIoU {fp32_miou:.4f}, full INT8 {full_miou:.4f} "
            f"({100 * (fp32_miou - full_miou):.2f} points, budget {max_drop})")
        present = sorted(set(kinds.values()))
        times = latency({"full": full, **{f"float_{k}": build(f"float_{k}", [n for n, kk in kinds.items() if kk == k])
                                          for k in present}})
        excluded = _float_for_speed(kinds, times, reasons)
        log(f"mixed precision: {len(excluded)} layers float for speed ({', '.join(sorted({kinds[n] for n in excluded})) or 'none'})")
        current_miou = miou(build("mixed", excluded) if excluded else full)
        evaluations = 2 + 1
        if 100 * (fp32_miou - current_miou) > max_drop:
            current_miou, spent = _float_for_accuracy(kinds, excluded, reasons, sensitivity, build=build, miou=miou,
                                                      fp32_miou=fp32_miou, full_miou=full_miou,
                                                      current_miou=current_miou, max_drop=max_drop)
            evaluations += spent
        log(f"mixed precision: {len(excluded)} of {len(kinds)} layers float, mIoU {current_miou:.4f} "
            f"({100 * (fp32_miou - current_miou):.2f} points)")

    return {"float_layers": list(excluded), "layers": _layer_rows(kinds, excluded, reasons, sensitivity),
            "kind_latency_ms": {k: times[f"float_{k}"] for k in present},
            "full_int8_latency_ms": times["full"], "fp32_miou": fp32_miou, "full_int8_miou": full_miou,
            "mixed_miou": current_miou, "max_drop_points": max_drop,
            "full_int8_drop_points": 100 * (fp32_miou - full_miou),
            "mixed_drop_points": 100 * (fp32_miou - current_miou), "evaluations": evaluations}


def _float_for_speed(kinds: dict[str, str], times: dict[str, float], reasons: dict[str, str]) -> list[str]:
    """Layers of every kind whose float form makes the model at least KIND_MARGIN faster (reasons filled in)."""
    excluded: list[str] = []
    for k in sorted(set(kinds.values())):
        gain = 1 - times[f"float_{k}"] / times["full"]
        verdict = "faster" if gain > 0 else "slower"
        why = (f"{k} layers in float: model {times[f'float_{k}']:.2f} ms vs {times['full']:.2f} ms all-INT8 "
               f"({abs(gain):.1%} {verdict})")
        for n, kk in kinds.items():
            if kk != k:
                continue
            if gain >= KIND_MARGIN:
                excluded.append(n)
                reasons[n] = f"float for speed: {why}"
            else:
                reasons[n] = f"INT8 not slower: {why}"
    return excluded


def _float_for_accuracy(kinds: dict[str, str], excluded: list[str], reasons: dict[str, str],
                        sensitivity: dict[str, float], *, build: Callable[[str, list[str]], Path],
                        miou: Callable[[Path], float], fp32_miou: float, full_miou: float,
                        current_miou: float, max_drop: float) -> tuple[float, int]:
    """Leave-one-out sensitivity of every layer still in INT8, then the most sensitive go float until the
    drop fits ``max_drop``; extends ``excluded``/``reasons``/``sensitivity``. Returns (mIoU, evaluations)."""
    evaluations = 0
    for n in kinds:
        if n not in excluded:
            sensitivity[n] = 100 * (miou(build("one", [n])) - full_miou)
            evaluations += 1
    for n in sorted(sensitivity, key=sensitivity.get, reverse=True):
        if 100 * (fp32_miou - current_miou) <= max_drop:
            break
        excluded.append(n)
        reasons[n] = (f"float for accuracy: INT8 here alone costs {sensitivity[n]:.2f} mIoU points; "
                      f"budget {max_drop} points")
        current_miou = miou(build("mixed", excluded))
        evaluations += 1
    return current_miou, evaluations


def _layer_rows(kinds: dict[str, str], excluded: list[str], reasons: dict[str, str],
                sensitivity: dict[str, float]) -> list[dict[str, Any]]:
    """One row per quantizable node: kind, precision, why, and its sensitivity where measured."""
    layers = [{"node": n, "kind": k, "precision": "fp32" if n in excluded else "int8", "reason": reasons.get(n, ""),
               **({"sensitivity_points": round(sensitivity[n], 4)} if n in sensitivity else {})}
              for n, k in kinds.items()]
    for row in layers:
        if row["precision"] == "int8" and "sensitivity_points" in row:
            row["reason"] = (f"INT8: costs {row['sensitivity_points']:.2f} mIoU points alone, within the budget "
                             f"after the more sensitive layers went float; " + row["reason"])
    return layers
