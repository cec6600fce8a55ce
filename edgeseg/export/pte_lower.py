"""Lowering to an ExecuTorch program (``torch.export`` -> XNNPACK delegate -> ``.pte`` bytes) and what it
tells about the program: the fraction delegated, operators left to portable kernels with their layers,
operators this runtime has no kernel for, and one-line errors naming the operator and layer that
cannot be lowered. Used by :mod:`edgeseg.export.torch2executorch` for FP32 and INT8 programs.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import torch

from edgeseg.errors import ExportError
from edgeseg.quiet import PHONE_STACK_LOGGERS, first_line, quiet_tools

_NOT_CORE_ATEN = re.compile(r"Operator (?:torch\._ops\.)?(\S+) is not (?:in )?(?:Core ATen|Aten Canonical)")


def _layer(node: Any) -> str:
    """``decoder.2.conv (Conv2d)`` from a node's module stack; the model itself when it has none."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "the model's own forward"
    path, cls = list(stack.values())[-1]
    path = re.sub(r"^L\['self'\]\.?|^L__self___?", "", str(path)).replace("_modules['", "").replace("']", "")
    cls_name = getattr(cls, "__name__", str(cls).rsplit(".", 1)[-1].strip("'>"))
    return f"{path or '(root)'} ({cls_name})"


def _op_name(target: Any) -> str:
    name = getattr(target, "__name__", str(target))
    return name.removeprefix("aten.").removeprefix("dim_order_ops.")


def _graph_ops(graph: Any) -> list[Any]:
    skip = ("getitem", "executorch_call_delegate")
    return [n for n in graph.nodes if n.op == "call_function" and not any(s in str(n.target) for s in skip)]


def delegation(edge: Any) -> dict[str, Any]:
    """How much of a lowered program XNNPACK runs: operator counts inside/outside delegates, and what is left."""
    from executorch.exir.lowered_backend_module import get_lowered_submodules

    gm = edge.exported_program().graph_module
    inside = Counter()
    for _, lowered, _ in get_lowered_submodules(gm):
        inside.update(_op_name(n.target) for n in _graph_ops(lowered.original_module.graph))
    outside = _graph_ops(gm.graph)
    left = Counter(_op_name(n.target) for n in outside)
    total = sum(inside.values()) + len(outside)
    return {"delegates": len(get_lowered_submodules(gm)), "ops_delegated": sum(inside.values()),
            "ops_portable": len(outside), "fraction_delegated": round(sum(inside.values()) / max(total, 1), 4),
            "portable_ops": dict(left),
            "portable_layers": sorted({f"{_op_name(n.target)} in {_layer(n)}" for n in outside})[:20]}


def _missing_kernels(program: Any) -> list[str]:
    """Operators the program calls outside delegates that this runtime has no kernel for."""
    from executorch.extension.pybindings import portable_lib

    registered = set(portable_lib._get_operator_names())
    used = [f"{op.name}.{op.overload}" if op.overload else op.name
            for plan in program.executorch_program.execution_plan for op in plan.operators]
    return [u for u in used if u not in registered]


def _lowering_error(exc: BaseException, graph: Any, stage: str) -> ExportError:
    """One line naming the operator and the layer when the message names an operator."""
    text = str(exc)
    match = _NOT_CORE_ATEN.search(text)
    op = match.group(1) if match else ""
    if op:
        nodes = [n for n in graph.nodes if n.op == "call_function" and str(n.target).endswith(op.removeprefix("aten."))]
        where = f" in layer {_layer(nodes[0])}" if nodes else ""
        return ExportError(f"ExecuTorch cannot lower operator {op}{where}: it is not a Core ATen operator, so "
                           "neither XNNPACK nor the portable kernels run it; rewrite that layer with supported ops")
    return ExportError(f"ExecuTorch {stage} failed: {first_line(exc)}")


def untie_shared_parameters(gm: torch.fx.GraphModule) -> int:
    """Give every use of a parameter that several operators read its own copy; returns how many copies.

    YOLACT's head runs one conv tower on every FPN level with per-level BatchNorm. Folding a BatchNorm
    into its conv (XNNPACK's FuseBatchNormPass names the folded weight after the conv's weight;
    PT2E's folding assigns it back to the conv's attribute) then writes one level's fold over the
    others' (ExecuTorch 1.5: head outputs off by up to 96% relative), so each level gets its own weight first.
    """
    copies = 0
    for node in list(gm.graph.nodes):
        if node.op != "get_attr" or len(node.users) < 2:
            continue
        try:
            value = gm.get_parameter(str(node.target))
        except AttributeError:  # a buffer or constant: never folded into
            continue
        for user in list(node.users)[1:]:
            copies += 1
            name = f"{str(node.target).replace('.', '_')}_use{copies}"
            gm.register_parameter(name, torch.nn.Parameter(value.detach().clone(), requires_grad=False))
            with gm.graph.inserting_after(node):
                user.replace_input_with(node, gm.graph.get_attr(name))
    if copies:
        gm.graph.lint()
        gm.recompile()
    return copies


def export_untied(model: torch.nn.Module, example: torch.Tensor) -> Any:
    """``torch.export`` of ``model``; re-exported after :func:`untie_shared_parameters` when it shares weights."""
    program = torch.export.export(model, (example,))
    params = set(program.graph_signature.inputs_to_parameters)
    if any(n.op == "placeholder" and n.name in params and len(n.users) > 1 for n in program.graph.nodes):
        gm = program.module()
        untie_shared_parameters(gm)
        program = torch.export.export(gm, (example,))
    return program


def lower(model: torch.nn.Module, example: torch.Tensor, methods: dict[str, str]) -> tuple[bytes, dict[str, Any]]:
    """``torch.export`` -> ``to_edge_transform_and_lower`` (XNNPACK) -> ``.pte`` bytes, plus delegation figures.

    ``model`` may be a PT2E-quantized graph module. Raises ExportError naming the operator and layer
    that cannot be lowered, or an operator the runtime has no kernel for.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with quiet_tools(*PHONE_STACK_LOGGERS, native=True):
        try:
            program = export_untied(model, example)
        except Exception as exc:  # noqa: BLE001  (torch.export raises many types; one line for the user)
            raise ExportError(f"torch.export failed: {first_line(exc)}") from exc
        try:
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], constant_methods=methods)
        except Exception as exc:  # noqa: BLE001
            raise _lowering_error(exc, program.graph, "lowering") from exc
        info = delegation(edge)
        try:
            et_program = edge.to_executorch()
        except Exception as exc:  # noqa: BLE001
            raise _lowering_error(exc, edge.exported_program().graph, "emission") from exc
    missing = _missing_kernels(et_program)
    if missing:
        base = missing[0].split("::")[-1].split(".")[0]  # aten::cumprod.out -> cumprod
        layers = [p for p in info["portable_layers"] if p.split(".")[0] == base]
        raise ExportError(f"ExecuTorch runtime has no kernel for operator {missing[0]}"
                          + (f" ({layers[0]})" if layers else "") + "; the .pte would not load")
    return et_program.buffer, info


__all__ = ["delegation", "export_untied", "lower", "untie_shared_parameters"]
