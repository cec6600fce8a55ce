"""Which candidate prune writes, and the figures that say how it compares with the start.

Candidates: the unpruned start, the pruned model and each fine-tuning epoch, each validated (the
task's own figures) and timed (the epochs share the pruned model's graph, so its latency is theirs).

* Size targets (``ratio``, ``target_macs``): the start never meets them; the candidate written is the
  most accurate of the pruned model and its fine-tuning epochs (the training loop keeps it), faster or
  slower than the start, which the output and ``prune.json`` say.
* A latency target: a candidate must meet it and be no slower than the start. A start that already
  meets it is written unchanged (not pruned), so ``edgeseg run``'s later stages still find a model.
"""

from __future__ import annotations

from typing import Any

from edgeseg.compress.prune_config import PruneError
from edgeseg.recipe import PruneCfg

GEOMETRY = ("params", "macs", "latency_ms")


def speed_phrase(before_ms: float | None, after_ms: float | None) -> str:
    """``1.22x faster`` or ``1.22x slower`` than the start (never a ratio below 1 called faster)."""
    if before_ms is None or after_ms is None:
        return "latency not measured"
    ratio = before_ms / after_ms
    return f"{ratio:.2f}x faster" if ratio >= 1.0 else f"{1.0 / ratio:.2f}x slower"


def meets_target(cfg: PruneCfg, row: dict[str, Any], start: dict[str, Any]) -> bool:
    """Whether a measured candidate meets ``cfg``'s target (a latency target: at most the target and no
    slower than the start)."""
    if cfg.mode == "latency":
        lat = row.get("latency_ms")
        return lat is not None and lat <= cfg.target_latency_ms and (row is start or lat <= start["latency_ms"])
    if cfg.mode == "macs":
        return row["macs"] <= cfg.target_macs * start["macs"]
    return row["macs"] < start["macs"]


def check_shippable(cfg: PruneCfg, row: dict[str, Any], start: dict[str, Any]) -> None:
    """Refuse, in one line naming the measurements, a candidate that misses a latency target or is slower
    than the start it was pruned from."""
    if cfg.mode != "latency" or meets_target(cfg, row, start):
        return
    raise PruneError(f"pruned model measured {row['latency_ms']:.2f} ms against {start['latency_ms']:.2f} ms "
                     f"unpruned ({speed_phrase(start['latency_ms'], row['latency_ms'])}), target "
                     f"{cfg.target_latency_ms:g} ms; nothing written")


def candidates(cfg: PruneCfg, start: dict[str, Any], pruned: dict[str, Any] | None,
               epochs: list[dict[str, Any]], chosen: str) -> list[dict[str, Any]]:
    """Every candidate's measurements, whether it meets the target, and which one was written."""
    rows = [{"name": "start", **_measured(start)}]
    if pruned is not None:
        rows.append({"name": "pruned", **_measured(pruned)})
        shared = {k: pruned[k] for k in GEOMETRY if k in pruned}
        rows += [{"name": f"epoch {e['epoch']}", **shared, "val": e["val"]} for e in epochs]
    for row in rows:
        row["meets_target"] = meets_target(cfg, row, start)
        row["chosen"] = row["name"] == chosen
    return rows


def _measured(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in (*GEOMETRY, "val") if k in row}


def figures(task: Any, before: dict[str, Any], pruned: dict[str, Any], after: dict[str, Any],
            decision: str) -> dict[str, Any]:
    """prune.json's figures: before/after, ratios, speed against the start, accuracy change in points."""
    lat_b, lat_a = before.get("latency_ms"), after.get("latency_ms")
    if after is before:  # written unchanged: no comparison to make
        lat_b = lat_a = None
    out = {"before": before, "pruned": pruned, "after": after, "decision": decision,
           "macs_ratio": after["macs"] / before["macs"], "params_ratio": after["params"] / before["params"],
           "speedup": lat_b / lat_a if lat_b and lat_a else None,
           "faster": lat_a <= lat_b if lat_b and lat_a else None,
           "speed": "unchanged" if after is before else speed_phrase(lat_b, lat_a)}
    if "val" in before and "val" in after:  # the task's own figures: mIoU and Dice, or mask AP
        for col in task.columns:
            b, a = before["val"].get(col.key), after["val"].get(col.key)
            if isinstance(b, (int, float)) and isinstance(a, (int, float)):
                out[f"{col.key}_drop_points"] = 100 * (b - a)
    return out


__all__ = ["candidates", "check_shippable", "figures", "meets_target", "speed_phrase"]
