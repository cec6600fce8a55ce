"""Per-operator time of ExecuTorch programs from ETDump: where FP32 and INT8 .pte files spend their time.

Usage: flock /tmp/edgeseg-bench.lock python -m benchmarks.executorch_profile A.pte B.pte [--threads 2] [--runs 20]
       [--results benchmarks/results/executorch_profile] [--quick]

The pip wheel's runtime records an ETDump when a program is loaded with ``enable_etdump=True``; the
XNNPACK delegate reports each of its operators ("Convolution (NHWC, QC8) IGEMM #3", ...). Events are
grouped by operator kind (the name without its ``#n``); per kind: the sum over the graph of each
event's median time over the runs. ``--quick``: 2 runs (a smoke run). Writes RESULTS.{json,md}.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

from benchmarks.record import command_line, parse_options, write_results


def profile(path: Path, threads: int, runs: int) -> dict[str, float]:
    """Operator kind -> summed median ms per run (plus ``total`` = the sum of all delegated events)."""
    import numpy as np
    import torch
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    from edgeseg.runtime.executorch_rt import ExecuTorchBackend, set_threads

    shape = ExecuTorchBackend(path).inputs[0].shape
    set_threads(threads)
    program = Runtime.get().load_program(path, enable_etdump=True, debug_buffer_size=0)
    method = program.load_method("forward")
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))
    for _ in range(runs + 3):
        method.execute([x])
    with tempfile.TemporaryDirectory() as tmp:
        etdump = Path(tmp) / "run.etdp"
        program.write_etdump_result_to_file(str(etdump), str(Path(tmp) / "debug.bin"))
        frame = Inspector(etdump_path=str(etdump)).to_dataframe()
    kinds: dict[str, float] = defaultdict(float)
    for _, row in frame[frame["event_block_name"] == "Execute"].iterrows():
        if not row["is_delegated_op"]:
            continue
        kind = re.sub(r"\s*#\d+$", "", str(row["event_name"]))
        kinds[kind] += statistics.median(row["raw"][3:] or row["raw"])  # drop the warm-up calls
    kinds["total"] = sum(kinds.values())
    return dict(kinds)


def markdown(result: dict[str, dict[str, float]], programs: list[Path], args: argparse.Namespace) -> list[str]:
    kinds = sorted({k for r in result.values() for k in r if k != "total"},
                   key=lambda k: -max(r.get(k, 0.0) for r in result.values()))
    names = [f"{p.parent.parent.name}/{p.name}" if p.parent.name == "export" else p.name for p in programs]
    md = [f"# ExecuTorch per-operator time (ETDump, XNNPACK, {args.threads} threads, median of {args.runs} runs, ms)",
          "", "| operator | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for kind in kinds + ["total"]:
        md.append(f"| {kind} | " + " | ".join(f"{r.get(kind, 0.0):.3f}" for r in result.values()) + " |")
    return md


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("programs", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    args = parse_options(ap, "executorch_profile", argv, quick="2 runs")
    if args.quick:
        args.runs = 2
    result = {str(p): profile(p, args.threads, args.runs) for p in args.programs}
    record = {"threads": args.threads, "runs": args.runs, "ms": result}
    write_results(args.results, record,
                  markdown(result, args.programs, args), command=command_line(locked=True),
                  libraries=("edgeseg", "torch", "executorch"))


if __name__ == "__main__":
    main()
