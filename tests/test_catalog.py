"""One catalog: a backend is one runtime class plus one record, and every stage sees it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseg import catalog
from edgeseg.artifacts import ModelMeta
from edgeseg.tasks.semantic import SemanticTask

PLUGIN = '''
import json
import numpy as np
from edgeseg.artifacts import ModelMeta
from edgeseg.catalog import BackendRecord, add_backend
from edgeseg.runtime.base import TensorSpec


class FakeBackend:
    """Reads a JSON ModelMeta; its "network" thresholds the mean of the input channels."""

    name = "fakert"

    def __init__(self, path, device="cpu", threads=None, **options):
        self.meta = ModelMeta.from_dict(json.loads(open(path).read()))
        h, w = self.meta.input_size
        self.inputs = [TensorSpec("input", ("batch", self.meta.in_channels, h, w), "float32")]
        self.output_names = ["logits"]
        self.precision, self.device, self.threads = "fp32", device, threads

    def __call__(self, x):
        logits = np.zeros((x.shape[0], self.meta.num_classes, *x.shape[2:]), np.float32)
        logits[:, 1] = x.mean(1)
        return {"logits": logits}

    def synchronize(self):
        pass


add_backend(BackendRecord("fakert", "fakert_plugin:FakeBackend", "numpy", ("fake",), "write a .fake file first",
                          aliases=("fk",), kinds={"fake": (".fake",)}))
'''


def _run(tmp_path: Path, *args: str, plugin: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGESEG_QUIET": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])])}
    env.pop("EDGESEG_PLUGINS", None)
    if plugin:
        env["EDGESEG_PLUGINS"] = "fakert_plugin"
    return subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)


def test_a_backend_added_by_one_record_works_through_bench_memory_and_report(tmp_path):
    (tmp_path / "fakert_plugin.py").write_text(PLUGIN)
    meta = ModelMeta(model_name="f", family="f", task="semantic", num_classes=2, in_channels=3, classes=["a", "b"],
                     mean=[0.5] * 3, std=[0.25] * 3, input_size=(32, 32), stride=1)
    (tmp_path / "model.fake").write_text(json.dumps(meta.to_dict()))

    refused = _run(tmp_path, "bench", "model.fake", "--out", "refused.jsonl", plugin=False)
    assert refused.returncode == 1 and "cannot tell the backend from" in refused.stderr and "'.fake'" in refused.stderr

    done = _run(tmp_path, "bench", "model.fake", "--backend", "fk", "--min-time", "0.05", "--min-runs", "3",
                "--out", "r.jsonl")
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])
    assert row["backend"] == "fakert" and not row["error"]
    assert row["latency"]["runs"] >= 3
    # The memory probe runs in a fresh interpreter: it knows the plugin's backend through the same record.
    assert "error" not in row["memory"] and row["memory"]["peak_rss_mb"] > 0, row["memory"]
    assert row["accuracy"]["num_images"] > 0

    report = _run(tmp_path, "report", "r.jsonl", "--out", "rep")
    assert report.returncode == 0, report.stderr[-2000:]
    assert "fakert" in (tmp_path / "rep" / "report.md").read_text()


def test_derived_tables_follow_the_records(monkeypatch):
    record = catalog.BackendRecord("probe", "x:Y", "numpy", ("probe", "onnx"), "hint", aliases=("pr",),
                                   kinds={"probe": (".prb", ".probe")})
    monkeypatch.setitem(catalog.BACKENDS, "probe", record)
    assert catalog.artifact_kind("m.PRB") == "probe" and catalog.kind_suffixes("probe") == (".prb", ".probe")
    assert catalog.canonical_backend("pr") == "probe" and "pr" in catalog.backend_choices()
    assert catalog.default_backend("probe") == "probe"
    assert catalog.default_backend("onnx") == "onnxruntime"  # the first backend listing a kind keeps it
    with pytest.raises(catalog.UserError, match="already known"):
        catalog.add_backend(record)


def test_every_format_and_task_names_a_real_module():
    from importlib import import_module

    for spec in [f.converter for f in catalog.FORMATS.values()] + list(catalog.PRECISIONS.values()) + \
            list(catalog.TASKS.values()) + [r.backend_class for r in catalog.BACKENDS.values()]:
        module, name = spec.split(":")
        path = Path(__file__).resolve().parents[1] / (module.replace(".", "/") + ".py")
        assert path.is_file() and f"{name}" in path.read_text(), spec
    assert import_module("edgeseg.tasks").get_task("instance").name == "instance"


class FakeTask(SemanticTask):
    """A task one record adds: a semantic task that answers the callers' questions its own way."""

    name = "fake-semantic"
    supports_distillation = False
    supports_class_weights = False
    report_rank = -1

    def metrics_table(self, metrics):
        return ["what"], [["fake row"]], "fake closing line"


def test_a_task_added_by_one_record_is_asked_by_the_callers(monkeypatch, capsys):
    """eval's table, prune's --distill check and the report's order ask the task; no caller names it."""
    from edgeseg.cli import _print_metrics
    from edgeseg.compress.prune_finetune import PruneError, check_task_supports
    from edgeseg.recipe import PruneCfg
    from edgeseg.report.table import task_order
    from edgeseg.tasks import get_task

    monkeypatch.setitem(catalog.TASKS, "fake-semantic", "tests.test_catalog:FakeTask")
    task = get_task("fake-semantic")
    _print_metrics({"task": "fake-semantic"}, "fake")
    out = capsys.readouterr().out
    assert "fake row" in out and "fake closing line" in out
    with pytest.raises(PruneError, match="not available for fake-semantic"):
        check_task_supports(PruneCfg(ratio=0.5, distill=True, finetune_epochs=1), task, "m")
    check_task_supports(PruneCfg(ratio=0.5, distill=True, finetune_epochs=1), get_task("semantic"), "m")
    assert task_order({"semantic", "instance", "fake-semantic"})[0] == "fake-semantic"
