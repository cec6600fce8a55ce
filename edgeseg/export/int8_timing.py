"""Is INT8 faster than FP32 here? Paired rounds, and on a busy machine a confidence interval.

Each round times FP32 and INT8 back to back (alternating which goes first), so a load change hits
both; the round's figure is the ratio FP32 / INT8. On a quiet machine a couple of rounds decide. When
another process competes for the cores the ratio can swing either way (a busy 2-core machine once
made a 0.81x INT8 look 1.37x faster), so rounds continue, up to a bound, until the 95% confidence
interval of the ratio excludes 1; if it never does, INT8 is not shipped ("undecided on a busy
machine"). The record of how sure the decision is goes into export.json.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_ROUNDS = 10  # bound on a busy machine (each round is two short latency runs)
BUDGET_S = 90.0
# Two-sided 95% Student t quantiles by degrees of freedom (stdlib has no t distribution).
_T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
         12: 2.18, 15: 2.13, 20: 2.09, 30: 2.04}


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (conservative between table rows)."""
    if df >= 60:
        return 1.96
    return _T975[max(k for k in _T975 if k <= df)] if df >= 1 else math.inf


@dataclass
class RatioSamples:
    """FP32/INT8 latency ratios of paired rounds, and whether any round saw other processes' load."""

    ratios: list[float] = field(default_factory=list)
    busy: str = ""

    def ci95(self) -> tuple[float, float] | None:
        """95% interval of the geometric-mean ratio (t interval on log ratios); None below 2 rounds."""
        n = len(self.ratios)
        if n < 2:
            return None
        logs = [math.log(r) for r in self.ratios]
        mean = sum(logs) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (n - 1))
        half = t975(n - 1) * sd / math.sqrt(n)
        return math.exp(mean - half), math.exp(mean + half)

    def geomean(self) -> float | None:
        """Geometric mean of the FP32/INT8 ratios: the speed-up the paired rounds measured."""
        if not self.ratios:
            return None
        return math.exp(sum(math.log(r) for r in self.ratios) / len(self.ratios))

    def excludes_one(self) -> bool:
        ci = self.ci95()
        return ci is not None and (ci[0] > 1.0 or ci[1] < 1.0)


def sample_ratios(round_fn: Callable[[int], tuple[float, float, str]], *, min_rounds: int,
                  max_rounds: int = MAX_ROUNDS, budget_s: float = BUDGET_S) -> RatioSamples:
    """Run ``round_fn(i) -> (fp32_ms, int8_ms, contention)`` at least ``min_rounds`` times; once a round
    saw contention, keep going until the interval excludes 1, ``max_rounds`` or ``budget_s``."""
    samples = RatioSamples()
    t0 = time.perf_counter()
    i = 0
    while True:
        fp32_ms, int8_ms, busy = round_fn(i)
        samples.ratios.append(fp32_ms / int8_ms if int8_ms > 0 else math.inf)
        samples.busy = samples.busy or busy
        i += 1
        if i < min_rounds:
            continue
        if not samples.busy or samples.excludes_one() or i >= max_rounds or time.perf_counter() - t0 > budget_s:
            return samples


def busy_decision(samples: RatioSamples, figures: str,
                  rejected_name: str = "model.int8.rejected.onnx") -> tuple[bool, str, dict[str, Any]]:
    """``int8_policy: auto`` on a busy machine: ship only when the whole interval says INT8 is faster."""
    ci = samples.ci95()
    record: dict[str, Any] = {"rounds": len(samples.ratios), "ratios": [round(r, 4) for r in samples.ratios],
                              "ratio_ci95": [round(v, 4) for v in ci] if ci else None, "busy": samples.busy}
    where = f"{len(samples.ratios)} paired rounds on a busy machine ({samples.busy})"
    # the headline is the paired ratio the decision rests on; best-of-rounds p50s (``figures``) can
    # disagree with it under load, so they follow, named as what they are
    paired = f"speed-up {samples.geomean():.2f}x (geometric mean" if samples.ratios else "no ratio ("
    if ci is not None and ci[0] > 1.0:
        record["certainty"] = "95% interval above 1"
        return True, (f"faster than FP32 on this machine: {paired}, 95% CI {ci[0]:.2f}-{ci[1]:.2f} over {where}); "
                      f"best of rounds {figures}"), record
    if ci is not None and ci[1] < 1.0:
        record["certainty"] = "95% interval below 1"
        return False, (f"not faster than FP32 on this machine: {paired}, 95% CI {ci[0]:.2f}-{ci[1]:.2f} over "
                       f"{where}); best of rounds {figures}; kept as {rejected_name}"), record
    record["certainty"] = "undecided"
    span = f"ratio 95% CI {ci[0]:.2f}-{ci[1]:.2f}" if ci else "a single round"
    return False, (f"not shipped: undecided on a busy machine ({span} includes 1 after {where}); {figures}; "
                   f"kept as {rejected_name}: re-export on a quiet machine, or int8_policy=always"), record


__all__ = ["MAX_ROUNDS", "RatioSamples", "busy_decision", "sample_ratios", "t975"]
