"""Result rows -> report entries: baselines, speed-ups, accuracy changes and the Pareto frontier.

Accuracy is the headline metric of each row's task (mIoU for semantic, mask AP for instance models,
from :mod:`edgeseg.tasks`): ``score`` holds it, ``figures`` the task's report columns.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.tasks import Task, get_task


@dataclass
class Entry:
    """One measured configuration with the figures a report shows."""

    row: dict[str, Any]
    device: str
    model: str
    precision: str
    backend: str
    threads: int | None
    batch: int
    artifact: str
    size_mb: float | None
    params: int | None
    gmacs: float | None
    p50_ms: float | None
    p90_ms: float | None
    throughput: float | None
    peak_mb: float | None
    images: int | None
    noisy: bool
    task: str = "semantic"
    score: float | None = None  # the task's headline metric (mIoU, mask AP)
    figures: dict[str, float | None] = field(default_factory=dict)  # the task's report columns by key
    e2e_p50_ms: float | None = None  # with the task's postprocess (instance models)
    speedup: float | None = None
    score_delta_points: float | None = None
    baseline: str = ""
    baseline_backend: str = ""  # set when the FP32 baseline ran on another backend (none on this one)
    pareto: bool = False
    notes: list[str] = field(default_factory=list)
    model_key: tuple[str, ...] = ()
    dataset: str = ""

    @property
    def label(self) -> str:
        return f"{self.model} {self.precision} ({self.backend})"


def _get(d: dict[str, Any] | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


# Constructor arguments that pick an exported graph's form, not the trained model (same weights, same
# outputs): SegNet's unpooling (``indices`` in the checkpoint, ``compare`` in ONNX, ``arith`` in .pte).
GRAPH_FORM_ARGS = frozenset({"unpool"})


def _model_key(row: dict[str, Any]) -> tuple[str, ...]:
    """Which trained model a row measured: architecture, recipe and constructor arguments (pruned shapes).

    Two recipes training the same architecture (or a pruned and an unpruned one) are different models:
    neither is the other's FP32 baseline. Rows written before the recipe was recorded fall back to
    their accuracy data, which names the stored recipe.
    """
    m = row.get("model") or {}
    model_args = {k: v for k, v in (m.get("model_args") or {}).items() if k not in GRAPH_FORM_ARGS}
    args = json.dumps(model_args, sort_keys=True, default=str)
    recipe = m.get("recipe_hash") or m.get("recipe") or _get(row, "accuracy", "data") or ""
    return (str(m.get("name") or row["artifact"]["name"]), str(recipe), args)


def _dataset(row: dict[str, Any]) -> str:
    """The accuracy data's fingerprint ('' without accuracy): mIoU compares only within one dataset."""
    acc = row.get("accuracy") or {}
    ds = acc.get("dataset") or {}
    return str(ds.get("hash") or (f"{acc.get('data')}:{acc.get('split')}" if acc else ""))


def row_task(row: dict[str, Any]) -> Task:
    """The task of a result row (rows written before tasks existed are semantic)."""
    return get_task(_get(row, "model", "task") or "semantic")


def to_entry(row: dict[str, Any]) -> Entry:
    """Flatten one result row."""
    size = _get(row, "artifact", "size_bytes")
    task = row_task(row)
    acc = row.get("accuracy") if isinstance(row.get("accuracy"), dict) else {}
    return Entry(model_key=_model_key(row), dataset=_dataset(row), task=task.name, score=acc.get(task.headline.key),
        figures={c.key: acc.get(c.key) for c in task.report_columns},
        e2e_p50_ms=_get(row, "latency_end_to_end", "p50_ms"),
        row=row, device=row.get("device_label") or row.get("device", "?"),
        model=_get(row, "model", "name") or row["artifact"]["name"],
        precision=row.get("precision") or _get(row, "artifact", "precision") or "?", backend=row["backend"],
        threads=row.get("threads"), batch=int(row.get("batch") or 1), artifact=row["artifact"]["name"],
        size_mb=size / 1e6 if size else None, params=_get(row, "model", "params"), gmacs=_get(row, "model", "gmacs"),
        p50_ms=_get(row, "latency", "p50_ms"), p90_ms=_get(row, "latency", "p90_ms"),
        throughput=_get(row, "latency", "throughput_ips"), peak_mb=_get(row, "memory", "peak_rss_mb"),
        images=_get(row, "accuracy", "num_images"), noisy=bool(row.get("noisy")))


def _baseline(e: Entry, entries: list[Entry]) -> Entry | None:
    """FP32 of the same model on the same device, threads and batch: same backend first, else any."""
    same = [b for b in entries if b.device == e.device and b.model_key == e.model_key and b.threads == e.threads
            and b.batch == e.batch and b.precision == "fp32" and b.p50_ms]
    for b in same:
        if b.backend == e.backend:
            return b
    return same[0] if same else None


def pareto_flags(entries: list[Entry]) -> None:
    """Mark entries no other entry beats on both latency (lower) and the task's headline score (higher), per
    device, batch, task and accuracy dataset (a score on other images, or another metric, is no rival)."""
    for e in entries:
        if e.p50_ms is None or e.score is None:
            continue
        rivals = [o for o in entries if o is not e and o.device == e.device and o.batch == e.batch
                  and o.task == e.task and o.dataset == e.dataset and o.p50_ms is not None and o.score is not None]
        e.pareto = not any(o.p50_ms <= e.p50_ms and o.score >= e.score and (o.p50_ms < e.p50_ms or o.score > e.score)
                           for o in rivals)


def build_entries(rows: list[dict[str, Any]]) -> tuple[list[Entry], list[dict[str, Any]]]:
    """Entries of the measured rows (with baselines and Pareto marks) and the rows that failed."""
    failed = [r for r in rows if r.get("error")]
    entries = [to_entry(r) for r in rows if not r.get("error")]
    _qualify_artifacts(entries)
    for e in entries:
        base = _baseline(e, entries)
        if base is not None and e.p50_ms:
            e.speedup = base.p50_ms / e.p50_ms
            e.baseline = base.artifact + ("" if base.backend == e.backend else f" on {base.backend}")
            e.baseline_backend = "" if base.backend == e.backend else base.backend
            if base.score is not None and e.score is not None:
                e.score_delta_points = (e.score - base.score) * 100
        if e.noisy:
            e.notes.append(str(_get(e.row, "latency", "noise_reason") or "noisy"))
    pareto_flags(entries)
    _disambiguate(entries)
    return entries, failed


def _qualify_artifacts(entries: list[Entry]) -> None:
    """Files of one model with the same name in different folders (a run's 1_train/model.pt and its pruned
    2_prune/model.pt, 3_quantize/ and 4_export/ INT8 files) are named with their folder."""
    paths: dict[tuple[str, str], set[str]] = {}
    for e in entries:
        paths.setdefault((e.model, e.artifact), set()).add(str(_get(e.row, "artifact", "path") or ""))
    for e in entries:
        if len(paths[(e.model, e.artifact)]) > 1:
            e.artifact = f"{Path(str(_get(e.row, 'artifact', 'path'))).parent.name}/{e.artifact}"


def _stored_recipe_name(text: str) -> str:
    """'quickstart' from "stored recipe 'quickstart' (synthetic)" (the accuracy data of older rows)."""
    return text.split("'")[1] if text.startswith("stored recipe '") and text.count("'") >= 2 else ""


def _disambiguate(entries: list[Entry]) -> None:
    """Name models apart when one architecture name covers several trained models (recipes, pruned args)."""
    keys: dict[str, set[tuple[str, ...]]] = {}
    for e in entries:
        keys.setdefault(e.model, set()).add(e.model_key)
    for e in entries:
        if len(keys[e.model]) < 2:
            continue
        recipe = _get(e.row, "model", "recipe") or _stored_recipe_name(e.model_key[1]) or e.model_key[1][:8] or "?"
        same_recipe = {k for k in keys[e.model] if k[1] == e.model_key[1]}
        digest = hashlib.sha256(e.model_key[2].encode()).hexdigest()[:6]
        suffix = f", args {digest}" if len(same_recipe) > 1 else ""
        e.model = f"{e.model} [{recipe}{suffix}]"


def by_device(entries: list[Entry]) -> dict[str, list[Entry]]:
    """Entries grouped per device, each group sorted by model, then latency."""
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.device, []).append(e)
    return {d: sorted(g, key=lambda e: (e.model, e.threads or 0, e.batch, e.p50_ms or 0)) for d, g in groups.items()}


def task_order(names: set[str] | None = None) -> list[str]:
    """Task names (all known ones by default) in the order a report shows them (the task's ``report_rank``)."""
    from edgeseg.catalog import TASKS

    return sorted(TASKS if names is None else names, key=lambda t: (get_task(t).report_rank, t))


def by_task(entries: list[Entry]) -> dict[str, list[Entry]]:
    """Entries grouped per task in :func:`task_order`, order kept within a task."""
    groups: dict[str, list[Entry]] = {}
    rank = {t: i for i, t in enumerate(task_order({e.task for e in entries}))}
    for e in sorted(entries, key=lambda e: rank[e.task]):
        groups.setdefault(e.task, []).append(e)
    return groups


def score_label(entries: list[Entry]) -> str:
    """The headline metric's name: 'mIoU', 'mask AP', or both when tasks are mixed."""
    tasks = task_order({e.task for e in entries}) or task_order()[:1]
    return " or ".join(get_task(t).headline.label for t in tasks)


def side_by_side(groups: dict[str, list[Entry]]) -> tuple[list[str], list[list[str]]]:
    """One row per artifact (model, file, precision, backend), one column per device: the best p50 over
    thread settings at batch 1 (else the smallest batch measured), and the task's headline score there."""
    devices = list(groups)
    best: dict[tuple[str, str, str, str], dict[str, Entry]] = {}
    for device, entries in groups.items():
        timed = [e for e in entries if e.p50_ms]
        for e in timed:
            same = [o for o in timed if (o.model, o.artifact, o.backend) == (e.model, e.artifact, e.backend)]
            smallest = min(o.batch for o in same)
            if e.batch != smallest:
                continue
            slot = best.setdefault((e.model, e.artifact, e.precision, e.backend), {})
            if device not in slot or e.p50_ms < slot[device].p50_ms:  # type: ignore[operator]
                slot[device] = e
    label = score_label([e for g in groups.values() for e in g])
    headers = ["model", "artifact", "precision", "backend"] + [f"{d}: p50 ms (threads, batch) / {label}"
                                                               for d in devices]
    rows = []
    for key in sorted(best):
        cells = list(key)
        for d in devices:
            e = best[key].get(d)
            cells.append("–" if e is None else
                         f"{'~' if e.noisy else ''}{e.p50_ms:.2f} ({e.threads or 'default'}, {e.batch}) / "
                         + ("–" if e.score is None else f"{e.score:.4f}"))
        rows.append(cells)
    return headers, rows
