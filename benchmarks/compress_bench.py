"""The compression table on this CPU, in one run: export and evaluate (cached), then time side by side.

Rows (each family's speed-up and Dice drop are against its own FP32 row):

* ``unet`` / ``segnet`` (``--big``): FP32 unpruned, pruned 50% FP32, pruned PTQ INT8, pruned QAT INT8
  (``--qat-families``), pruned mixed precision (``--mixed-families``). Their trained unpruned weights
  stayed on the GPU machine of compress_train_gpu.py: the unpruned FP32 ONNX is a freshly built model of
  the same architecture (latency does not depend on the weights) and its Dice is that run's whole-split
  validation (``RUNS/summary.json``, torch FP32).
* lite models (``--lite-models``, trained here, ``LITE/<model>/model.pt`` and pruned+fine-tuned
  ``LITE/<model>-p<NN>/model.pt``): FP32, full PTQ INT8 and mixed precision of the trained model, and
  FP32 / PTQ / mixed of every pruned variant.

Every export (``edgeseg.export.export``: ONNX, PTQ/QAT/mixed INT8, whole-val-split accuracy) is cached in
``OUT/<artifact>/export.json`` and reused when its checkpoint hash, precisions and overrides match, so
``--prepare-only`` does the slow part once and the final run only times. Timing: ONNX Runtime CPU,
``--threads`` threads, batch 1, 256x256, every file in alternating rounds (best median kept), sessions
with ``session.intra_op.allow_spinning=0``, the other processes' CPU use recorded per round; it holds
/tmp/edgeseg-bench.lock.

Usage: python -m benchmarks.compress_bench --runs RUNS --lite LITE --data ROOT --out OUT [--prepare-only]
Writes benchmarks/results/compress_bench.json and compress_bench.md (or ``--results DIR``); compress.md
holds the narrative around it.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.record import RESULTS, write_results
from benchmarks.timing import SESSION_CONFIG, bench_lock, side_by_side

LATENCY_KW = {"warmup": 3, "min_runs": 10, "min_time_s": 2.0, "max_time_s": 60.0}


@dataclass
class Row:
    """One line of the table: which file to time and where its Dice comes from."""

    label: str
    ref: str  # label of the family's FP32 row (speed-up and Dice drop against it)
    export: str | None  # OUT sub-folder of the export (None: a freshly built FP32 model, latency only)
    precision: str = "fp32"
    dice: dict[str, Any] = field(default_factory=dict)  # given (GPU run) or read from export.json
    file: Path | None = None


@dataclass
class Export:
    """One cached ``edgeseg.export.export`` call."""

    checkpoint: Path
    precisions: list[str]
    overrides: list[str]


def plan(args: argparse.Namespace) -> tuple[list[Row], dict[str, Export], dict[str, dict[str, Any]]]:
    """The rows, the exports they need (by OUT sub-folder) and the fresh FP32 models to build."""
    base = ([f"data.root={args.data}"] if args.data else []) + [
        f"export.calibration.images={args.calibration}", "export.int8_policy=always", *args.set]
    methods = dict(item.split("=", 1) for item in args.calib_method)
    qat_epochs = {fam: int(n) for fam, n in (item.split("=") if "=" in item else ("*", item)
                                             for item in args.qat_epochs.split(","))}
    qat_extra: dict[str, list[str]] = {}
    for item in args.qat_set:
        fam, override = item.split(":", 1)
        qat_extra.setdefault(fam, []).append(override)

    def overrides(model: str) -> tuple[list[str], list[str], list[str]]:
        """(PTQ, mixed, QAT) export overrides of ``model`` (its family's calibration method)."""
        method = next((m for fam, m in methods.items() if model.split("-")[0] == fam), None)
        common = base + ([f"export.calibration.method={method}"] if method else [])
        # the order `edgeseg export --qat --epochs N --set ...` records, so CLI-made QAT exports are reused
        qat = [*base, f"data.train_repeats={args.qat_repeats}", *qat_extra.get(model, []),
               f"export.qat.epochs={qat_epochs.get(model, qat_epochs.get('*', 2))}"]
        return common, [*common, f"export.max_drop={args.max_drop}"], qat

    rows: list[Row] = []
    exports: dict[str, Export] = {}
    fresh: dict[str, dict[str, Any]] = {}
    runs = Path(args.runs) if args.runs else None
    summary = json.loads((runs / "summary.json").read_text()) if runs else {}
    for fam in filter(None, args.big.split(",")):
        common, mixed, qat = overrides(fam)
        tag, ckpt = f"{fam}-p50", runs / f"{fam}-p50" / "model.pt"  # type: ignore[operator]
        val = summary[fam]["val"]
        fresh[f"{fam} fp32"] = {"model": fam, "like": ckpt, "params": summary[tag]["figures"]["before"]["params"]}
        rows.append(Row(f"{fam} fp32", f"{fam} fp32", None, dice={**acc_figures(val), "source": "GPU run, torch FP32"}))
        exports[tag] = Export(ckpt, ["fp32", "int8"], common)
        rows += [Row(f"{tag} fp32", f"{fam} fp32", tag), Row(f"{tag} int8 ptq", f"{fam} fp32", tag, "int8")]
        if fam in args.qat_families.split(","):
            exports[f"{tag}-qat"] = Export(ckpt, ["int8"], qat)
            rows.append(Row(f"{tag} int8 qat", f"{fam} fp32", f"{tag}-qat", "int8"))
        if fam in args.mixed_families.split(","):
            exports[f"{tag}-mixed"] = Export(ckpt, ["int8"], mixed)
            rows.append(Row(f"{tag} int8 mixed", f"{fam} fp32", f"{tag}-mixed", "int8"))
    lite = Path(args.lite) if args.lite else None
    for name in filter(None, args.lite_models.split(",")):
        common, mixed, _ = overrides(name)
        variants = [name] + sorted(p.parent.name for p in lite.glob(f"{name}-p*/model.pt"))  # type: ignore[union-attr]
        for tag in variants:
            ckpt = lite / tag / "model.pt"  # type: ignore[operator]
            exports[tag] = Export(ckpt, ["fp32", "int8"], common)
            exports[f"{tag}-mixed"] = Export(ckpt, ["int8"], mixed)
            rows += [Row(f"{tag} fp32", f"{name} fp32", tag), Row(f"{tag} int8 ptq", f"{name} fp32", tag, "int8"),
                     Row(f"{tag} int8 mixed", f"{name} fp32", f"{tag}-mixed", "int8")]
    return rows, exports, fresh


def export_cached(job: Export, out: Path) -> dict[str, Any]:
    """``edgeseg.export.export``, reusing ``out/export.json`` when it was made from the same inputs."""
    from edgeseg.artifacts import file_sha256
    from edgeseg.export import export

    done = out / "export.json"
    if done.is_file():
        doc = json.loads(done.read_text())
        inp = doc.get("inputs", {})
        if (not doc.get("error") and inp.get("checkpoint_sha256") == file_sha256(job.checkpoint)
                and set(job.precisions) <= set(inp.get("precisions", []))
                and inp.get("overrides") == job.overrides
                and all(Path(a["path"]).is_file() for a in doc["artifacts"])):
            return doc
    print(f"export {out.name}: {job.precisions} {' '.join(job.overrides)}", flush=True)
    return export(job.checkpoint, out, precisions=job.precisions, overrides=job.overrides)


def fresh_onnx(model: str, like: Path, path: Path, hw: tuple[int, int], params: int | None) -> Path:
    """FP32 ONNX of a freshly built ``model`` with ``like``'s classes and channels (latency only), in the
    graph form `edgeseg export` writes (``SegModel.export_form``: SegNet with mask unpooling)."""
    import torch

    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.artifacts.onnx_export import export_onnx
    from edgeseg.models import create_model
    from edgeseg.models.profile import count_params
    from edgeseg.recipe import recipe_from_dict
    from edgeseg.train.meta import meta_for

    if path.is_file():
        return path
    meta = load_checkpoint(like).meta
    torch.manual_seed(0)
    net = create_model(model, num_classes=meta.num_classes, in_channels=meta.in_channels).eval()
    if params is not None and count_params(net) != params:
        raise SystemExit(f"fresh {model}: {count_params(net)} params, the trained one had {params}")
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.export_form()
    export_onnx(net, meta_for(net, recipe_from_dict(meta.recipe)), path, hw=hw, dynamic=True)
    return path


def prepare(rows: list[Row], exports: dict[str, Export], fresh: dict[str, dict[str, Any]], out: Path,
            hw: tuple[int, int]) -> None:
    """Run (or reuse) every export and fill each row's file and Dice."""
    docs = {}
    for i, (name, job) in enumerate(exports.items(), 1):
        t0 = time.time()
        docs[name] = export_cached(job, out / name)
        print(f"[{i}/{len(exports)}] {name} ready ({time.time() - t0:.0f} s)", flush=True)
    for row in rows:
        if row.export is None:
            spec = fresh[row.label]
            row.file = fresh_onnx(spec["model"], spec["like"], out / f"{spec['model']}-fresh.onnx", hw, spec["params"])
            continue
        arts = [a for a in docs[row.export]["artifacts"] if a["format"] == "onnx"]
        art = next(a for a in arts if a["precision"] == row.precision)
        int8 = next(a for a in arts if a["precision"] == "int8")
        acc = int8["accuracy"]["int8" if row.precision == "int8" else "fp32"]
        row.file, row.dice = Path(art["path"]), {**acc_figures(acc), "source": "this CPU, ONNX Runtime"}


def table(rows: list[Row], latency: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every row's Dice, file and (when timed) best p50, rounds, load, and speed-up / Dice drop vs its FP32 row."""
    out = {r.label: {**r.dice, "file": str(r.file)} for r in rows}
    for r in rows:
        if latency:
            lat = latency[r.label]
            out[r.label].update(latency_ms=lat["best_p50_ms"], latency_rounds=lat["rounds"],
                                other_cores=lat["other_cores"], contention=[c for c in lat["contention"] if c])
    for r in rows:
        ref, row = out[r.ref], out[r.label]
        row["dice_drop_points"] = 100 * (ref["dice"] - row["dice"])
        if latency:
            row["speedup_vs_fp32"] = ref["latency_ms"] / row["latency_ms"]
    return out


def markdown(rows: dict[str, dict[str, Any]], timed: bool, args: argparse.Namespace) -> list[str]:
    lines = [f"# Compression on membranes (ONNX Runtime CPU, {args.threads} threads, batch 1, {args.size}x{args.size}; "
             "Dice on the whole val split; latency: best median of alternating rounds)", "",
             "| artifact | latency ms | speed-up vs FP32 | mean Dice | Dice drop (pts) | Dice from | busy rounds |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for label, row in rows.items():
        lat = f"{row['latency_ms']:.1f} | {row['speedup_vs_fp32']:.2f}x" if timed else "- | -"
        busy = f"{len(row.get('contention', []))}/{args.rounds}" if timed else "-"
        lines.append(f"| {label} | {lat} | {row['dice']:.4f} | {row['dice_drop_points']:+.2f} | {row['source']} | {busy} |")
    return lines


def acc_figures(m: dict[str, Any]) -> dict[str, Any]:
    """Dice, mIoU and image count of an evaluation."""
    return {"dice": m["mean_dice"], "miou": m["miou"], "images": m["num_images"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", help="benchmarks.compress_train_gpu output: summary.json, <big>-p50/model.pt")
    ap.add_argument("--lite", help="folder with <model>/model.pt and <model>-pNN/model.pt trained here")
    ap.add_argument("--data", help="dataset root (default: the one stored in each checkpoint's recipe)")
    ap.add_argument("--out", default="runs/compress_bench", help="export cache")
    ap.add_argument("--results", default=str(RESULTS),
                    help="folder of compress_bench.json and compress_bench.md")
    ap.add_argument("--big", default="unet,segnet")
    ap.add_argument("--qat-families", default="unet,segnet")
    ap.add_argument("--mixed-families", default="segnet")
    ap.add_argument("--lite-models", default="unet-lite,segnet-lite")
    ap.add_argument("--max-drop", type=float, default=0.5, help="mixed precision budget (mIoU points)")
    ap.add_argument("--qat-epochs", default="2", help="N, or FAMILY=N,... (QAT fine-tuning epochs)")
    ap.add_argument("--qat-set", action="append", default=[], metavar="FAMILY:KEY=VALUE",
                    help="extra override of one family's QAT export")
    ap.add_argument("--qat-repeats", type=int, default=2, help="passes over the training images per QAT epoch")
    ap.add_argument("--calibration", type=int, default=32, help="PTQ calibration images (training split)")
    ap.add_argument("--calib-method", action="append", default=None, metavar="FAMILY=METHOD",
                    help="PTQ calibration method of a family (default: segnet=percentile: a finer int8 grid "
                         "for the activations SegNet's unpooling compares, fewer max-pool ties)")
    ap.add_argument("--set", action="append", default=[], help="extra export overrides (tiny test runs)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prepare-only", action="store_true", help="exports and accuracy only, no timing")
    args = ap.parse_args(argv)
    if args.calib_method is None:
        args.calib_method = ["segnet=percentile"]
    bad = [m for m in args.calib_method if "=" not in m]
    if bad:
        ap.error(f"--calib-method: expected FAMILY=METHOD, got {bad[0]!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out, hw = Path(args.out), (args.size, args.size)
    t0 = time.time()
    rows, exports, fresh = plan(args)
    prepare(rows, exports, fresh, out, hw)
    prep_s = time.time() - t0
    latency: dict[str, Any] = {}
    if not args.prepare_only:
        with bench_lock():  # only the timing holds the machine-wide lock
            latency = side_by_side({r.label: r.file for r in rows if r.file}, hw, threads=args.threads,
                                   rounds=args.rounds, latency=LATENCY_KW)
    done = table(rows, latency)
    record = {"threads": args.threads, "session_config": SESSION_CONFIG, "input": [1, "C", args.size, args.size],
              "prepare_seconds": round(prep_s, 1), "rows": done}
    write_results(Path(args.results) / "compress_bench", record, markdown(done, bool(latency), args))


if __name__ == "__main__":
    main()
