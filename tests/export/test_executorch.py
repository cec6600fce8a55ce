"""ExecuTorch export: every family lowers with parity, SegNet's unpooling forms, INT8 on a trained model,
the lowering error, the phone kit, and the .pte in eval and bench."""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

pytest.importorskip("executorch.runtime", reason="the executorch extra is not installed")

from edgeseg.export.formats import ExportError  # noqa: E402
from edgeseg.export.torch2executorch import delegable_model, delegation, lower  # noqa: E402
from tests.export.conftest import QUICK_LATENCY, fitted_checkpoint  # noqa: E402

FAMILIES = {"unet_test": (32, 32), "fcn_test": (32, 32), "segnet_test": (32, 32), "yolact_test": (64, 64)}


def _checkpoint(tmp_path, name):
    from edgeseg.artifacts.checkpoint import load_checkpoint
    from tests.conftest import make_checkpoint

    return load_checkpoint(make_checkpoint(tmp_path / f"{name}.pt", model=name))


def _trained_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """Distinct statistics in every BatchNorm, as training leaves them (fresh ones are all identity, which
    hides a BatchNorm folded into the wrong conv: YOLACT's head shares its convs across FPN levels)."""
    gen = torch.Generator().manual_seed(1)
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
        bn.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
        bn.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
    return net.eval()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_lowers_to_xnnpack_with_parity(tmp_path, name):
    from edgeseg.artifacts.metadata import pte_constant_methods
    from edgeseg.runtime.executorch_rt import ExecuTorchBackend

    ckpt = _checkpoint(tmp_path, name)
    _trained_batchnorm(ckpt.model)
    net, meta, note = delegable_model(ckpt.model, ckpt.meta)
    assert (note != "") == (name == "segnet_test") and net.config.get("unpool") in (None, "arith")
    x = torch.randn(1, meta.in_channels, *FAMILIES[name])
    data, info = lower(net, x, pte_constant_methods(meta, list(net.output_names)))
    (tmp_path / "m.pte").write_bytes(data)
    out = ExecuTorchBackend(tmp_path / "m.pte")(x.numpy())
    with torch.no_grad():
        ref = ckpt.model(x)  # the checkpoint's own model: SegNet's twin must give the same outputs
    ref = ref if isinstance(ref, tuple) else (ref,)
    assert list(out) == list(net.output_names)
    for (key, got), want in zip(out.items(), ref):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4 * max(1.0, float(want.abs().max())), err_msg=key)
    if meta.task == "semantic":
        assert info["fraction_delegated"] == 1.0 and info["portable_ops"] == {}
    else:  # box decoding and FPN nearest-upsampling run on portable kernels; the convolutions are delegated
        assert 0.5 < info["fraction_delegated"] < 1.0 and info["portable_layers"]


@pytest.mark.slow
@pytest.mark.parametrize("unpool, portable", [("indices", "index_put"), ("compare", "eq.Tensor")])
def test_segnet_unpooling_forms_that_leave_xnnpack(unpool, portable):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edgeseg.models import create_model

    net = create_model("segnet_test", num_classes=3, in_channels=3, unpool=unpool).eval()
    program = torch.export.export(net, (torch.randn(1, 3, 32, 32),))
    info = delegation(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]))
    assert info["fraction_delegated"] < 0.9 and any(portable in op for op in info["portable_ops"])


class _Cumulative(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumprod(x, dim=1)


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.head = _Cumulative()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x))


def test_an_operator_that_cannot_be_lowered_is_named_with_its_layer():
    with pytest.raises(ExportError) as err:
        lower(_Net().eval(), torch.randn(1, 3, 8, 8), {})
    message = str(err.value)
    assert "\n" not in message
    assert "operator aten.cumprod.default in layer head (_Cumulative)" in message


def test_missing_package_is_a_one_line_error(hide_package):
    from edgeseg.export.torch2executorch import convert

    hide_package("executorch")
    with pytest.raises(ExportError, match=r"^ExecuTorch export needs the executorch package: pip install "
                                          r"'edgeseg\[executorch\]'$"):
        convert(None)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A briefly fitted depthwise-separable unet_test through the ``executorch`` converter: FP32 + INT8
    (shipped regardless of speed; ``float_depthwise: auto`` builds and times both INT8 candidates).

    The converter is called on an export context directly (no ONNX files) to keep the test short; the
    whole ``edgeseg export --format executorch --int8`` path is the slow CLI test below.
    """
    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.export.context import ExportContext
    from edgeseg.export.formats import FORMATS, load_converter
    from edgeseg.recipe import ExportCfg, recipe_from_dict

    root = tmp_path_factory.mktemp("pte")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared 2-core machine: a second thread only spins
    try:
        ckpt_path = fitted_checkpoint(root / "model.pt", steps=250, model_kwargs={"separable": True})
    finally:
        torch.set_num_threads(threads)
    ckpt = load_checkpoint(ckpt_path)
    cfg = ExportCfg(formats=["executorch"], precisions=["fp32", "int8"], calibration={"images": 8},
                    int8_policy="always")
    ctx = ExportContext(out=root / "out", model=ckpt.model, meta=ckpt.meta, recipe=recipe_from_dict(ckpt.meta.recipe),
                        cfg=cfg, precisions=["fp32", "int8"], checkpoint=ckpt_path)
    ctx.out.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("edgeseg.export.onnx2int8.LATENCY_KW", QUICK_LATENCY)
        mp.setattr("edgeseg.export.onnx2int8.LATENCY_ROUNDS", 1)
        load_converter(FORMATS["executorch"].converter)(ctx)
    return ckpt_path, ctx.out, {"artifacts": [a.to_dict() for a in ctx.artifacts], "notes": ctx.notes}


def _record(doc, fmt, precision):
    return next(a for a in doc["artifacts"] if a["format"] == fmt and a["precision"] == precision)


def test_fp32_and_int8_programs_with_their_figures(exported):
    _, out, doc = exported
    fp32, int8 = _record(doc, "executorch", "fp32"), _record(doc, "executorch", "int8")
    assert fp32["shipped"] and fp32["path"].endswith("model.pte")
    assert fp32["parity"]["max_abs_err"] < 1e-3 and fp32["parity"]["agreement"] >= 0.999
    assert fp32["export"]["fraction_delegated"] == 1.0 and fp32["export"]["input"] == [1, 3, 64, 64]
    assert int8["shipped"] and int8["path"].endswith("model.int8.pte") and "int8_policy=always" in int8["reason"]
    assert int8["calibration"]["split"] == "train" and int8["calibration"]["images"] == 8
    assert int8["export"]["fraction_delegated"] == 1.0 and int8["parity"]["agreement"] >= 0.9
    acc = int8["accuracy"]
    assert acc["int8"]["num_images"] == acc["fp32"]["num_images"] == 6  # the whole validation split
    assert abs(acc["miou_drop_points"]) < 3.0 and acc["fp32"]["miou"] > 0.3
    assert int8["latency"]["int8"]["backend"] == "executorch-xnnpack" and int8["speedup"] > 0


def test_int8_export_records_the_measured_mixed_precision_choice(exported):
    """``auto`` on a separable model: both INT8 programs timed, the faster shipped, export.json says which
    depthwise convs stayed float and why; no candidate file is left behind."""
    _, out, doc = exported
    int8 = _record(doc, "executorch", "int8")
    mixed = int8["mixed_precision"]
    dw_key = "int8+float_depthwise(all)"
    assert mixed["float_depthwise"] == "auto" and mixed["depthwise_convs"] == 8
    assert set(mixed["timing"]["p50_ms"]) == {"int8", dw_key} and mixed["timing"]["rounds"] >= 1
    faster = min(mixed["timing"]["p50_ms"], key=mixed["timing"]["p50_ms"].get)
    assert mixed["chosen"] == faster or mixed["timing"]["busy"]  # busy: the paired ratios decide
    floats = {k for k, why in int8["calibration"]["float_nodes"].items() if why.startswith("depthwise")}
    assert sorted(floats) == mixed["float_depthwise_nodes"] and len(floats) == (8 if mixed["chosen"] == dw_key else 0)
    assert f"shipped {mixed['chosen']}" in mixed["reason"]
    assert sorted(p.name for p in out.glob("*.pte")) == ["model.int8.pte", "model.pte"]
    assert not list(out.glob(".*"))


def test_metadata_travels_inside_the_program(exported):
    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.runtime.executorch_rt import ExecuTorchBackend

    ckpt, out, _ = exported
    meta = load_checkpoint(ckpt).meta.to_dict()
    for name, precision in (("model.pte", "fp32"), ("model.int8.pte", "int8")):
        be = ExecuTorchBackend(out / name)
        assert be.meta.to_dict() == {**meta, "precision": precision} and be.output_names == ["logits"]
    assert not list(out.glob("*.pte.json"))  # no sidecar: the .pte alone is enough


def test_phone_kit_scripts_quote_file_names(exported):
    _, out, doc = exported
    kit = out / "phone"
    assert _record(doc, "executorch", "kit")["programs"] == ["model.pte", "model.int8.pte"]
    readme = (kit / "README.md").read_text()
    assert "python -m edgeseg.bench.phone" in readme and "minibench" in readme and "xcodebuild" in readme
    for script in ("run_android.sh", "run_ios.sh"):
        text = (kit / script).read_text()
        subprocess.run(["bash", "-n", str(kit / script)], check=True)
        assert "'../model.pte' '../model.int8.pte'" in text
        for line in text.splitlines():  # every variable holding a file name is inside quotes
            if line.lstrip().startswith("#"):
                continue
            bare = re.sub(r'"[^"]*"|\'[^\']*\'', "", line)
            assert not re.search(r"\$\{?(pte|dir|name|resources|RUNNER|ADB|EXECUTORCH)\b", bare), (script, line)


def test_android_script_survives_any_file_name(exported, tmp_path):
    """A .pte named with quotes, spaces and $(...) reaches adb as one safe device path; nothing runs."""
    _, out, _ = exported
    odd = tmp_path / "it's a $(touch pwned) model.pte"
    shutil.copy(out / "model.pte", odd)
    log = tmp_path / "adb.log"
    fake_adb = tmp_path / "adb"
    fake_adb.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "$ADB_LOG"\n')
    fake_adb.chmod(0o755)
    env = {**os.environ, "ADB": str(fake_adb), "ADB_LOG": str(log), "RUNNER": str(fake_adb)}
    subprocess.run(["bash", str(out / "phone" / "run_android.sh"), "runner", str(odd)], check=True, env=env,
                   cwd=tmp_path, capture_output=True)
    shell = [ln for ln in log.read_text().splitlines() if ln.startswith("shell ")]
    assert any("/it_s_a___touch_pwned__model/model.pte" in ln for ln in shell)
    assert not any("'s" in ln or "$(" in ln for ln in shell), shell
    assert not (tmp_path / "pwned").exists() and not (out / "phone" / "pwned").exists()


def test_int8_policy_rejects_a_slower_program_under_its_own_name():
    from edgeseg.export.onnx2int8 import int8_decision
    from edgeseg.export.torch2executorch import REJECTED_INT8

    ship, reason = int8_decision(5.0, 6.0, "auto", rejected_name=REJECTED_INT8)
    assert not ship and "kept as model.int8.rejected.pte" in reason


def test_pte_in_eval_and_bench(exported, tmp_path):
    from edgeseg.bench import benchmark
    from edgeseg.evaluate import evaluate
    from edgeseg.recipe import BenchCfg

    _, out, doc = exported
    metrics = evaluate(out / "model.int8.pte")
    assert metrics["backend"] == "executorch" and metrics["num_images"] == 6
    assert metrics["miou"] == pytest.approx(_record(doc, "executorch", "int8")["accuracy"]["int8"]["miou"])
    gc.collect()  # the runtime's threadpool is resized only while no program of another size is open
    rows = benchmark([out / "model.pte"], out=tmp_path / "r.jsonl", threads=[1], batch=[1],
                     cfg=BenchCfg(warmup=1, min_runs=3, min_time_s=0.0))
    (row,) = rows
    assert not row["error"] and row["backend"] == "executorch" and row["threads"] == 1
    assert row["artifact"]["format"] == "executorch" and row["precision"] == "fp32"
    assert row["latency"]["runs"] >= 3 and row["memory"]["peak_rss_mb"] > 0
    assert row["accuracy"]["miou"] == pytest.approx(_record(doc, "executorch", "int8")["accuracy"]["fp32"]["miou"])


def _context(ckpt_path, out, **cfg):
    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.export.context import ExportContext
    from edgeseg.recipe import ExportCfg, recipe_from_dict

    ckpt = load_checkpoint(ckpt_path)
    out.mkdir(exist_ok=True)
    return ExportContext(out=out, model=ckpt.model, meta=ckpt.meta, recipe=recipe_from_dict(ckpt.meta.recipe),
                         cfg=ExportCfg(formats=["executorch"], **cfg), precisions=["fp32"], checkpoint=ckpt_path)


def test_a_program_failing_parity_is_refused_first_and_not_left(exported, tmp_path, monkeypatch, capsys):
    """The FP32 check decides before anything says "[shipped]", and the refused .pte is not written."""
    from edgeseg.export import torch2executorch as t2e
    from edgeseg.export.context import ExportContext

    ckpt_path, out, doc = exported
    program = (out / "model.pte").read_bytes()  # the program this checkpoint lowers to, without lowering again
    monkeypatch.setattr(t2e, "lower", lambda model, example, methods: (program, dict(_record(doc, "executorch",
                                                                                           "fp32")["export"])))
    monkeypatch.setattr(ExportContext, "parity_ok", lambda self, figures: False)
    ctx = _context(ckpt_path, tmp_path / "ex")
    with pytest.raises(ExportError, match=r"model.pte: ExecuTorch output differs .* not written"):
        t2e.convert(ctx)
    printed = capsys.readouterr().out
    assert "[NOT shipped] FP32 parity check failed" in printed and "[shipped]" not in printed, printed
    assert list(ctx.out.iterdir()) == []
    assert not ctx.artifacts[0].shipped


def test_instance_int8_calibrates_on_the_instance_data(tmp_path, monkeypatch):
    """The .pte INT8 calibration reads the training split as the model's task builds it (YOLACT: instance
    data; the semantic reader refused yolact's recipe and every instance INT8 .pte failed)."""
    from edgeseg.export import torch2executorch as t2e
    from tests.conftest import make_checkpoint

    seen = []

    def fake_quantize(model, example, images, per_channel=True, float_nodes=None):
        seen.extend(images)
        return model, {}

    monkeypatch.setattr(t2e, "quantize_int8", fake_quantize)
    ctx = _context(make_checkpoint(tmp_path / "y.pt", model="yolact_test"), tmp_path / "ex",
                   calibration={"images": 3})
    _, info = t2e._calibrated(ctx, ctx.model, t2e.example_input(ctx), ctx.meta, tmp_path / "y.pt")
    assert len(seen) == 3 and seen[0].shape == (1, 3, 64, 64) and info["split"] == "train"


def test_shared_weights_get_one_copy_per_use():
    from edgeseg.export.pte_lower import untie_shared_parameters

    class Shared(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)
            self.bns = torch.nn.ModuleList(torch.nn.BatchNorm2d(3) for _ in range(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bns[0](self.conv(x)) + self.bns[1](self.conv(x))

    x = torch.randn(1, 3, 8, 8)
    gm = torch.export.export(_trained_batchnorm(Shared()), (x,)).module()
    with torch.no_grad():
        before = gm(x)
    assert untie_shared_parameters(gm) == 2  # weight and bias: one extra copy each
    convs = [n for n in gm.graph.nodes if "conv" in str(n.target) and n.op == "call_function"]
    assert len({n.args[1] for n in convs}) == 2
    with torch.no_grad():
        torch.testing.assert_close(gm(x), before)


@pytest.mark.slow
def test_cli_export_format_executorch_int8(tmp_path):
    """``edgeseg export model.pt --format executorch --int8`` writes both programs, the kit and export.json."""
    from typer.testing import CliRunner

    from edgeseg.cli import app

    ckpt = fitted_checkpoint(tmp_path / "model.pt", steps=60)
    result = CliRunner().invoke(app, ["export", str(ckpt), "--format", "executorch", "--int8", "--calib-images", "4",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "export.json").read_text())
    kinds = {(a["format"], a["precision"]) for a in doc["artifacts"]}
    assert {("onnx", "fp32"), ("executorch", "fp32"), ("executorch", "int8"), ("executorch", "kit")} <= kinds
    assert (tmp_path / "out" / "model.pte").is_file() and (tmp_path / "out" / "phone" / "run_android.sh").is_file()
    int8 = _record(doc, "executorch", "int8")
    assert (tmp_path / "out" / ("model.int8.pte" if int8["shipped"] else "model.int8.rejected.pte")).is_file()


def test_instance_int8_keeps_the_decode_tail_in_float():
    """PT2E INT8 of a YOLACT keeps each head's last conv and its decode in float, as the ONNX INT8 does:
    its boxes end closer to FP32 than those of a graph quantized whole."""
    from edgeseg.export.torch2executorch import quantize_int8
    from edgeseg.models import create_model
    from edgeseg.tasks import get_task

    torch.manual_seed(0)
    model = create_model("yolact_test", num_classes=2).eval()
    names = tuple(model.output_names)
    x = torch.randn(1, 3, 64, 64)
    images = [np.random.default_rng(i).standard_normal((1, 3, 64, 64)).astype(np.float32) for i in range(4)]
    tail, kept = quantize_int8(model, x, images, float_nodes=lambda gm: get_task("instance").int8_float_fx_nodes(gm, names))
    whole, none_kept = quantize_int8(model, x, images)
    assert none_kept == {}
    heads = {why.split("'")[1] for why in kept.values() if why.startswith("last layer")}
    assert heads == set(names)  # one float last layer per head
    assert get_task("semantic").int8_float_fx_nodes(None, ("logits",)) == {}
    with torch.no_grad():
        ref, a, b = model(x), tail(x), whole(x)
    box = names.index("boxes")
    assert (a[box] - ref[box]).abs().max() < 0.75 * (b[box] - ref[box]).abs().max()


def test_segnet_unpool_mask_stays_float_in_int8():
    """SegNet's arith unpool mask (sub/clamp/ceil/mul/cat) is kept out of PT2E INT8; other models keep nothing."""
    from edgeseg.export.torch2executorch import model_float_fx_nodes
    from edgeseg.models import create_model

    segnet = create_model("segnet_test", num_classes=2, unpool="arith").eval()
    gm = torch.export.export(segnet, (torch.randn(1, 3, 32, 32),)).module()
    kept = model_float_fx_nodes(segnet, gm)
    targets = {str(n.target).split(".")[1] for n in gm.graph.nodes if n.name in kept}
    assert {"sub", "clamp", "ceil", "mul", "cat"} <= targets and "conv2d" not in targets
    unet = create_model("unet_test", num_classes=2).eval()
    assert model_float_fx_nodes(unet, torch.export.export(unet, (torch.randn(1, 3, 32, 32),)).module()) == {}


# Latency-aware mixed precision: depthwise convs in float inside the INT8 program (edgeseg/export/pte_mixed.py).

def _unet_test(separable=True):
    from edgeseg.models import create_model

    torch.manual_seed(0)
    return create_model("unet_test", num_classes=2, in_channels=3, separable=separable).eval()


def _convs(gm):
    return [n for n in gm.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target)]


def test_chooser_names_exactly_the_depthwise_convs():
    from edgeseg.export.pte_mixed import depthwise_float_nodes

    net = _unet_test()
    gm = torch.export.export(net, (torch.randn(1, 3, 32, 32),)).module()
    weights = dict(gm.named_parameters())
    dw_modules = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1]
    chosen = depthwise_float_nodes(gm)
    groups = {n.name: n.args[6] if len(n.args) > 6 else 1 for n in _convs(gm)}
    assert len(chosen) == len(dw_modules) == 8 and set(chosen) <= set(groups)
    assert all(groups[name] > 1 for name in chosen) and all(g == 1 for n, g in groups.items() if n not in chosen)
    for node in _convs(gm):  # a depthwise weight has one input channel per group
        assert (weights[node.args[1].target].shape[1] == 1) == (node.name in chosen)
    full = depthwise_float_nodes(gm, "full_res")
    assert full and set(full) < set(chosen) and all("32x32" in why for why in full.values())
    plain = _unet_test(separable=False)
    assert depthwise_float_nodes(torch.export.export(plain, (torch.randn(1, 3, 32, 32),)).module()) == {}
    with pytest.raises(ValueError, match="scope"):
        depthwise_float_nodes(gm, "half")


@pytest.mark.parametrize("keep_float", [True, False])
def test_float_depthwise_always_and_never_in_the_quantized_graph(keep_float, tmp_path):
    """Depthwise convs named float keep float weights while every other conv is INT8;
    without them every conv is INT8; the mixed program lowers whole, runs and stays close to FP32."""
    from edgeseg.export.pte_mixed import depthwise_float_nodes
    from edgeseg.export.torch2executorch import quantize_int8

    net = _unet_test()
    x = torch.randn(1, 3, 32, 32)
    images = [np.random.default_rng(i).standard_normal((1, 3, 32, 32)).astype(np.float32) for i in range(4)]
    q, kept = quantize_int8(net, x, images, float_nodes=depthwise_float_nodes if keep_float else None)
    assert len(kept) == (8 if keep_float else 0)
    convs = _convs(q)
    dw = [n for n in convs if len(n.args) > 6 and n.args[6] > 1]
    assert len(dw) == 8 and len(convs) > len(dw)
    for conv in convs:
        quantized = not (keep_float and conv in dw)
        assert ("dequantize" in str(conv.args[1].target)) == quantized, conv.name  # int8 weight or float one
    if keep_float:
        data, info = lower(q, x, {})
        assert info["fraction_delegated"] == 1.0
        (tmp_path / "m.pte").write_bytes(data)
        from executorch.runtime import Runtime

        out = Runtime.get().load_program(tmp_path / "m.pte").load_method("forward").execute([x])[0]
        with torch.no_grad():
            ref = net(x)
        assert float((out - ref).abs().max()) < 0.25 * float(ref.abs().max())
        assert float((out.argmax(1) == ref.argmax(1)).float().mean()) > 0.85


class _Ctx:
    """The little of an ExportContext that ``choose_int8`` reads."""

    def __init__(self, mode, scope="all"):
        from edgeseg.recipe import ExportCfg

        self.cfg = ExportCfg(executorch={"float_depthwise": mode, "depthwise_scope": scope})
        self.threads, self.said = 2, []

    def say(self, text, note=False):
        self.said.append(text)


def _fake_build(has_depthwise=True):
    """A ``build`` that records what it was asked for; the graph it shows has 8 depthwise convs (or none)."""
    gm = torch.export.export(_unet_test(separable=has_depthwise), (torch.randn(1, 3, 32, 32),)).module()
    calls = []

    def build(key, extra, seen):
        seen(gm)
        calls.append((key, sorted(extra(gm)) if extra else []))
        return f"{key}.pte"
    return build, calls


@pytest.mark.parametrize("mode, dw_ms, chosen", [("auto", 4.0, "int8+float_depthwise(all)"),
                                                 ("auto", 6.0, "int8"), ("always", None, "int8+float_depthwise(all)"),
                                                 ("never", None, "int8")])
def test_choose_int8_follows_the_switch_and_the_measurement(monkeypatch, mode, dw_ms, chosen):
    from edgeseg.export import pte_mixed
    from edgeseg.export.int8_timing import RatioSamples

    timed = []

    def fake_measure(ctx, paths, opener=None, backend=""):
        timed.append(dict(paths))
        return ({"fp32": {"p50_ms": 5.0}, "int8": {"p50_ms": dw_ms}}, RatioSamples(ratios=[5.0 / dw_ms] * 2))

    monkeypatch.setattr("edgeseg.export.onnx2int8.measure_paired", fake_measure)
    build, calls = _fake_build()
    ctx = _Ctx(mode)
    record = pte_mixed.choose_int8(ctx, build, opener=None)
    assert record["chosen"] == chosen and record["float_depthwise"] == mode and record["depthwise_convs"] == 8
    built = [key for key, _ in calls]
    assert built == {"auto": ["int8", "int8+float_depthwise(all)"], "always": ["int8+float_depthwise(all)"],
                     "never": ["int8"]}[mode]
    assert all(len(extra) == (8 if "depthwise" in key else 0) for key, extra in calls)
    assert record["float_depthwise_nodes"] == (sorted(calls[-1][1]) if "depthwise" in chosen else [])
    if mode == "auto":  # both timed, all-INT8 in the reference slot; the figures are in the record
        assert timed == [{"fp32": "int8.pte", "int8": "int8+float_depthwise(all).pte"}]
        assert record["timing"]["p50_ms"] == {"int8": 5.0, "int8+float_depthwise(all)": dw_ms}
        assert f"{dw_ms:.2f} ms" in record["reason"] and record["reason"].endswith(f"shipped {chosen}")
    else:
        assert timed == [] and f"float_depthwise={mode}" in record["reason"]


def test_choose_int8_auto_without_depthwise_convs_builds_one_program(monkeypatch):
    from edgeseg.export import pte_mixed

    monkeypatch.setattr("edgeseg.export.onnx2int8.measure_paired", lambda *a, **k: pytest.fail("nothing to time"))
    build, calls = _fake_build(has_depthwise=False)
    record = pte_mixed.choose_int8(_Ctx("auto"), build, opener=None)
    assert [key for key, _ in calls] == ["int8"] and record["chosen"] == "int8"
    assert record["depthwise_convs"] == 0 and "no depthwise convs" in record["reason"]


def test_pick_faster_on_a_busy_machine_uses_the_paired_ratios():
    from edgeseg.export.pte_mixed import pick_faster

    # best p50s say "b" (a lucky quiet moment), the paired ratios say "a" is faster round after round
    chosen, reason, record = pick_faster({"a": 5.0, "b": 4.0}, [0.9, 0.88, 0.91, 0.89], "1 core busy", "a", "b")
    assert chosen == "a" and "busy" in reason and "median a/b ratio 0.895" in reason and record["ratio_ci95"][1] < 1.0
    # "b" clearly faster in every round: the interval lies above 1
    assert pick_faster({"a": 5.0, "b": 4.0}, [1.2, 1.22, 1.19, 1.21], "1 core busy", "a", "b")[0] == "b"
    # undecided (a burst of load in one round widens the interval past 1): the base program stays
    chosen, _, record = pick_faster({"a": 5.0, "b": 4.0}, [1.1, 1.12, 0.6, 1.11], "1 core busy", "a", "b")
    assert chosen == "a" and record["certainty"] == "undecided on a busy machine: kept a"
    assert pick_faster({"a": 5.0, "b": 4.0}, [1.2, 1.3], "", "a", "b")[0] == "b"


def test_float_depthwise_bad_value_is_a_one_line_error_naming_the_field():
    from edgeseg.recipe import RecipeError, load_recipe

    with pytest.raises(RecipeError) as err:
        load_recipe(None, ["export.executorch.float_depthwise=sometimes"])
    assert "\n" not in str(err.value) and "export.executorch.float_depthwise" in str(err.value)
