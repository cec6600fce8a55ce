"""`edgeseg optimize` on the ISBI 2012 membranes against the hand-made lite models (issue 20).

Usage: python -m benchmarks.optimize_membrane [--time 2h] [--threads 2] [--out benchmarks/.runs/optimize_membrane]
                                             [--latency-only] [--trained RUN/model.pt] [--quick]

1. Latency first, in this run: every architecture of the default space (unet-lite / segnet-lite /
   fcn-lite x widths 0.5, 0.75, 1 x prune ratios 0, 0.25 x FP32 / INT8) built untrained, exported and
   timed on ONNX Runtime CPU (2 threads, 256x256), each file in 3 rounds of alternating order (lowest
   p50). The budget is half of unet-lite's FP32 latency from the same rounds (`--budget 0.5x`).
2. (not with --latency-only) `edgeseg optimize --budget 0.5x` within --time; the winner is re-measured on
   its final artifact in alternation with unet-lite's file (the budget's ratio, paired), its mean Dice on
   the whole val split compared with unet-lite trained as the recipe ships it, and the hand-made lite
   variants (FP32 and INT8; a training already in OUT is reused) timed again beside the winner and placed
   against the Pareto front.

``--quick``: step 1 only (as --latency-only), results under benchmarks/.runs/quick: a smoke run of the
script, not results. Writes benchmarks/results/optimize_membrane.{json,md} (benchmarks.record).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.record import LIBRARIES, ROOT, parse_options, write_results
from edgeseg import catalog
from edgeseg.bench.core import usable_cores as cpu_cores
from edgeseg.recipe import load_recipe, parse_duration

RECIPE = ROOT / "recipes" / "membrane_unet_lite.yaml"
HAND_MADE = ("unet-lite", "segnet-lite", "fcn-lite")


def latency_first(out: Path, threads: int, overrides: list[str]) -> dict[str, Any]:
    """Build and time the default space (each file in rounds of alternating order, the lowest p50); the
    budget is half of unet-lite's FP32 latency from the same rounds (what `--budget 0.5x` computes)."""
    from edgeseg.optimize import optimize
    from edgeseg.optimize.latency import measure_here, model_figures
    from edgeseg.recipe import OptimizeCfg

    recipe = load_recipe(RECIPE, overrides)
    t0 = time.perf_counter()
    optimize(recipe, out, plan=True, threads=threads)
    plan = json.loads((out / "plan.json").read_text())
    p50 = measure_here(out, plan, recipe.bench, print, (recipe.optimize or OptimizeCfg()).latency_rounds)
    own = "unet-lite-w1-d4-p0-s256.fp32.onnx"
    budget = p50[own] / 2
    figures = model_figures(out / "latency.jsonl")
    forms = [{"file": name, "p50_ms": ms, **figures.get(name, {}), "fits": ms <= budget}
             for name, ms in sorted(p50.items(), key=lambda kv: kv[1])]
    lines = [json.loads(x) for x in (out / "latency.jsonl").read_text().splitlines() if x.strip()]
    loads = [r.get("load_avg_1m") or 0.0 for r in lines]
    quiet = {"noisy_lines": sum(bool(r.get("noisy")) for r in lines), "lines": len(lines),
             "load_avg_1m": [min(loads), max(loads)]}
    return {"unet_lite_fp32_ms": p50[own], "budget_ms": budget, "forms": forms, "noise": quiet,
            "fitting_forms": sum(f["fits"] for f in forms), "seconds": round(time.perf_counter() - t0, 1)}


def predicted_vs_trained(out: Path, trained: Path, threads: int) -> dict[str, Any]:
    """Latency before training vs after: the untrained unet-lite candidate file and a trained unet-lite
    checkpoint exported at 256x256, timed in alternating rounds (a paired measurement)."""
    from edgeseg.export import export
    from edgeseg.optimize.latency import time_alternating

    doc = export(trained, out / "trained_unet_lite", formats=["onnx"], precisions=["fp32"],
                 overrides=["data.image_size=256"])
    files = [out / "candidates" / "unet-lite-w1-d4-p0-s256.fp32.onnx", Path(doc["artifacts"][0]["path"])]
    p50 = time_alternating(files, out / "predicted_vs_trained.jsonl", "onnxruntime", threads, None)
    return {"trained_checkpoint": str(trained), "untrained_p50_ms": p50[0], "trained_p50_ms": p50[1],
            "ratio": p50[1] / p50[0]}


def hand_made(out: Path, threads: int) -> list[dict[str, Any]]:
    """Each lite variant trained as the membrane recipe ships it, exported FP32 + INT8, benched with Dice."""
    from edgeseg.bench import benchmark
    from edgeseg.export import export
    from edgeseg.train import train

    points = []
    for name in HAND_MADE:
        run = out / "hand_made" / name
        if (run / "train" / catalog.FILES.model).is_file():  # the recipe as shipped is deterministic: reuse it
            print(f"hand-made {name}: reusing {run / 'train'}")
        else:
            train(RECIPE, run / "train", overrides=[f"model.name={name}"])
        doc = export(run / "train" / "model.pt", run / "export", precisions=["fp32", "int8"])
        files = [a["path"] for a in doc["artifacts"] if a["format"] == "onnx"]  # INT8 benched even where not shipped
        for r in benchmark(files, out=run / "bench.jsonl", backends=["onnxruntime"], threads=[threads]):
            points.append({"model": name, "file": Path(r["artifact"]["path"]).name, "path": r["artifact"]["path"],
                           "p50_ms": (r.get("latency") or {}).get("p50_ms"),
                           "mean_dice": (r.get("accuracy") or {}).get("mean_dice")})
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


def front_against_hand_made(out: Path, hand: list[dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """The study's Pareto front (latency, mean Dice) against each hand-made point: a point is covered when a
    front point is at least as fast and at least as accurate. Trial points: latency measured before training,
    best mean Dice over their fidelities; the winner: latency and Dice of its final artifact."""
    rows = [json.loads(x) for x in (out / "trials.jsonl").read_text().splitlines() if x.strip()]
    pts = [{"name": r["candidate"], "p50_ms": r["latency_ms"],
            "mean_dice": max(f.get("mean_dice", float("nan")) for f in r["fidelities"])}
           for r in rows if r.get("fidelities") and r.get("latency_ms")]
    final = doc.get("final_accuracy") or {}
    if doc.get("final_latency_ms") and "mean_dice" in final:
        pts.append({"name": f"winner {doc['candidate']} (final)", "p50_ms": doc["final_latency_ms"],
                    "mean_dice": final["mean_dice"]})
    front = [p for p in pts if not any(q["p50_ms"] <= p["p50_ms"] and q["mean_dice"] >= p["mean_dice"] and q != p
                                       and (q["p50_ms"], q["mean_dice"]) != (p["p50_ms"], p["mean_dice"]) for q in pts)]
    checks = []
    for h in hand:
        if h["p50_ms"] is None or h["mean_dice"] is None:
            continue
        by = [p["name"] for p in front if p["p50_ms"] <= h["p50_ms"] and p["mean_dice"] >= h["mean_dice"]]
        checks.append({**h, "covered_by": by})
    return {"front": sorted(front, key=lambda p: p["p50_ms"]), "hand_made": checks}


def markdown(result: dict[str, Any], threads: int) -> str:
    """The latency table, the before/after-training line when measured and the optimize summary when run."""
    lat = result["latency_first"]
    rows = "\n".join(f"| {f['file']} | {f['p50_ms']:.2f} | {f.get('params') or '-'} | {f.get('gmacs') or '-'} | "
                     f"{'yes' if f['fits'] else 'no'} |" for f in lat["forms"])
    md = (f"# optimize_membrane (ONNX Runtime CPU, {threads} threads, 256x256)\n\n"
          f"unet-lite FP32: {lat['unet_lite_fp32_ms']:.2f} ms; budget (half): {lat['budget_ms']:.2f} ms; "
          f"{lat['fitting_forms']} of {len(lat['forms'])} forms fit; this run's latency phase {lat['seconds']} s "
          "(files and lines already in OUT reused); "
          f"{lat['noise']['noisy_lines']} of {lat['noise']['lines']} bench lines flagged noisy (1-min load average "
          f"{lat['noise']['load_avg_1m'][0]:.1f}-{lat['noise']['load_avg_1m'][1]:.1f} on {cpu_cores()} cores).\n\n"
          "| form (untrained) | p50 ms | params | GMACs | fits |\n|---|---|---|---|---|\n" + rows + "\n")
    if "predicted_vs_trained" in result:
        pv = result["predicted_vs_trained"]
        md += (f"\nLatency before training predicts the trained artifact: untrained unet-lite "
               f"{pv['untrained_p50_ms']:.2f} ms vs trained {pv['trained_p50_ms']:.2f} ms (ratio {pv['ratio']:.3f}, "
               "3 rounds in alternation, lowest p50).\n")
    if "optimize" in result:
        opt = result["optimize"]
        md += f"\n## The study ({opt['seconds'] / 60:.0f} min)\n\n{opt['summary']}\n"
        md += _comparison(result)
    return md


def _comparison(result: dict[str, Any]) -> str:
    """The winner against unet-lite as shipped, and the front against every hand-made point."""
    opt, hand, front = result["optimize"], result.get("hand_made") or [], result.get("front") or {}
    own = next((h for h in hand if h["model"] == "unet-lite" and ".int8" not in h["file"]), None)
    dice = (opt.get("final_accuracy") or {}).get("mean_dice")
    md = ""
    if own and dice is not None and own["mean_dice"] is not None:
        gap = 100 * (dice - own["mean_dice"])
        t = opt.get("final_timing") or {}
        md += (f"\nWinner on its final artifact: {t.get('winner_final_ms', float('nan')):.2f} ms, "
               f"{t.get('ratio_to_own', float('nan')):.3f}x unet-lite's file timed in alternation with it "
               f"({t.get('method', '')}): the 0.5x budget is {'met' if opt.get('budget_met') else 'NOT met'}; "
               f"trained vs untrained winner file {t.get('trained_vs_untrained', float('nan')):.3f}; "
               f"mean Dice {dice:.4f} on the whole val split; "
               f"unet-lite as the recipe ships it: mean Dice {own['mean_dice']:.4f} "
               f"({gap:+.2f} points; the target is within 1 point: {'met' if gap >= -1 - 1e-9 else 'not met'}).\n")
    if front:
        md += "\n| Pareto front point | p50 ms | mean Dice |\n|---|---|---|\n" + "\n".join(
            f"| {p['name']} | {p['p50_ms']:.2f} | {p['mean_dice']:.4f} |" for p in front["front"]) + "\n"
        md += "\n| hand-made (trained as shipped) | p50 ms | mean Dice | covered by the front |\n|---|---|---|---|\n"
        md += "\n".join(f"| {h['file']} ({h['model']}) | {h['p50_ms']:.2f} | {h['mean_dice']:.4f} | "
                        f"{', '.join(h['covered_by']) or 'no'} |" for h in front["hand_made"]) + "\n"
    return md


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", default="2h")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / ".runs" / "optimize_membrane")
    ap.add_argument("--latency-only", action="store_true", help="only step 1 (no training)")
    ap.add_argument("--trained", type=Path, default=None, help="a trained unet-lite model.pt: time it beside its "
                                                                 "untrained candidate file (default after a study: "
                                                                 "the hand-made unet-lite)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for the study (e.g. optimize.proxy_time=4m)")
    args = parse_options(ap, "optimize_membrane", argv, quick="step 1 only (no training), results not committed")
    result: dict[str, Any] = {"threads": args.threads}
    result["latency_first"] = latency_first(args.out, args.threads, args.overrides)
    trained = args.trained
    if not (args.latency_only or args.quick):
        from edgeseg.optimize import optimize

        t0 = time.perf_counter()
        doc = optimize(RECIPE, args.out, budget_ratio=0.5, time_s=parse_duration(args.time, "--time"),
                       threads=args.threads, overrides=args.overrides)
        result["optimize"] = {**doc, "seconds": round(time.perf_counter() - t0, 1)}
        result["hand_made"] = hand_made(args.out, args.threads)
        result["paired_latency"] = paired_latency(args.out, result["hand_made"], doc, args.threads)
        doc = {**doc, "final_latency_ms": result["paired_latency"]["winner_final_ms"]}  # the front's one measurement
        result["front"] = front_against_hand_made(args.out, result["hand_made"], doc)
        trained = trained or args.out / "hand_made" / "unet-lite" / "train" / "model.pt"
    if trained is not None:
        result["predicted_vs_trained"] = predicted_vs_trained(args.out, trained, args.threads)
    write_results(args.results, result, markdown(result, args.threads), libraries=(*LIBRARIES, "optuna"))


if __name__ == "__main__":
    main()
