"""What a study leaves in OUT: every trial as a JSON line, the accuracy-vs-latency plot (budget line,
Pareto front, the recipe's own model), and the winner trained at full length, exported, benched and
reported by the existing verbs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeseg import catalog
from edgeseg.artifacts import atomic_write_text
from edgeseg.optimize.space import Candidate
from edgeseg.optimize.study import candidate_of

F = catalog.OPTIMIZE_FILES


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One dict per trial of the storage: state, candidate, architecture, latency, fidelities, time."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        candidate = candidate_of(t)
        if t.user_attrs.get("duplicate_of") is not None or candidate is None:
            continue
        spent = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
            else None
        rows.append({"trial": t.number, "state": t.state.name.lower(), "candidate": candidate,
                     "value": t.value, **t.user_attrs, "seconds": spent})
    return rows


def write_trials(out: Path, rows: list[dict[str, Any]]) -> Path:
    """``OUT/trials.jsonl``, rewritten whole from the storage (so every process writes the same file)."""
    return atomic_write_text(out / F.trials, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats on both (lower latency, higher
    accuracy), by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot(out: Path, rows: list[dict[str, Any]], budget_ms: float, metric: str, own: str | None) -> Path | None:
    """``OUT/optimize.png``: each trained trial's best fidelity score against its deployed latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["latency_ms"], max(f[metric] for f in r["fidelities"]), r["candidate"]) for r in rows
           if r.get("fidelities") and r.get("latency_ms")]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], c="tab:blue", label="trials (best fidelity)")
    front = [pts[i] for i in pareto([(p[0], p[1]) for p in pts])]
    ax.plot([p[0] for p in front], [p[1] for p in front], "-o", c="tab:green", label="Pareto front")
    for p in pts:
        if p[2] == own:
            ax.scatter([p[0]], [p[1]], marker="*", s=200, c="tab:orange", label="the recipe's own model", zorder=3)
    ax.axvline(budget_ms, ls="--", c="tab:red", label=f"budget {budget_ms:.3g} ms")
    ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel(f"val {metric}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / F.plot
    fig.savefig(path.with_suffix(".tmp.png"), dpi=100)
    plt.close(fig)
    path.with_suffix(".tmp.png").replace(path)
    return path


def longest_fidelity(trial: dict[str, Any], recipe: Any) -> str | None:
    """The winner trains at least as long as its trial did: the trial's longest fidelity as a time budget
    when it ran more epochs than the recipe's schedule (else None: the recipe's training as shipped)."""
    last = (trial.get("fidelities") or [{}])[-1]
    if (last.get("epochs") or 0) > recipe.train.epochs and last.get("time_budget_s"):
        return f"{last['time_budget_s']:g}s"
    return None


def train_winner(cand: Candidate, precision: str, recipe: Any, checkpoint: Path, out: Path,
                 full_time: str | None, threads: int, backend: str) -> dict[str, Any]:
    """The winner at full length (``full_time``, else the recipe's training) from its untrained checkpoint,
    exported (the recipe's formats, plus the TensorRT kit or the ExecuTorch programs and phone kit for those
    targets; its precision), benched here and reported: ``OUT/winner/``. On TensorRT without TensorRT here,
    its ONNX files are benched on ONNX Runtime (accuracy) and the engine's latency is the device's to measure
    (the kit)."""
    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.bench import benchmark
    from edgeseg.export import export
    from edgeseg.recipe import ExportCfg
    from edgeseg.report import report
    from edgeseg.train.loop import train

    folder = out / F.winner
    rcp = cand.recipe(recipe)
    if full_time is not None:
        rcp.train.time_budget = full_time
    trained = train(rcp, folder / "1_train", model=load_checkpoint(checkpoint).model)
    cfg = (rcp.export or ExportCfg()).model_copy(deep=True)
    cfg.precisions = ["fp32"] + (["int8"] if precision == "int8" else [])  # TensorRT's FP16: from the kit
    cfg.formats = list(dict.fromkeys([*cfg.formats, *([backend] if backend in ("tensorrt", "executorch") else [])]))
    cfg.int8_policy = "always"  # the latency was measured in this precision: ship it
    doc = export(folder / "1_train" / catalog.FILES.model, folder / "4_export", cfg=cfg)
    shipped = [Path(a["path"]) for a in doc["artifacts"] if a.get("shipped", True) and a.get("format") == "onnx"]
    engines = [Path(a["path"]) for a in doc["artifacts"] if a.get("shipped", True) and str(a["path"]).endswith(".engine")]
    ptes = [Path(a["path"]) for a in doc["artifacts"] if a.get("shipped", True) and str(a["path"]).endswith(".pte")]
    bench = folder / "5_bench" / "results.jsonl"
    rows = benchmark(shipped, out=bench, backends=["onnxruntime"], threads=[threads], batch=[1], cfg=rcp.bench)
    if backend == "tensorrt" and engines:
        rows += benchmark(engines, out=bench, backends=["tensorrt"], device="cuda", batch=[1], cfg=rcp.bench)
    if backend == "executorch" and ptes:
        rows += benchmark(ptes, out=bench, backends=["executorch"], threads=[threads], batch=[1], cfg=rcp.bench)
    rendered = report([bench], folder / "6_report", title=f"edgeseg optimize: {cand.id}")
    return {"train": trained, "export": doc, "bench": rows, "report": {k: str(v) for k, v in rendered.items()}}


def int8_outcome(export_doc: dict[str, Any], precision: str) -> dict[str, Any]:
    """What the winner's ONNX INT8 export became: its accuracy drop, the layers mixed precision kept in float
    (``export.max_drop``), and why it was not shipped when no layer choice met the drop. Empty for FP32."""
    art = next((a for a in export_doc.get("artifacts", []) if a.get("format") == "onnx"
                and a.get("precision") == "int8"), None) if precision == "int8" else None
    if art is None:
        return {}
    mixed = (art.get("quantization") or {}).get("mixed_precision")
    outcome: dict[str, Any] = {"drop_points": next((v for k, v in (art.get("accuracy") or {}).items()
                                                   if k.endswith("_drop_points")), None)}
    if mixed is not None:
        outcome["float_layers"] = list(mixed.get("float_layers") or [])
    if not art.get("shipped", True):
        outcome["not_shipped"] = art.get("reason") or "rejected by the export"
    return outcome


def deployed_row(rows: list[dict[str, Any]], precision: str, backend: str = "onnxruntime") -> dict[str, Any]:
    """The bench line of the winner's deployed file: its ONNX file in ``precision``, its ``.pte`` program on
    ExecuTorch, or on TensorRT its engine (without one built here: the ONNX line's accuracy and no latency).
    Empty when not measured."""
    def line(name: str) -> dict[str, Any]:
        return next((r for r in rows if (r.get("artifact") or {}).get("name") == name and r.get("latency")), {})

    if backend == "executorch":
        return line("model.int8.pte" if precision == "int8" else "model.pte")
    onnx_row = line("model.int8.onnx" if precision == "int8" else "model.onnx")
    if backend != "tensorrt":
        return onnx_row
    return line(f"model.{precision}.engine") or {"accuracy": onnx_row.get("accuracy"), "latency": None}


__all__ = ["deployed_row", "longest_fidelity", "pareto", "plot", "train_winner", "trial_rows", "write_trials"]
