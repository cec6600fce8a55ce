"""Run the shipped recipes' whole pipeline and write the combined latency-accuracy report.

Usage: python -m benchmarks.run_all [--recipes quickstart,membrane_unet_lite] [--quick] [--force] [--work DIR]

Each recipe goes through `edgeseg run` (train + eval, export, bench, report) into WORK/<recipe>;
unchanged stages are skipped on a rerun. The bench results of all recipes are merged into
benchmarks/results/report/ (report.md, report.html, results.csv, pareto.png, size_accuracy.png) and
the README's table is written to benchmarks/results/latency_accuracy.{md,json}.
``--quick`` trains 2 epochs and benches briefly, all in benchmarks/.runs/quick/run_all: a smoke run of the
script itself, not results.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.record import QUICK, RESULTS, ROOT, write_results

RECIPES = {"quickstart": ROOT / "recipes" / "quickstart.yaml",
           "membrane_unet_lite": ROOT / "recipes" / "membrane_unet_lite.yaml",
           "nuclei_unet_lite": ROOT / "recipes" / "unet_lite.yaml"}
QUICK_SET = ["train.epochs=2", "bench.min_runs=3", "bench.min_time_s=0", "export.calibration.images=4"]


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


def run_recipes(names: list[str], args: argparse.Namespace) -> list[Path]:
    """``edgeseg run`` of every recipe into WORK/<recipe>; the bench results file of each."""
    from edgeseg.pipeline import run

    results = []
    for name in names:
        summary = run(RECIPES[name], args.work / name, overrides=QUICK_SET if args.quick else None, force=args.force)
        for stage, info in summary["stages"].items():
            print(f"{name:>20} {stage:>7}: {info['status']:>7}  {info['summary']}")
        results.append(args.work / name / "5_bench" / "results.jsonl")
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="quickstart,membrane_unet_lite", help=f"any of {', '.join(RECIPES)}")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".runs")
    ap.add_argument("--results", type=Path, default=None,
                    help="folder of report/ and latency_accuracy.{json,md} (default benchmarks/results; "
                         "with --quick benchmarks/.runs/quick/run_all)")
    ap.add_argument("--quick", action="store_true", help="smoke run of the script, not results: 2 epochs, brief bench")
    ap.add_argument("--force", action="store_true", help="rerun every stage even when unchanged")
    args = ap.parse_args(argv)

    from edgeseg.bench.machine import machine_info
    from edgeseg.report import report

    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipe {unknown[0]!r}; expected one of {', '.join(RECIPES)}")
    if args.quick:
        args.work = QUICK / "run_all"
    args.results = args.results or (args.work if args.quick else RESULTS)
    results = run_recipes(names, args)
    m = machine_info()
    paths = report(results, args.results / "report",
                   title=f"edgeseg shipped recipes on {m['cpu']} ({m['usable_cores']} cores)")
    md = "Batch 1; ~ marks a noisy latency. Full report: benchmarks/results/report/report.md.\n\n" + table(results, names)
    write_results(args.results / "latency_accuracy", {"recipes": names, "bench_results": [str(p) for p in results]}, md)
    print(f"report: {paths['md']}")


if __name__ == "__main__":
    main()
