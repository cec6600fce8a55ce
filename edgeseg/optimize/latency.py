"""Latency first: every architecture of the space is built, exported and timed before anything trains.

Latency does not depend on the weights, so each candidate is an untrained (seeded) model, pruned by
``edgeseg.compress.prune`` where the space says so, exported by ``edgeseg.export`` (the FP32 ONNX file
that would ship) and quantized to QDQ INT8 by ``edgeseg.quantize`` calibrated on random arrays (fine
for timing); for the ExecuTorch target, ``.pte`` programs (:mod:`~edgeseg.optimize.pte_target`). The
files are timed here by ``edgeseg.benchmark`` (the `edgeseg bench` harness), or on another device from a
plan (``--plan``: the torch-free runner, TensorRT engines built there, or a phone over adb) whose lines
come back with ``--device-latency``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg import catalog
from edgeseg.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text, file_sha256
from edgeseg.optimize import pte_target, trt_target
from edgeseg.optimize.space import Candidate, OptimizeError
from edgeseg.recipe import BenchCfg, Recipe

F = catalog.OPTIMIZE_FILES


def _untrained_checkpoint(cand: Candidate, recipe: Recipe, folder: Path, seed: int) -> Path:
    """``folder/init.pt`` (seeded weights), or ``folder/pruned/model.pt`` after ``prune --ratio``."""
    import torch

    from edgeseg.artifacts.checkpoint import save_checkpoint
    from edgeseg.compress.prune import PruneConfig, prune
    from edgeseg.models import create_model
    from edgeseg.train.meta import check_image_size, meta_for

    rcp = cand.recipe(recipe)
    torch.manual_seed(seed)
    net = create_model(cand.model, num_classes=rcp.model.num_classes, in_channels=rcp.model.in_channels,
                       **dict(cand.args))
    meta = meta_for(net, rcp)
    check_image_size(rcp, meta.stride)
    init = save_checkpoint(folder / "init.pt", net, meta, epoch=0, metrics={})
    if not cand.prune_ratio:
        return init
    prune(init, folder / "pruned", PruneConfig(ratio=cand.prune_ratio), measure_accuracy=False,
          measure_latency=False)
    return folder / "pruned" / catalog.FILES.model


def build_candidate(cand: Candidate, recipe: Recipe, out: Path, precisions: list[str], seed: int,
                    backend: str = "onnxruntime") -> Path:
    """Write ``cand``'s untrained checkpoint (``OUT/arch/<id>``) and its timed files (``OUT/candidates``);
    files already there are kept (a resumed or second process). Returns the checkpoint trials start from.
    INT8 is QDQ placed for the target (TensorRT's rules for ``tensorrt``); ``executorch``: ``.pte`` programs."""
    folder = out / F.arch / cand.id
    ckpt = folder / ("pruned/" + catalog.FILES.model if cand.prune_ratio else "init.pt")
    files = {p: out / F.candidates / cand.form(p, catalog.OPTIMIZE_SUFFIXES[backend]) for p in precisions}
    if ckpt.is_file() and all(f.is_file() for f in files.values()):
        return ckpt
    ckpt = _untrained_checkpoint(cand, recipe, folder, seed)
    if backend == "executorch":
        pte_target.build_programs(ckpt, files, cand.image_size, seed)
    else:
        _onnx_forms(ckpt, cand.recipe(recipe), folder, files, seed, backend)
    return ckpt


def _onnx_forms(ckpt: Path, rcp: Recipe, folder: Path, files: dict[str, Path], seed: int, backend: str) -> None:
    """The ONNX files that would ship (FP32, FP16) by ``edgeseg.export``, INT8 by ``edgeseg.quantize`` with
    the export's choices for the target: its settings, calibration method and the task's float nodes."""
    from edgeseg.compress import quantize
    from edgeseg.export import export

    export(ckpt, folder / "export", formats=["onnx"], precisions=["fp32"] + (["fp16"] if "fp16" in files else []))
    exported = {"fp32": folder / "export" / "model.onnx", "fp16": folder / "export" / "model.fp16.onnx"}
    for p in set(files) & set(exported):
        atomic_write_bytes(files[p], exported[p].read_bytes())
    if "int8" in files:
        rng = np.random.default_rng(seed)
        shape = (1, rcp.model.in_channels, *rcp.data.size_hw)
        calib = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]
        settings, method, keep = int8_choices(rcp, exported["fp32"], backend)
        files["int8"].parent.mkdir(parents=True, exist_ok=True)  # an INT8-only space copies no FP32 file there
        quantize(exported["fp32"], files["int8"], calib, method=method, settings=settings, exclude=keep)


def int8_choices(rcp: Recipe, fp32: Path, backend: str) -> tuple[Any, str, dict[str, str]]:
    """The INT8 the export would write for ``backend`` (settings, calibration method, nodes kept in float):
    the task's float nodes (e.g. the instance decode tail) cost time, so the timed form keeps them too
    (without them a yolact-lite INT8 file timed 0.80x the trained one the export shipped)."""
    from edgeseg.export.onnx2int8 import ptq_settings, task_float_nodes
    from edgeseg.models import get_model_info
    from edgeseg.recipe import ExportCfg
    from edgeseg.tasks import get_task

    cal = (rcp.export or ExportCfg()).calibration
    return ptq_settings(cal, backend), cal.method, task_float_nodes(get_task(get_model_info(rcp.model.name).task), fp32)


def write_plan(out: Path, space: list[Candidate], precisions: list[str], backend: str, threads: int) -> dict[str, Any]:
    """``OUT/plan.json`` (every candidate file and its sha256) and ``OUT/run_on_device.sh``, the command that
    times them on the device (torch-free runner; TensorRT: engines built there first; phones: over adb)."""
    suffix = catalog.OPTIMIZE_SUFFIXES[backend]
    files = {c.form(p, suffix): file_sha256(out / F.candidates / c.form(p, suffix)) for c in space for p in precisions}
    plan = {"candidates": [c.to_dict() for c in space], "precisions": precisions, "files": files,
            "backend": backend, "threads": threads}
    atomic_write_json(out / F.plan, plan)
    if backend == "tensorrt":
        trt_target.write_device_files(out, space, precisions, files)
        return plan
    if backend == "executorch":
        pte_target.write_device_files(out, list(files))
        return plan
    command = (f"python -m edgeseg.bench.runner {shlex.quote(F.candidates)} --out device.jsonl "
               f"--backend {backend} --threads {threads}")
    atomic_write_text(out / F.runner_script, "#!/bin/sh\n# Copy this folder to the device (numpy + onnxruntime + "
                      "edgeseg, no torch), run this, copy device.jsonl back and pass it to\n# `edgeseg optimize "
                      "RECIPE --budget MS --device-latency device.jsonl --out OUT`.\n"
                      f'cd "$(dirname "$0")" && {command}\n')
    return plan


def measure_here(out: Path, plan: dict[str, Any], bench: BenchCfg | None, say: Callable[[str], None],
                 rounds: int = catalog.OPTIMIZE_LATENCY_ROUNDS) -> dict[str, float]:
    """Latency (ms) of every plan file on this machine, through `edgeseg bench`: each file timed in
    ``rounds`` rounds of alternating order, its latency the lowest of its p50s (:func:`quiet_latency`).
    Lines already in ``OUT/latency.jsonl`` (same sha256, same backend and threads) count as rounds done.
    :func:`model_figures` reads the params and MACs from the same lines."""
    log = out / F.latency
    done = _p50_lists(_rows(log), plan)
    todo = [name for name in plan["files"] if len(done.get(name, [])) < rounds]
    if todo:
        say(f"timing {len(todo)} candidate files on {plan['backend']} ({plan['threads']} threads, {rounds} rounds "
            "in alternating order), before any training")
        trt = plan["backend"] == "tensorrt"
        for r in range(rounds):
            names = _round_order([n for n in todo if len(done.get(n, [])) <= r], r)
            if names:
                files = trt_target.build_here(out, plan, names, say) if trt else [out / F.candidates / n for n in names]
                _bench(files, log, plan["backend"], plan["threads"], bench)
        done = _p50_lists(_rows(log), plan)
    missing = sorted(set(plan["files"]) - set(done))
    if missing:
        raise OptimizeError(f"{log}: no latency for {', '.join(missing[:3])} (see the error field of its lines)")
    return {name: quiet_latency(v) for name, v in done.items()}


def quiet_latency(p50s: list[float]) -> float:
    """One file's latency from its rounds' p50s: the lowest. Other work on a shared machine only adds time,
    and on these VMs it comes in stretches that slow a file's whole measurement 1.4-3x (measured on the
    membrane space: in one 3-round pass over 48 files, 24 had such a round and 6 had two of three, e.g.
    fcn-lite width 1 FP32 at 6.96, 6.87 and 3.96 ms, where their median is the slow stretch). The lowest
    p50 over rounds in alternating order is the quiet-machine figure a dedicated device shows; a p50 (not
    one run's minimum) keeps a single lucky call out of it."""
    return float(min(p50s))


def time_alternating(files: list[Path], log: Path, backend: str, threads: int, bench: BenchCfg | None,
                     rounds: int = catalog.OPTIMIZE_LATENCY_ROUNDS) -> list[float]:
    """Latency (ms, :func:`quiet_latency`) of each file over ``rounds`` rounds in alternating order (forward,
    backward, ...): a paired measurement whose ratios hold on a machine whose speed drifts. NaN for a file
    that failed."""
    p50s: dict[str, list[float]] = {str(f): [] for f in files}
    for r in range(rounds):
        for row in _bench(_round_order(files, r), log, backend, threads, bench):
            path, ms = str((row.get("artifact") or {}).get("path")), (row.get("latency") or {}).get("p50_ms")
            if ms and path in p50s:
                p50s[path].append(float(ms))
    return [quiet_latency(v) if v else float("nan") for v in p50s.values()]


def _round_order(items: list[Any], r: int) -> list[Any]:
    """Round ``r``'s order: forward on even rounds, backward on odd ones (a linear drift moves every file alike)."""
    return items if r % 2 == 0 else items[::-1]


def _bench(files: list[Path], log: Path, backend: str, threads: int, bench: BenchCfg | None) -> list[dict[str, Any]]:
    """One bench call over ``files`` (latency only: no accuracy, no memory probe; batch 1), its lines appended
    to ``log``."""
    from edgeseg.bench import benchmark

    trt = backend == "tensorrt"
    return benchmark(files, out=log, backends=[backend], device="cuda" if trt else "cpu", threads=[threads],
                     batch=[1], cfg=bench, accuracy=False, memory=False)


def device_latency(path: Path, plan: dict[str, Any], plan_path: Path) -> dict[str, float]:
    """p50 latency (ms) per plan file from the device runner's lines; they must be the plan's files."""
    if not path.is_file():
        raise OptimizeError(f"--device-latency {path}: file not found; expected the JSON lines "
                            f"`{F.runner_script}` wrote on the device")
    rows = _rows(path)
    names = {r["artifact"]["name"] for r in rows}
    missing, unknown = sorted(set(plan["files"]) - names), sorted(names - set(plan["files"]))
    shas = {r["artifact"]["name"]: r["artifact"].get("sha256") for r in rows if r["artifact"].get("sha256")}
    changed = sorted(n for n, sha in shas.items() if n in plan["files"] and sha != plan["files"][n])
    if missing or unknown or changed:
        what = "; ".join(f"{k}: {', '.join(v[:3])}" + (" ..." if len(v) > 3 else "")
                         for k, v in (("missing", missing), ("not in the plan", unknown), ("other files", changed)) if v)
        raise OptimizeError(f"--device-latency {path}: its candidates do not match the plan {plan_path} ({what}); "
                            "time exactly the files of that plan")
    p50 = _p50s(rows, {**plan, "backend": None, "threads": None})
    failed = sorted(set(plan["files"]) - set(p50))
    if failed:
        raise OptimizeError(f"--device-latency {path}: no latency measured for {', '.join(failed[:3])} "
                            "(see the error field of its lines)")
    return p50


def _rows(path: Path) -> list[dict[str, Any]]:
    """Bench lines; an engine's line is named by the plan file it was built from (its own sha256, the
    engine's, is dropped: the device script checks the files' before building)."""
    from edgeseg.bench.rows import load_rows

    rows = load_rows([path]) if path.is_file() else []
    for r in rows:
        art = r.get("artifact") or {}
        if str(art.get("name", "")).endswith(".engine"):
            art["name"] = trt_target.form_of(art["name"])
            art.pop("sha256", None)
    return rows


def _p50_lists(rows: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, list[float]]:
    """name -> the p50s (ms) of the rows that measured a plan file (one per round)."""
    found: dict[str, list[float]] = {}
    for r in rows:
        art, lat = r.get("artifact") or {}, r.get("latency") or {}
        if art.get("name") not in plan["files"] or not lat.get("p50_ms"):
            continue
        if plan.get("backend") and (r.get("backend") != plan["backend"] or r.get("threads") != plan["threads"]):
            continue
        if art.get("sha256") and art["sha256"] != plan["files"][art["name"]]:
            continue
        found.setdefault(art["name"], []).append(float(lat["p50_ms"]))
    return found


def _p50s(rows: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, float]:
    """name -> latency (ms) of the rows that measured a plan file (a device file may hold several rounds)."""
    return {name: quiet_latency(v) for name, v in _p50_lists(rows, plan).items()}


def model_figures(path: Path) -> dict[str, dict[str, Any]]:
    """name -> params and GMACs of every file a bench line in ``path`` describes (counted from the graph)."""
    return {r["artifact"]["name"]: {k: (r.get("model") or {}).get(k) for k in ("params", "gmacs")}
            for r in _rows(path) if r.get("model")}


def check_plan_backend(out: Path, backend: str) -> None:
    """A plan already in ``out`` was made for one target: its files (INT8 placement, engines) are that
    target's, so another ``--backend`` needs another folder."""
    path = out / F.plan
    if path.is_file():
        made_for = json.loads(path.read_text()).get("backend")
        if made_for != backend:
            raise OptimizeError(f"--backend {backend}: {path} is a plan for --backend {made_for}; pass "
                                f"--backend {made_for}, or --out another folder for {backend}")


def read_plan(out: Path) -> dict[str, Any]:
    """The plan ``--plan`` wrote into ``out`` (``--device-latency`` needs it)."""
    path = out / F.plan
    if not path.is_file():
        raise OptimizeError(f"--device-latency: {path} not found; run `edgeseg optimize RECIPE --plan --out {out}` "
                            "first and time its candidate files on the device")
    return json.loads(path.read_text())


__all__ = ["build_candidate", "check_plan_backend", "device_latency", "measure_here", "model_figures", "read_plan", "write_plan"]
