"""The study's run and its ending: queue the feasible candidates, take trials until none is left, write
trials.jsonl and the plot, and (once, by the process that sees the study done) train the winner."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgeseg import catalog
from edgeseg.optimize import output, study
from edgeseg.optimize.space import Candidate, OptimizeError

F = catalog.OPTIMIZE_FILES


def study_and_winner(recipe: Any, out: Path, timed: Any, records: dict[str, dict[str, Any]], ckpts: dict[str, Path],
                     *, budget_ms: float, budget_ratio: float | None, time_s: float | None, backend: str, threads: int, storage: str | None,
                     say: Any, own: Candidate | None, proxy_s: float) -> dict[str, Any]:
    """Run (or join, or resume) the study, then finish it: the optimize.json document."""
    cfg = recipe.optimize
    url = study.storage_url(out, storage)
    # a relative budget names the study by its ratio: hosts sharing the storage each time their own model
    name = f"{recipe.name}-{f'{budget_ratio:g}x' if budget_ratio else f'{budget_ms:g}ms'}-{backend}-{threads}t"
    st = study.open_study(url, name, cfg)
    # the slowest (largest) feasible candidates first: they set the bar successive halving prunes against
    study.queue(st, sorted(records, key=lambda cid: -records[cid]["latency_ms"]))
    cands = {c.id: c for c in timed.space if c.id in records}
    over = len(timed.space) - len(records)
    say(f"{len(records)} of {len(timed.space)} architectures fit {budget_ms:.4g} ms on {timed.where} "
        f"({over} never train); study {name!r} in {url}; first fidelity {proxy_s:.0f} s")
    trials = study.Trials(recipe=recipe, out=out, name=name, cfg=cfg, proxy_s=proxy_s, candidates=cands, checkpoints=ckpts,
                          records=records, say=say)
    study.run_queue(st, trials, None if time_s is None else time.monotonic() + time_s)
    rows = output.trial_rows(st)
    output.write_trials(out, rows)
    metric = _metric(recipe)
    plot = output.plot(out, rows, budget_ms, metric, own.id if own else None)
    doc: dict[str, Any] = {"budget_ms": budget_ms, "budget_ratio": budget_ratio, "where": timed.where,
                           "here": timed.here, "storage": url, "study": name, "trials": len(rows),
                           "feasible": len(records), "architectures": len(timed.space),
                           "plot": str(plot) if plot else None, "own": _own(own, timed, rows, metric)}
    done = [r for r in rows if r["state"] == "complete" and r.get("value") is not None]
    if not study.finished(st):
        left = sum(r["state"] in ("waiting", "running") for r in rows)
        doc["summary"] = (f"study not finished: {len(done)} trials complete, {left} queued or running (another "
                          "process, or --time ran out); run the same command again to continue")
        return doc
    if not done:
        raise OptimizeError(f"{url}: no trial of study {name!r} completed (see {out / F.trials})")
    best = max(done, key=lambda r: r["value"])
    return {**doc, **_winner(recipe, out, cands[best["candidate"]], best, ckpts, cfg, threads, backend, metric, doc)}


def _metric(recipe: Any) -> str:
    from edgeseg.models import get_model_info
    from edgeseg.tasks import get_task

    return get_task(get_model_info(recipe.model.name).task).headline.key


def _final_timing(recipe: Any, out: Path, cand: Candidate, best: dict[str, Any], row: dict[str, Any],
                  doc: dict[str, Any], threads: int, backend: str) -> dict[str, Any] | None:
    """The winner's final file timed here in alternating rounds beside its untrained candidate file (how well
    latency before training predicted it) and the recipe's own model's reference file (the budget's
    reference with ``--budget 0.5x``): ratios measured side by side, which a drifting machine keeps."""
    from edgeseg.optimize.latency import time_alternating

    final = (row.get("artifact") or {}).get("path")
    if not final:
        return None
    own = (doc.get("own") or {}).get("candidate")
    first = next(iter((doc.get("own") or {}).get("latency_ms_by_precision") or {}), "fp32")
    suffix = catalog.OPTIMIZE_SUFFIXES[backend]
    files = [Path(final), out / F.candidates / cand.form(best["precision"], suffix)]
    if own:
        files.append(out / F.candidates / f"{own}.{first}{suffix}")
    rounds = recipe.optimize.latency_rounds
    unique = list(dict.fromkeys(files))  # the winner may be the recipe's own model
    timed = dict(zip(unique, time_alternating(unique, out / F.final_latency, backend, threads, recipe.bench, rounds)))
    ms = [timed[f] for f in files]
    timing = {"method": f"{rounds} rounds in alternating order, lowest p50, {backend} here, {threads} threads",
              "winner_final_ms": ms[0], "winner_untrained_ms": ms[1], "trained_vs_untrained": ms[0] / ms[1]}
    if own:
        timing.update({"own": own, "own_precision": first, "own_ms": ms[2], "ratio_to_own": ms[0] / ms[2]})
    return timing


def _budget_met(lat: float | None, timing: dict[str, Any] | None, doc: dict[str, Any]) -> bool | None:
    """A relative budget against the paired ratio; milliseconds against the final latency; None when the
    budget is a device's (timed from its lines) or nothing was timed."""
    if lat is None or not doc.get("here"):
        return None
    if timing and doc.get("budget_ratio"):
        return timing["ratio_to_own"] <= doc["budget_ratio"]
    return lat <= doc["budget_ms"]


def _summary(cand: Candidate, best: dict[str, Any], winner: dict[str, Any], doc: dict[str, Any], metric: str,
             out: Path, backend: str) -> str:
    """The one line: what was chosen, its final latency against the budget, its accuracy, the recipe's own."""
    lat, acc, timing = winner["final_latency_ms"], winner[f"final_{metric}"], winner["final_timing"] or {}
    kit = {"tensorrt": "/tensorrt/build_engine.sh, then python -m edgeseg.bench.runner)",
           "executorch": "/phone/run_android.sh, then python -m edgeseg.bench.phone)"}.get(backend, ")")
    if lat is None:
        final = f"its final artifact is timed on the device ({out / F.winner / '4_export'}{kit}"
    elif not doc.get("here"):
        final = (f"{lat:.2f} ms on this machine; the budget is the device's: time its final artifact there "
                 f"({out / F.winner / '4_export'}{kit}")
    else:
        paired = (f", {timing['ratio_to_own']:.3f}x the recipe's own model timed in alternation"
                  if "ratio_to_own" in timing else "")
        over = (timing["ratio_to_own"] / doc["budget_ratio"] if "ratio_to_own" in timing and doc.get("budget_ratio")
                else lat / doc["budget_ms"]) - 1
        final = (f"{lat:.2f} ms measured on its final artifact here{paired}: budget "
                 + (f"{doc['budget_ratio']:g}x ({doc['budget_ms']:.2f} ms)" if doc.get("budget_ratio")
                    else f"{doc['budget_ms']:g} ms")
                 + (" met" if winner["budget_met"] else f" NOT met ({over:.0%} over)"))
    own, own_text = doc["own"] or {}, ""
    if own:
        prec, own_ms = next(iter(own["latency_ms_by_precision"].items()))
        own_acc = own.get(metric)
        own_text = (f"; the recipe's own {own['candidate']}: {own_ms:.2f} ms {prec.upper()}"
                    + (f", val {metric} {own_acc:.4f} as a trial" if own_acc is not None else ", over the budget"
                       if own_ms and own_ms > doc["budget_ms"] else ""))
    return (f"chose {cand.id} ({_form_text(best['precision'], winner)}): {final} (predicted before training: "
            f"{best['latency_ms']:.2f} ms on {doc['where']}), val {metric} {'n/a' if acc is None else f'{acc:.4f}'}"
            f"{own_text}")


def _form_text(precision: str, winner: dict[str, Any]) -> str:
    """The deployed form in words: its precision, and under ``--max-drop`` the mixed-precision outcome."""
    int8, drop = winner.get("int8") or {}, winner.get("max_drop")
    under = f" under --max-drop {drop:g}" if drop is not None else ""
    if "not_shipped" in int8:
        return f"int8 not shipped{under}: {int8['not_shipped'].split(';')[0]}; FP32 ships"
    if "float_layers" in int8 and drop is not None:
        points = f", {int8['drop_points']:.2f} points lost" if int8.get("drop_points") is not None else ""
        return f"int8, mixed precision under --max-drop {drop:g}: {len(int8['float_layers'])} layers in float{points}"
    return precision


def _own(own: Candidate | None, timed: Any, rows: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """The recipe's own model: its latency per precision and, if it was trained as a trial, its score."""
    if own is None:
        return None
    trial = next((r for r in rows if r["candidate"] == own.id and r.get("fidelities")), None)
    return {"candidate": own.id, "latency_ms_by_precision": timed.forms(own),
            metric: max(f[metric] for f in trial["fidelities"]) if trial else None}


def _winner(recipe: Any, out: Path, cand: Candidate, best: dict[str, Any], ckpts: dict[str, Path], cfg: Any,
            threads: int, backend: str, metric: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Train, export, bench and report the winner (once: a finished winner folder is reused)."""
    import json

    from edgeseg.artifacts import atomic_write_json
    from edgeseg.artifacts.outputs import OutputError, folder_lock

    path = out / F.winner / "winner.json"
    max_drop = recipe.export.max_drop if recipe.export else None
    done = json.loads(path.read_text()) if path.is_file() else {}
    if (done.get("candidate"), done.get("max_drop")) == (cand.id, max_drop):
        return done
    try:
        with folder_lock(out / F.winner):
            result = output.train_winner(cand, best["precision"], recipe, ckpts[cand.id], out,
                                         cfg.full_time or output.longest_fidelity(best, recipe),
                                         threads, backend)
    except OutputError:
        return {"candidate": cand.id, "summary": f"study done; the winner {cand.id} is being trained by another "
                                                 f"process in {out / F.winner}"}
    shipped, row = best["precision"], output.deployed_row(result["bench"], best["precision"], backend)
    int8 = output.int8_outcome(result["export"], shipped if backend == "onnxruntime" else "fp32")
    if not row and "not_shipped" in int8:  # the export kept no INT8 (no mixed form met --max-drop): FP32 ships
        shipped, row = "fp32", output.deployed_row(result["bench"], "fp32", backend)
    acc = (row.get("accuracy") or {}).get(metric)
    here = doc.get("here") and backend != "tensorrt"  # TensorRT here: the engine's own bench line
    timing = (_final_timing(recipe, out, cand, {**best, "precision": shipped}, row, doc, threads, backend)
              if here else None)
    lat = timing["winner_final_ms"] if timing else (row.get("latency") or {}).get("p50_ms")
    winner = {"candidate": cand.id, "precision": shipped, "trial": best["trial"],
              "predicted_latency_ms": best["latency_ms"], "final_artifact": (row.get("artifact") or {}).get("path"),
              "final_latency_ms": lat, "final_timing": timing, "max_drop": max_drop, "int8": int8,
              "budget_met": _budget_met(lat, timing, doc),
              f"final_{metric}": acc,
              "final_accuracy": {k: v for k, v in (row.get("accuracy") or {}).items() if isinstance(v, (int, float))},
              "folder": str(out / F.winner), "report": result["report"]}
    winner["summary"] = _summary(cand, best, winner, doc, metric, out, backend)
    atomic_write_json(path, winner)
    return winner
