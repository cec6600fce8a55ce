"""Run the shipped recipes' whole pipeline and write the combined latency-accuracy report.

Usage: python benchmarks/run_all.py [--recipes quickstart,membrane_unet_lite] [--quick] [--force] [--work DIR]

Each recipe goes through `edgeseg run` (train + eval, export, bench, report) into WORK/<recipe>;
unchanged stages are skipped on a rerun. The bench results of all recipes are merged into
benchmarks/results/report/ (report.md, report.html, results.csv, pareto.png, size_accuracy.png) and
the README's table is written to benchmarks/results/latency_accuracy.md.
``--quick`` trains 2 epochs and benches briefly: a smoke run of the script itself, not results.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"quickstart": ROOT / "recipes" / "quickstart.yaml",
           "membrane_unet_lite": ROOT / "recipes" / "membrane_unet_lite.yaml",
           "nuclei_unet_lite": ROOT / "recipes" / "unet_lite.yaml"}
QUICK = ["train.epochs=2", "bench.min_runs=3", "bench.min_time_s=0", "export.calibration.images=4"]


def table(results: list[Path], recipe_names: list[str]) -> str:
    """The README's Markdown table: one line per measured artifact and backend."""
    from edgeseg.bench.rows import load_rows
    from edgeseg.report.render import fmt, speedup_text
    from edgeseg.report.table import build_entries

    lines = ["| recipe | model | artifact | precision | backend | size (MB) | p50 (ms) | speed-up vs FP32 | "
             "mIoU | mean Dice | val images |", "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, path in zip(recipe_names, results):
        entries, failed = build_entries(load_rows([path]))
        for e in entries:
            lines.append(f"| {name} | {e.model} | {e.artifact} | {e.precision} | {e.backend} | "
                         f"{fmt(e.size_mb, '.2f')} | "
                         f"{'~' if e.noisy else ''}{fmt(e.p50_ms, '.2f')} | {speedup_text(e)} | {fmt(e.miou, '.4f')} | "
                         f"{fmt(e.dice, '.4f')} | {fmt(e.images, 'd')} |")
        lines += [f"| {name} | not measured | {r['artifact']['name']} | | {r.get('backend')} | | | | | | {r['error']} |"
                  for r in failed]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="quickstart,membrane_unet_lite", help=f"any of {', '.join(RECIPES)}")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".runs")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--force", action="store_true", help="rerun every stage even when unchanged")
    args = ap.parse_args()

    from edgeseg.artifacts import atomic_write_text
    from edgeseg.bench.machine import machine_info
    from edgeseg.pipeline import run
    from edgeseg.report import report

    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipe {unknown[0]!r}; expected one of {', '.join(RECIPES)}")
    results = []
    for name in names:
        summary = run(RECIPES[name], args.work / name, overrides=QUICK if args.quick else None, force=args.force)
        for stage, info in summary["stages"].items():
            print(f"{name:>20} {stage:>7}: {info['status']:>7}  {info['summary']}")
        results.append(args.work / name / "5_bench" / "results.jsonl")
    out = args.results / ("report_quick" if args.quick else "report")
    m = machine_info()
    paths = report(results, out, title=f"edgeseg shipped recipes on {m['cpu']} ({m['usable_cores']} cores)")
    md = (f"Measured {time.strftime('%Y-%m-%d')} on {m['cpu']} ({m['usable_cores']} cores), batch 1; "
          "~ marks a noisy latency. Full report: benchmarks/results/report/report.md.\n\n" + table(results, names))
    atomic_write_text(args.results / ("latency_accuracy_quick.md" if args.quick else "latency_accuracy.md"), md)
    print(md)
    print(f"report: {paths['md']}")


if __name__ == "__main__":
    main()
