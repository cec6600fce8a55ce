"""The `edgeseg optimize` benchmark against a recipe's hand-made models, shared by optimize_membrane and
optimize_nuclei (issue 20): a :class:`Spec` names the recipe, its own model, the budget ratio and the
metric; :func:`main` runs the steps.

1. Latency first, in this run: every architecture of the recipe's default space built untrained, exported
   and timed on ONNX Runtime CPU, each file in 3 rounds of alternating order (lowest p50). The budget is
   ``ratio`` x the recipe's own model's FP32 latency from the same rounds (`--budget 0.5x`, `0.6x`).
2. (not with --latency-only) `edgeseg optimize --budget RATIOx` within --time; the winner is re-measured on
   its final artifact in alternation with the own model's file (the budget's ratio, paired), its metric on
   the whole val split compared with the own model trained as the recipe ships it, and the hand-made
   variants and their pruned forms (`edgeseg prune --ratio 0.25 --finetune-epochs N [--distill]`), FP32 and
   INT8 (trainings already in OUT reused), timed again beside the winner and placed against the Pareto front.

Started as ``python -m benchmarks.optimize_membrane`` or ``python -m benchmarks.optimize_nuclei``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.record import LIBRARIES, ROOT, parse_options, write_results
from edgeseg import catalog
from edgeseg.bench.core import usable_cores as cpu_cores
from edgeseg.recipe import load_recipe, parse_duration


@dataclass(frozen=True)
class Spec:
    """One benchmark: the recipe, its own model and what the winner must reach against it."""

    name: str                       # results stem, e.g. optimize_membrane
    recipe: Path
    own: str                        # the recipe's own model variant (the budget's reference)
    own_file: str                   # its FP32 candidate file at the timed size
    ratio: float                    # budget = ratio x the own FP32 latency
    metric: str                     # accuracy key of the winner's criterion (bench accuracy, trial fidelities)
    metric_label: str
    points: float                   # the winner's metric must be within this many points of the own model's
    hand_made: tuple[str, ...]      # variants trained as the recipe ships them (model.name overrides)
    size: int                       # timed input side
    finetune_epochs: int            # fine-tuning of the hand-made pruned forms (about a quarter of the recipe's)
    prune_ratios: tuple[float, ...] = (0.25,)  # the hand-made pruned forms (the space's ratios)
    distill: bool = True            # their fine-tuning distils from the unpruned model (semantic tasks only)
    overrides: tuple[str, ...] = ()  # recipe overrides of the study's steps (e.g. the timed input side)


def latency_first(spec: Spec, out: Path, threads: int, overrides: list[str]) -> dict[str, Any]:
    """Build and time the default space (each file in rounds of alternating order, the lowest p50); the
    budget is ``spec.ratio`` x the own model's FP32 latency from the same rounds (what `--budget Rx` computes)."""
    from edgeseg.optimize import optimize
    from edgeseg.optimize.latency import measure_here, model_figures
    from edgeseg.recipe import OptimizeCfg

    recipe = load_recipe(spec.recipe, [*spec.overrides, *overrides])
    t0 = time.perf_counter()
    optimize(recipe, out, plan=True, threads=threads)
    plan = json.loads((out / "plan.json").read_text())
    p50 = measure_here(out, plan, recipe.bench, print, (recipe.optimize or OptimizeCfg()).latency_rounds)
    budget = p50[spec.own_file] * spec.ratio
    figures = model_figures(out / "latency.jsonl")
    forms = [{"file": name, "p50_ms": ms, **figures.get(name, {}), "fits": ms <= budget}
             for name, ms in sorted(p50.items(), key=lambda kv: kv[1])]
    lines = [json.loads(x) for x in (out / "latency.jsonl").read_text().splitlines() if x.strip()]
    loads = [r.get("load_avg_1m") or 0.0 for r in lines]
    quiet = {"noisy_lines": sum(bool(r.get("noisy")) for r in lines), "lines": len(lines),
             "load_avg_1m": [min(loads), max(loads)]}
    return {"own_fp32_ms": p50[spec.own_file], "budget_ms": budget, "forms": forms, "noise": quiet,
            "fitting_forms": sum(f["fits"] for f in forms), "seconds": round(time.perf_counter() - t0, 1)}


def predicted_vs_trained(spec: Spec, out: Path, trained: Path, threads: int) -> dict[str, Any]:
    """Latency before training vs after: the untrained own-model candidate file and a trained checkpoint of
    it exported at the timed size, timed in alternating rounds (a paired measurement)."""
    from edgeseg.export import export
    from edgeseg.optimize.latency import time_alternating

    doc = export(trained, out / "trained_own", formats=["onnx"], precisions=["fp32"],
                 overrides=[f"data.image_size={spec.size}"])
    files = [out / "candidates" / spec.own_file, Path(doc["artifacts"][0]["path"])]
    p50 = time_alternating(files, out / "predicted_vs_trained.jsonl", "onnxruntime", threads, None)
    return {"trained_checkpoint": str(trained), "untrained_p50_ms": p50[0], "trained_p50_ms": p50[1],
            "ratio": p50[1] / p50[0]}


def hand_made(spec: Spec, out: Path, threads: int) -> list[dict[str, Any]]:
    """Each hand-made variant trained as the recipe ships it, and its pruned forms as a user makes them by
    hand (`edgeseg prune --ratio R --finetune-epochs N [--distill]`), exported FP32 + INT8 at the timed size and
    benched with their accuracy on the whole val split. Trainings and prunings already in OUT are reused
    (the recipe as shipped is deterministic)."""
    from edgeseg.train import train

    points = []
    for name in spec.hand_made:
        run = out / "hand_made" / name
        if (run / "train" / catalog.FILES.model).is_file():
            print(f"hand-made {name}: reusing {run / 'train'}")
        else:
            train(spec.recipe, run / "train", overrides=[f"model.name={name}"])
        points += _export_and_bench(spec, run, run / "train" / catalog.FILES.model, name, threads)
        for ratio in spec.prune_ratios:
            pruned = run / f"pruned{ratio:g}"
            if not (pruned / catalog.FILES.model).is_file():
                _prune_by_hand(spec, run / "train" / catalog.FILES.model, pruned, ratio)
            points += _export_and_bench(spec, pruned, pruned / catalog.FILES.model, f"{name} pruned {ratio:g}",
                                        threads)
    return points


def _prune_by_hand(spec: Spec, checkpoint: Path, out: Path, ratio: float) -> None:
    from edgeseg.compress.prune import prune
    from edgeseg.recipe import PruneCfg

    cfg = PruneCfg(ratio=ratio, finetune_epochs=spec.finetune_epochs, distill=spec.distill)
    prune(checkpoint, out, cfg, measure_latency=False)


def _export_and_bench(spec: Spec, run: Path, checkpoint: Path, label: str, threads: int) -> list[dict[str, Any]]:
    from edgeseg.bench import benchmark
    from edgeseg.export import export

    doc = export(checkpoint, run / "export", precisions=["fp32", "int8"], overrides=[f"data.image_size={spec.size}"])
    files = [a["path"] for a in doc["artifacts"] if a["format"] == "onnx"]  # INT8 benched even where not shipped
    points = []
    for r in benchmark(files, out=run / "bench.jsonl", backends=["onnxruntime"], threads=[threads]):
        acc = r.get("accuracy") or {}
        points.append({"model": label, "file": Path(r["artifact"]["path"]).name, "path": r["artifact"]["path"],
                       "p50_ms": (r.get("latency") or {}).get("p50_ms"), "metric": acc.get(spec.metric),
                       "images": acc.get("num_images")})
    return points


def paired_latency(out: Path, hand: list[dict[str, Any]], doc: dict[str, Any], threads: int) -> dict[str, Any]:
    """The winner's final file and every hand-made file timed again together, in alternating rounds: the
    latencies the front is compared on (one measurement, so a drifting machine moves all of them alike)."""
    from edgeseg.optimize.latency import time_alternating

    files = [Path(doc["final_artifact"]), *(Path(h["path"]) for h in hand)]
    p50 = time_alternating(files, out / "paired_latency.jsonl", "onnxruntime", threads, None)
    for h, ms in zip(hand, p50[1:]):
        h["p50_ms"] = ms
    return {"method": "edgeseg.optimize.latency.time_alternating (3 rounds, alternating order, lowest p50)",
            "winner_final_ms": p50[0], "files": {str(f): ms for f, ms in zip(files, p50)}}


def front_against_hand_made(spec: Spec, out: Path, hand: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """The study's Pareto front (latency, metric) against each hand-made point: a point is covered when a
    front point is at least as fast and at least as accurate. Trial points: latency measured before training,
    best metric over their fidelities; the winner: latency and metric of its final artifact."""
    rows = [json.loads(x) for x in (out / "trials.jsonl").read_text().splitlines() if x.strip()]
    pts = [{"name": r["candidate"], "p50_ms": r["latency_ms"],
            "metric": max(f.get(spec.metric, float("nan")) for f in r["fidelities"])}
           for r in rows if r.get("fidelities") and r.get("latency_ms")]
    final = doc.get("final_accuracy") or {}
    if doc.get("final_latency_ms") and spec.metric in final:
        pts.append({"name": f"winner {doc['candidate']} (final)", "p50_ms": doc["final_latency_ms"],
                    "metric": final[spec.metric]})
    front = [p for p in pts if not any(q["p50_ms"] <= p["p50_ms"] and q["metric"] >= p["metric"] and q != p
                                       and (q["p50_ms"], q["metric"]) != (p["p50_ms"], p["metric"]) for q in pts)]
    checks = []
    for h in hand:
        if h["p50_ms"] is None or h["metric"] is None:
            continue
        by = [p["name"] for p in front if p["p50_ms"] <= h["p50_ms"] and p["metric"] >= h["metric"]]
        checks.append({**h, "covered_by": by})
    return {"front": sorted(front, key=lambda p: p["p50_ms"]), "hand_made": checks}


def study_time(out: Path) -> dict[str, Any]:
    """The study's training time read from OUT (a rerun that reuses the finished study reports it too):
    the trials' seconds and the winner's training."""
    rows = [json.loads(x) for x in (out / "trials.jsonl").read_text().splitlines() if x.strip()]
    train = out / "winner" / "1_train" / "train.json"
    winner = json.loads(train.read_text())["figures"].get("train_seconds") if train.is_file() else None
    return {"trials": len(rows), "trial_seconds": round(sum(r.get("seconds") or 0 for r in rows), 1),
            "winner_train_seconds": winner}


def markdown(spec: Spec, result: dict[str, Any], threads: int) -> str:
    """The latency table, the before/after-training line when measured and the optimize summary when run."""
    lat = result["latency_first"]
    rows = "\n".join(f"| {f['file']} | {f['p50_ms']:.2f} | {f.get('params') or '-'} | {f.get('gmacs') or '-'} | "
                     f"{'yes' if f['fits'] else 'no'} |" for f in lat["forms"])
    md = (f"# {spec.name} (ONNX Runtime CPU, {threads} threads, {spec.size}x{spec.size})\n\n"
          f"{spec.own} FP32: {lat['own_fp32_ms']:.2f} ms; budget ({spec.ratio:g}x): {lat['budget_ms']:.2f} ms; "
          f"{lat['fitting_forms']} of {len(lat['forms'])} forms fit; this run's latency phase {lat['seconds']} s "
          "(files and lines already in OUT reused); "
          f"{lat['noise']['noisy_lines']} of {lat['noise']['lines']} bench lines flagged noisy (1-min load average "
          f"{lat['noise']['load_avg_1m'][0]:.1f}-{lat['noise']['load_avg_1m'][1]:.1f} on {cpu_cores()} cores).\n\n"
          "| form (untrained) | p50 ms | params | GMACs | fits |\n|---|---|---|---|---|\n" + rows + "\n")
    if "predicted_vs_trained" in result:
        pv = result["predicted_vs_trained"]
        md += (f"\nLatency before training predicts the trained artifact: untrained {spec.own} "
               f"{pv['untrained_p50_ms']:.2f} ms vs trained {pv['trained_p50_ms']:.2f} ms (ratio {pv['ratio']:.3f}, "
               "3 rounds in alternation, lowest p50).\n")
    if "optimize" in result:
        opt = result["optimize"]
        st = result.get("study_time") or {}
        md += (f"\n## The study ({st.get('trials', '?')} trials: {st.get('trial_seconds', 0) / 60:.0f} min of training, "
               f"the winner's training {(st.get('winner_train_seconds') or 0) / 60:.0f} min; this process "
               f"{opt['seconds'] / 60:.0f} min)\n\n{opt['summary']}\n")
        md += _comparison(spec, result)
    return md


def _comparison(spec: Spec, result: dict[str, Any]) -> str:
    """The winner against the own model as shipped, and the front against every hand-made point."""
    opt, hand, front = result["optimize"], result.get("hand_made") or [], result.get("front") or {}
    own = next((h for h in hand if h["model"] == spec.own and ".int8" not in h["file"]), None)
    acc = (opt.get("final_accuracy") or {})
    md = ""
    if own and acc.get(spec.metric) is not None and own["metric"] is not None:
        gap = 100 * (acc[spec.metric] - own["metric"])
        t = opt.get("final_timing") or {}
        md += (f"\nWinner on its final artifact: {t.get('winner_final_ms', float('nan')):.2f} ms, "
               f"{t.get('ratio_to_own', float('nan')):.3f}x {spec.own}'s file timed in alternation with it "
               f"({t.get('method', '')}): the {spec.ratio:g}x budget is {'met' if opt.get('budget_met') else 'NOT met'}; "
               f"trained vs untrained winner file {t.get('trained_vs_untrained', float('nan')):.3f}; "
               f"{spec.metric_label} {acc[spec.metric]:.4f} on the whole val split ({acc.get('num_images', '?')} images); "
               f"{spec.own} as the recipe ships it: {spec.metric_label} {own['metric']:.4f} ({own.get('images', '?')} "
               f"images; {gap:+.2f} points; the target is within {spec.points:g} points: "
               f"{'met' if gap >= -spec.points - 1e-9 else 'not met'}).\n")
    if front:
        md += f"\n| Pareto front point | p50 ms | {spec.metric_label} |\n|---|---|---|\n" + "\n".join(
            f"| {p['name']} | {p['p50_ms']:.2f} | {p['metric']:.4f} |" for p in front["front"]) + "\n"
        md += (f"\n| hand-made (trained as shipped) | p50 ms | {spec.metric_label} | covered by the front |\n"
               "|---|---|---|---|\n")
        md += "\n".join(f"| {h['file']} ({h['model']}) | {h['p50_ms']:.2f} | {h['metric']:.4f} | "
                        f"{', '.join(h['covered_by']) or 'no'} |" for h in front["hand_made"]) + "\n"
    return md


def _options(spec: Spec, argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=spec.name, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", default="2h")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / ".runs" / spec.name)
    ap.add_argument("--latency-only", action="store_true", help="only step 1 (no training)")
    ap.add_argument("--trained", type=Path, default=None,
                    help=f"a trained {spec.own} model.pt: time it beside its untrained candidate file (default after "
                         f"a study: the hand-made {spec.own})")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for the study (e.g. optimize.proxy_time=4m)")
    return parse_options(ap, spec.name, argv, quick="step 1 only (no training), results not committed")


def main(spec: Spec, argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark of ``spec`` (steps in the module docstring) and write its results."""
    args = _options(spec, argv)
    result: dict[str, Any] = {"threads": args.threads, "spec": {k: str(v) for k, v in vars(spec).items()}}
    result["latency_first"] = latency_first(spec, args.out, args.threads, args.overrides)
    trained = args.trained
    if not (args.latency_only or args.quick):
        from edgeseg.optimize import optimize

        t0 = time.perf_counter()
        doc = optimize(spec.recipe, args.out, budget_ratio=spec.ratio, time_s=parse_duration(args.time, "--time"),
                       threads=args.threads, overrides=[*spec.overrides, *args.overrides])
        result["optimize"] = {**doc, "seconds": round(time.perf_counter() - t0, 1)}
        result["study_time"] = study_time(args.out)
        result["hand_made"] = hand_made(spec, args.out, args.threads)
        result["paired_latency"] = paired_latency(args.out, result["hand_made"], doc, args.threads)
        doc = {**doc, "final_latency_ms": result["paired_latency"]["winner_final_ms"]}  # the front's one measurement
        result["front"] = front_against_hand_made(spec, args.out, result["hand_made"], doc)
        trained = trained or args.out / "hand_made" / spec.own / "train" / catalog.FILES.model
    if trained is not None:
        result["predicted_vs_trained"] = predicted_vs_trained(spec, args.out, trained, args.threads)
    write_results(args.results, result, markdown(spec, result, args.threads), libraries=(*LIBRARIES, "optuna"))
    return result
