"""Command line: each subcommand parses, makes ONE library call and prints the result."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgeseg import catalog
from edgeseg.bench.core import BenchSettings  # the one set of bench defaults (torch-free)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="edgeseg: train, compress, export, benchmark and report segmentation models for the edge.")
out_console = Console(soft_wrap=True)  # long paths stay one copyable line (the terminal wraps them)

RecipeArg = Annotated[Optional[Path], typer.Argument(help="recipe YAML (default: the embedded quickstart)")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override a recipe key: a.b=value (repeatable)")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="output folder")]
TrustOpt = Annotated[bool, typer.Option("--trust-checkpoint", help="load checkpoints with full unpickling: ONLY for "
                                        "files you made yourself (e.g. with an earlier edgeseg); a crafted file "
                                        "runs code this way")]
CustomOpOpt = Annotated[Optional[Path], typer.Option("--custom-op-library", help="native library for a model's "
                                                     "custom ONNX operators, loaded into ONNX Runtime: only one "
                                                     "you trust")]


def _csv(text: str | None, cast: type = str) -> list[Any] | None:
    return [cast(t.strip()) for t in text.split(",") if t.strip()] if text else None


def _counts(text: str | None, option: str) -> list[int] | None:
    """A comma list of integers >= 1 (``--threads 1,2``, ``--batch 1,4``); a usage error otherwise."""
    if text is None:
        return None
    values = []
    for t in text.split(","):
        try:
            v = int(t.strip())
        except ValueError:
            raise typer.BadParameter(f"{t.strip()!r} is not an integer; expected a comma list such as 1,2",
                                     param_hint=f"'{option}'") from None
        if v < 1:
            raise typer.BadParameter(f"{v} is not allowed; expected integers >= 1", param_hint=f"'{option}'")
        values.append(v)
    return values


def _size(text: str | None) -> tuple[int, int] | None:
    """``--size 64`` or ``--size 48x64`` -> (H, W)."""
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        hw = []
    if len(hw) not in (1, 2) or min(hw) < 1:
        raise typer.BadParameter(f"{text!r}: expected HxW or N with positive integers, e.g. 256x320",
                                 param_hint="'--size'")
    return (hw[0], hw[-1])


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    from edgeseg.tasks import get_task

    header, rows, closing = get_task(metrics.get("task", "semantic")).metrics_table(metrics)
    table = Table(title=title)
    for col in header:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    out_console.print(table)
    out_console.print(closing)


@app.command()
def models(size: int = typer.Option(256, help="input side for the MACs column"),
           tests: bool = typer.Option(False, "--tests", help="include the tiny *_test variants")) -> None:
    """List registered models: name, task, parameters, GMACs."""
    from edgeseg.models.profile import model_table

    table = Table(title=f"edgeseg models (GMACs at {size}x{size}, 3 input channels)")
    for col in ("name", "family", "task", "params (M)", "GMACs", "description"):
        table.add_column(col)
    for row in model_table((size, size), include_test=tests):
        table.add_row(row["name"], row["family"], row["task"], f"{row['params'] / 1e6:.2f}", f"{row['gmacs']:.2f}",
                      row.get("description", ""))
    out_console.print(table)


@app.command()
def train(recipe: RecipeArg = None, out: OutOpt = Path("runs/train"), set: SetOpt = None,
          resume: bool = typer.Option(False, help="continue from OUT/last.pt"),
          time: Optional[str] = typer.Option(None, "--time", help="train for this long instead of train.epochs, "
                                             "e.g. 20m, 2h, 90s (sets train.time_budget)"),
          trust_checkpoint: TrustOpt = False) -> None:
    """Train a recipe; writes model.pt, last.pt, train_log.csv and metrics.json into OUT."""
    from edgeseg.recipe import parse_duration
    from edgeseg.train import train as train_api

    if time is not None:
        parse_duration(time, "--time")  # a bad value names the option, not the recipe field
    overrides = [*([f"train.time_budget={time}"] if time is not None else []), *(set or [])]
    result = train_api(recipe, out, overrides=overrides, resume=resume, trust_checkpoint=trust_checkpoint)
    if result:
        _print_metrics(result["metrics"], f"validation of {out / 'model.pt'}")


@app.command("eval")
def eval_(artifact: Path, data: Annotated[Optional[Path], typer.Option(help="recipe describing the data "
                                                                        "(default: the one stored in the artifact; "
                                                                        "required for an ONNX file without "
                                                                        "edgeseg metadata)")] = None,
          split: str = typer.Option("val", help="train | val | test"), set: SetOpt = None,
          backend: Optional[str] = typer.Option(None, help="runtime backend (default by suffix)"),
          device: str = "cpu", threads: Optional[int] = typer.Option(None, min=1, help="intra-op threads"),
          json_out: Optional[Path] = typer.Option(None, "--json", help="also write the metrics here"),
          trust_checkpoint: TrustOpt = False, custom_op_library: CustomOpOpt = None) -> None:
    """Evaluate a checkpoint or exported model on a whole split: mIoU, Dice, pixel acc (semantic); mask and box AP
    (instance)."""
    from edgeseg.artifacts import atomic_write_json
    from edgeseg.evaluate import evaluate

    metrics = evaluate(artifact, recipe=data, split=split, backend=backend, device=device, threads=threads,
                       overrides=set, trust_checkpoint=trust_checkpoint, custom_op_library=custom_op_library)
    _print_metrics(metrics, f"{artifact} on split '{split}' ({metrics['backend']}, {metrics['precision']})")
    if json_out:
        atomic_write_json(json_out, metrics)


@app.command()
def predict(artifact: Path, images: list[Path], out: OutOpt = Path("preds"),
            backend: Optional[str] = None, device: str = "cpu",
            threads: Optional[int] = typer.Option(None, min=1, help="intra-op threads"),
            data: Annotated[Optional[Path], typer.Option(help="recipe of an ONNX file without edgeseg metadata "
                                                              "(classes, normalisation)")] = None,
            trust_checkpoint: TrustOpt = False, custom_op_library: CustomOpOpt = None) -> None:
    """Segment images: a class-index PNG and a colour overlay (semantic), or overlay, instance ids and detections
    (instance) per image."""
    from edgeseg.predict import predict as predict_api

    for row in predict_api(artifact, list(images), out, backend=backend, device=device, threads=threads,
                           trust_checkpoint=trust_checkpoint, custom_op_library=custom_op_library, data=data):
        out_console.print(f"{row['image']} -> " + ", ".join(v for k, v in row.items() if k != "image"))


@app.command()
def export(checkpoint: Path, out: OutOpt = Path("exports"),
           format: Annotated[Optional[list[str]], typer.Option("--format", "-f", help=" | ".join(catalog.FORMATS)
                                                                + " (repeatable; default: the recipe's export.formats)")] = None,
           int8: bool = typer.Option(False, "--int8", help="also INT8 (QDQ), calibrated on the training split"),
           fp16: bool = typer.Option(False, "--fp16", help="also FP16"),
           calib_images: Optional[int] = typer.Option(None, help="calibration images (training split)"),
           calib_method: Optional[str] = typer.Option(None, help=" | ".join(catalog.CALIBRATION_METHODS)),
           int8_policy: Optional[str] = typer.Option(None, help=" | ".join(catalog.INT8_POLICIES)
                                                     + " (auto: skip INT8 that is slower here)"),
           qat: bool = typer.Option(False, "--qat", help="INT8 by quantization-aware training (NNCF), not PTQ"),
           epochs: Optional[int] = typer.Option(None, help="QAT fine-tuning epochs (with --qat; default 3)"),
           max_drop: Optional[float] = typer.Option(None, help="mixed precision: most val mIoU points INT8 may "
                                                               "lose; measured float fallback per layer"),
           opset: Optional[int] = None, static: bool = typer.Option(False, help="fixed input shape (no dynamic axes)"),
           postprocess_in_graph: bool = typer.Option(False, "--postprocess-in-graph",
                                                     help="instance models: postprocess inside the ONNX graph "
                                                          "(a fixed number of detection slots per image)"),
           data: Optional[Path] = typer.Option(None, help="recipe for calibration/validation data"),
           set: SetOpt = None, trust_checkpoint: TrustOpt = False) -> None:
    """Export a checkpoint to ONNX (FP32/FP16/INT8), ORT mobile, a TensorRT engine + Jetson kit, OpenVINO,
    ExecuTorch (.pte + phone kit)."""
    from edgeseg.export import export as export_api

    # Options lie over the recipe's export section (--data RECIPE, or the checkpoint's), so its other
    # settings apply; an error names the option (label -> export field, value).
    given = {"--calib-images": ("calibration.images", calib_images),
             "--calib-method": ("calibration.method", calib_method),
             "--int8-policy": ("int8_policy", int8_policy), "--opset": ("opset", opset),
             "--static": ("dynamic", False if static else None), "--qat": ("qat", True if qat else None),
             "--epochs": ("qat.epochs", epochs), "--max-drop": ("max_drop", max_drop),
             "--postprocess-in-graph": ("postprocess", "graph" if postprocess_in_graph else None)}
    options = {label: kv for label, kv in given.items() if kv[1] is not None}
    # No --format / --fp16 / --int8: the recipe's export section decides (formats and precisions).
    precisions = ["fp32"] + (["fp16"] if fp16 else []) + (["int8"] if int8 else []) if fp16 or int8 else None
    result = export_api(checkpoint, out, formats=format or None, precisions=precisions, recipe=data,
                        overrides=set, options=options, trust_checkpoint=trust_checkpoint)
    for art in result["artifacts"]:
        state = "shipped" if art.get("shipped", True) else "NOT shipped"
        # escape(): rich would read "[shipped]" (and brackets in paths/reasons) as markup and drop it
        out_console.print(escape(f"{art['format']:>9} {art['precision']:>5}  {art['path']}  [{state}] "
                                 f"{art.get('reason', '')}"), soft_wrap=True)
    out_console.print(f"details: {Path(out) / 'export.json'}")


@app.command()
def prune(checkpoint: Path, out: OutOpt = Path("runs/pruned"),
          ratio: Optional[float] = typer.Option(None, help="size target: fraction of channels to remove (0.5 halves "
                                                           "widths)"),
          target_macs: Optional[float] = typer.Option(None, help="keep at most this fraction of the MACs"),
          target_latency: Optional[str] = typer.Option(None, help="reach this ONNX Runtime latency here, e.g. 40ms "
                                                                  "(a start already under it is kept unchanged)"),
          importance: Optional[str] = typer.Option(None, help=" | ".join(catalog.PRUNE_IMPORTANCES)),
          global_pruning: bool = typer.Option(False, "--global", help="rank channels across layers"),
          round_to: Optional[str] = typer.Option(None, help="kept channel counts are multiples of this, or 'auto': "
                                                 "ONNX Runtime's CPU channel block here (16 with AVX-512, else 8); "
                                                 "default: auto for --target-latency, else 8"),
          keep: Optional[list[str]] = typer.Option(None, "--keep", help="layer-name pattern (fnmatch) whose convs "
                                                   "and coupled layers are not pruned; repeatable"),
          finetune_epochs: Optional[int] = typer.Option(None, help="fine-tuning epochs after pruning (none if not given); "
                                                                   "the most accurate epoch, or the pruned model, "
                                                                   "is written"),
          finetune_lr: Optional[float] = typer.Option(None, help="fine-tuning learning rate (default: recipe's)"),
          distill: bool = typer.Option(False, "--distill", help="logit distillation from the unpruned model"),
          threads: Optional[int] = typer.Option(None, help="ONNX Runtime threads for latency"),
          data: Optional[Path] = typer.Option(None, help="recipe for the data (default: the checkpoint's)"),
          set: SetOpt = None, trust_checkpoint: TrustOpt = False) -> None:
    """Structured channel pruning (Torch-Pruning) + fine-tuning; writes model.pt and prune.json into OUT."""
    from edgeseg.compress.prune import parse_latency, prune_config
    from edgeseg.compress.prune import prune as prune_api
    from edgeseg.tasks import get_task

    if threads is not None and threads < 1:  # as bench refuses it
        raise typer.BadParameter(f"{threads} is not allowed; expected an integer >= 1", param_hint="'--threads'")
    cfg = prune_config(ratio=ratio, target_macs=target_macs,
                       target_latency_ms=parse_latency(target_latency) if target_latency else None,
                       importance=importance, global_pruning=global_pruning, round_to=round_to, keep=keep,
                       finetune_epochs=finetune_epochs, finetune_lr=finetune_lr, distill=distill, threads=threads)
    doc = prune_api(checkpoint, out, cfg, recipe=data, overrides=set, trust_checkpoint=trust_checkpoint)
    fig = doc["figures"]
    for label in ("before", "after"):
        row = fig[label]
        val = row.get("val") or {}
        accuracy = f", val {get_task(val.get('task', 'semantic')).summary(val)}" if val else ""
        lat = f", {row['latency_ms']:.2f} ms" if "latency_ms" in row else ""
        out_console.print(f"{label:>6}: {row['params'] / 1e6:.3f} M params, {row['macs'] / 1e9:.3f} GMACs{lat}"
                          f"{accuracy}", soft_wrap=True)
    out_console.print(escape(f"{fig['decision']}; {fig['speed']} than the start"
                             if fig.get("speedup") else fig["decision"]), soft_wrap=True)
    out_console.print(escape(f"{doc['checkpoint']}; details: {Path(out) / 'prune.json'}"), soft_wrap=True)


@app.command()
def bench(artifacts: list[Path], out: Path = typer.Option(Path("results/bench.jsonl"), "--out", "-o"),
          backend: Optional[str] = typer.Option(None, help="comma list of: " + ",".join(catalog.backend_choices())),
          device: str = "cpu", threads: Optional[str] = typer.Option(None, help="comma list, e.g. 1,2"),
          batch: Optional[str] = typer.Option(None, help="comma list, e.g. 1,4"),
          data: Optional[Path] = typer.Option(None, help="recipe for the accuracy data"),
          no_accuracy: bool = typer.Option(False, "--no-accuracy", help="latency and memory only"),
          fp16: bool = typer.Option(False, "--fp16", help="torch on CUDA: fp16 autocast"),
          channels_last: bool = typer.Option(False, "--channels-last", help="torch: channels_last memory format"),
          compile: bool = typer.Option(False, "--compile", help="torch: torch.compile the model"),
          split: str = typer.Option("val", help="accuracy split (the whole split is used)"),
          size: Optional[str] = typer.Option(None, help="HxW (or N) input of an ONNX file without edgeseg "
                                                        "metadata whose spatial axes are dynamic"),
          warmup: int = typer.Option(BenchSettings.warmup, min=0, help="untimed calls first"),
          min_runs: int = typer.Option(BenchSettings.min_runs, min=1, help="timed calls, at least"),
          min_time: float = typer.Option(BenchSettings.min_time_s, min=0.0, help="timed seconds, at least"),
          trust_checkpoint: TrustOpt = False, custom_op_library: CustomOpOpt = None) -> None:
    """Benchmark artifacts: latency, memory and accuracy, one JSON line per configuration."""
    from edgeseg.bench import benchmark
    from edgeseg.recipe import BenchCfg
    from edgeseg.tasks import get_task

    torch_options = {k: True for k, on in (("fp16", fp16), ("channels_last", channels_last), ("compile", compile))
                     if on}
    cfg = BenchCfg(warmup=warmup, min_runs=min_runs, min_time_s=min_time, threads=[], batch=[1])
    rows = benchmark(list(artifacts), out=out, backends=_csv(backend), device=device,
                     threads=_counts(threads, "--threads"), batch=_counts(batch, "--batch"), cfg=cfg, data=data,
                     accuracy=not no_accuracy, split=split, torch_options=torch_options, size=_size(size),
                     trust_checkpoint=trust_checkpoint, custom_op_library=custom_op_library)
    for r in rows:
        lat, acc = r.get("latency") or {}, r.get("accuracy") or {}
        e2e = r.get("latency_end_to_end") or {}
        head = get_task((r.get("model") or {}).get("task", "semantic")).headline
        score = acc.get(head.key)
        figures = (f"p50 {lat['p50_ms']:.2f} ms{' (noisy)' if r.get('noisy') else ''}"
                   + (f", with postprocess {e2e['p50_ms']:.2f} ms" if e2e.get("p50_ms") else "")
                   + (f", {head.label} {score:.4f} on {acc['num_images']} images" if isinstance(score, (int, float))
                      else f" (no accuracy: {acc['error']})" if acc.get("error") else "")) if lat else r["error"]
        out_console.print(escape(f"{r['artifact']['name']} {r['backend']} threads={r['threads']} batch={r['batch']}: "
                                 f"{figures}"), soft_wrap=True)
    out_console.print(f"{len(rows)} result lines appended to {out}")
    if not any(r.get("latency") for r in rows):
        print(f"edgeseg: error: nothing was measured ({len(rows)} configurations failed)", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
def report(inputs: list[Path], out: OutOpt = Path("report"), title: str = "edgeseg report") -> None:
    """Render bench results (JSON lines, several devices) into Markdown, HTML, CSV and Pareto plots."""
    from edgeseg.report import report as report_api

    for kind, path in report_api(list(inputs), out, title=title).items():
        out_console.print(f"{kind:>14}: {path}")


@app.command()
def optimize(recipe: RecipeArg = None, out: OutOpt = Path("runs/opt"), set: SetOpt = None,
             budget: Optional[str] = typer.Option(None, help="latency budget of the deployed model (p50, batch 1): "
                                                  "e.g. 4ms, or 0.5x = half the recipe's own model's latency "
                                                  "on the target"),
             time: Optional[str] = typer.Option(None, "--time", help="wall time of the trials, e.g. 2h"),
             backend: str = typer.Option("onnxruntime", help="target runtime: " + ", ".join(catalog.OPTIMIZE_BACKENDS)),
             threads: int = typer.Option(2, min=1, help="intra-op threads the latency is measured with"),
             plan: bool = typer.Option(False, "--plan", help="only write the candidate files and the device "
                                       "runner script (time them on another device)"),
             device_latency: Optional[Path] = typer.Option(None, "--device-latency", help="the device runner's "
                                                          "JSON lines for the plan in OUT, instead of timing here"),
             storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default: sqlite in OUT/study.db); "
                                                   "processes sharing it share the study"),
             max_drop: Optional[float] = typer.Option(None, help="an INT8 winner ships in mixed precision: layers "
                                                      "stay float until val headline drops at most this many "
                                                      "points (ONNX Runtime target)")) -> None:
    """The most accurate model of the recipe's search space that fits a latency budget: latency first, then
    multi-fidelity training (Optuna), then the winner trained, exported, benched and reported."""
    from edgeseg.compress.prune import PruneError, parse_latency
    from edgeseg.optimize import optimize as optimize_api
    from edgeseg.recipe import parse_duration

    ratio = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*x\s*", budget or "")
    try:
        budget_ms = parse_latency(budget) if budget and not ratio else None
    except PruneError:
        raise typer.BadParameter(f"{budget!r}: expected milliseconds like 4ms, seconds like 0.004s or a fraction "
                                 "of the recipe's own model's latency like 0.5x", param_hint="'--budget'") from None
    doc = optimize_api(recipe, out, budget_ms=budget_ms, budget_ratio=float(ratio.group(1)) if ratio else None,
                       time_s=parse_duration(time, "--time") if time else None, backend=backend, threads=threads,
                       plan=plan, device_latency=device_latency, storage=storage, overrides=set, max_drop=max_drop,
                       say=lambda msg: out_console.print(escape(f"optimize: {msg}"), soft_wrap=True))
    out_console.print(escape(doc["summary"]), soft_wrap=True)


@app.command()
def run(recipe: RecipeArg = None, out: OutOpt = Path("runs/run"), set: SetOpt = None,
        force: bool = typer.Option(False, help="rerun stages even when their inputs are unchanged"),
        trust_checkpoint: TrustOpt = False) -> None:
    """Run the recipe's whole pipeline (train, eval, prune, quantize, export, bench, report), skipping unchanged stages."""
    from edgeseg.pipeline import run as run_api

    summary = run_api(recipe, out, overrides=set, force=force, trust_checkpoint=trust_checkpoint)
    for stage, info in summary["stages"].items():
        out_console.print(escape(f"{stage:>8}: {info['status']:<8} {info.get('summary', '')}"))
    best = summary.get("headline") or {}
    if best:
        acc = (f", {best['metric']} {best['score']:.4f} on {best['num_images']} {best.get('split') or 'val'} images"
               if best.get("score") is not None else "")
        out_console.print(escape(f"    best: {best['artifact']} on {best['backend']} (threads {best['threads']}): "
                                 f"p50 {best['p50_ms']:.2f} ms{' (noisy)' if best['noisy'] else ''}{acc}"), soft_wrap=True)
    for kind, path in (summary.get("report") or {}).items():
        out_console.print(escape(f"  report: {path}"), soft_wrap=True)  # a path must stay copyable


def main() -> None:
    """Entry point: a deliberate user error prints one line (exit 2); anything else keeps its traceback.

    ``EDGESEG_DEBUG=1`` shows the traceback of user errors too.
    """
    from edgeseg.errors import UserError

    # The click exceptions typer raises (typer may vendor its own click): their module, whichever it is.
    click = sys.modules[typer.BadParameter.__module__]
    try:
        code = app(standalone_mode=False)  # usage errors come back here to print as one line too
    except click.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        print(f"edgeseg: error: {exc.format_message()}{where}", file=sys.stderr)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("edgeseg: interrupted", file=sys.stderr)
        sys.exit(130)
    except UserError as exc:
        if os.environ.get("EDGESEG_DEBUG", "") not in ("", "0"):
            raise
        print(f"edgeseg: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
