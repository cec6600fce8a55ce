"""Result rows -> report entries: baselines, speed-ups, accuracy changes and the Pareto frontier."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    miou: float | None
    dice: float | None
    images: int | None
    noisy: bool
    speedup: float | None = None
    miou_delta_points: float | None = None
    baseline: str = ""
    pareto: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.model} {self.precision} ({self.backend})"


def _get(d: dict[str, Any] | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def to_entry(row: dict[str, Any]) -> Entry:
    """Flatten one result row."""
    size = _get(row, "artifact", "size_bytes")
    return Entry(
        row=row, device=row.get("device_label") or row.get("device", "?"),
        model=_get(row, "model", "name") or row["artifact"]["name"],
        precision=row.get("precision") or _get(row, "artifact", "precision") or "?", backend=row["backend"],
        threads=row.get("threads"), batch=int(row.get("batch") or 1), artifact=row["artifact"]["name"],
        size_mb=size / 1e6 if size else None, params=_get(row, "model", "params"), gmacs=_get(row, "model", "gmacs"),
        p50_ms=_get(row, "latency", "p50_ms"), p90_ms=_get(row, "latency", "p90_ms"),
        throughput=_get(row, "latency", "throughput_ips"), peak_mb=_get(row, "memory", "peak_rss_mb"),
        miou=_get(row, "accuracy", "miou"), dice=_get(row, "accuracy", "mean_dice"),
        images=_get(row, "accuracy", "num_images"), noisy=bool(row.get("noisy")))


def _baseline(e: Entry, entries: list[Entry]) -> Entry | None:
    """FP32 of the same model on the same device, threads and batch: same backend first, else any."""
    same = [b for b in entries if b.device == e.device and b.model == e.model and b.threads == e.threads
            and b.batch == e.batch and b.precision == "fp32" and b.p50_ms]
    for b in same:
        if b.backend == e.backend:
            return b
    return same[0] if same else None


def pareto_flags(entries: list[Entry]) -> None:
    """Mark entries no other entry beats on both latency (lower) and mIoU (higher), per device and batch."""
    for e in entries:
        if e.p50_ms is None or e.miou is None:
            continue
        rivals = [o for o in entries if o is not e and o.device == e.device and o.batch == e.batch
                  and o.p50_ms is not None and o.miou is not None]
        e.pareto = not any(o.p50_ms <= e.p50_ms and o.miou >= e.miou and (o.p50_ms < e.p50_ms or o.miou > e.miou)
                           for o in rivals)


def build_entries(rows: list[dict[str, Any]]) -> tuple[list[Entry], list[dict[str, Any]]]:
    """Entries of the measured rows (with baselines and Pareto marks) and the rows that failed."""
    failed = [r for r in rows if r.get("error")]
    entries = [to_entry(r) for r in rows if not r.get("error")]
    for e in entries:
        base = _baseline(e, entries)
        if base is not None and e.p50_ms:
            e.speedup = base.p50_ms / e.p50_ms
            e.baseline = base.artifact + ("" if base.backend == e.backend else f" on {base.backend}")
            if base.miou is not None and e.miou is not None:
                e.miou_delta_points = (e.miou - base.miou) * 100
        if e.noisy:
            e.notes.append(str(_get(e.row, "latency", "noise_reason") or "noisy"))
    pareto_flags(entries)
    return entries, failed


def by_device(entries: list[Entry]) -> dict[str, list[Entry]]:
    """Entries grouped per device, each group sorted by model, then latency."""
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.device, []).append(e)
    return {d: sorted(g, key=lambda e: (e.model, e.threads or 0, e.batch, e.p50_ms or 0)) for d, g in groups.items()}
