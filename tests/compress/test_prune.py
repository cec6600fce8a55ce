"""Structured pruning: every family prunes, keeps its output shape, reloads from its checkpoint and exports."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeseg.compress.prune import PruneConfig, PruneError, Probe, parse_latency, prune, prune_config, prune_model
from edgeseg.compress.prune_config import resolve_round_to
from edgeseg.models import create_model, get_model_info, list_models
from edgeseg.models.profile import count_macs
from tests.conftest import make_checkpoint

TEST_MODELS = [n for n in list_models(include_test=True) if n.endswith("_test")]
# Families whose model class says why it cannot be pruned are refused up front instead (test below).
REFUSED = [n for n in TEST_MODELS if create_model(n, num_classes=3).prune_refusal]


def _randomize_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Distinct BatchNorm statistics per channel, so channel magnitudes differ and kept channels are identifiable."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.1
            m.running_mean = torch.randn(n, generator=g) * 0.1
            m.running_var = torch.rand(n, generator=g) + 0.5


@pytest.mark.parametrize("name", REFUSED)
def test_a_family_that_cannot_be_pruned_is_refused_in_one_line_before_any_work(name: str, tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "model.pt", model=name, num_classes=3)
    with pytest.raises(PruneError, match=f"{name} cannot be pruned: .*RoIAlign"):
        prune(ckpt, tmp_path / "out", PruneConfig(ratio=0.5))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", [n for n in TEST_MODELS if n not in REFUSED])
def test_every_family_prunes_reloads_and_exports(name: str, tmp_path: Path) -> None:
    from edgeseg.export.torch2onnx import export_onnx
    from edgeseg.runtime.ort_rt import OrtBackend
    from edgeseg.artifacts.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(make_checkpoint(tmp_path / "model.pt", model=name, num_classes=3))
    model, meta = ckpt.model, ckpt.meta
    hw = get_model_info(name).input_size
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        shapes = [t.shape for t in _outputs(model.eval()(x))]
    rows = prune_model(model, PruneConfig(ratio=0.5, round_to=2), Probe(meta=meta, hw=hw), log=lambda _: None)
    assert rows[-1]["macs"] < 0.8 * rows[0]["macs"] and rows[-1]["params"] < rows[0]["params"]
    with torch.no_grad():
        y = _outputs(model.eval()(x))
    assert [t.shape for t in y] == shapes  # every output keeps its channels (classes, boxes, protos)

    path = save_checkpoint(tmp_path / "pruned.pt", model, meta)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []  # plain data: weights_only loads it
    reloaded = load_checkpoint(path).model
    with torch.no_grad():
        for a, b in zip(_outputs(reloaded(x)), y):
            torch.testing.assert_close(a, b)
    onnx_path = tmp_path / "pruned.onnx"
    export_onnx(reloaded, meta, onnx_path, hw=hw)
    outs = list(OrtBackend(onnx_path, threads=1)(x[:1].numpy()).values())  # by name, in graph output order
    with torch.no_grad():
        ref = _outputs(reloaded(x[:1]))
    assert len(outs) == len(ref)
    for a, b in zip(outs, ref):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-4, rtol=1e-3)


def _outputs(y: object) -> list[torch.Tensor]:
    return [y] if isinstance(y, torch.Tensor) else list(y)


def _kept(reference: torch.nn.BatchNorm2d, pruned: torch.nn.BatchNorm2d) -> list[int]:
    """Original channel index of each channel a pruned BatchNorm kept (matched by its distinct weights)."""
    ref = reference.weight.detach()
    return [int(torch.argmin((ref - w).abs())) for w in pruned.weight.detach()]


@pytest.mark.parametrize("unpool", ["indices", "compare"])
@pytest.mark.parametrize("coupled", [True, False])
def test_pruned_segnet_unpools_like_the_reference_on_kept_channels(unpool: str, coupled: bool,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    reference = create_model("segnet_test", num_classes=2, in_channels=3, unpool=unpool, widths=(16, 16),
                             depths=(1, 2)).eval()
    _randomize_norms(reference)
    pruned = create_model("segnet_test", num_classes=2, in_channels=3, unpool=unpool, widths=(16, 16),
                          depths=(1, 2)).eval()
    pruned.load_state_dict(reference.state_dict())
    if not coupled:  # control: without the coupling edge the test below must fail
        monkeypatch.setattr("edgeseg.compress.prune_graph.unpool_coupling", lambda m: contextlib.nullcontext())
    prune_model(pruned, PruneConfig(ratio=0.5, round_to=1), Probe(meta=None, hw=(32, 32)), log=lambda _: None)

    # Stage 0: the encoder's last BN gives the unpool locations, the decoder's last BN (stage 1) the values.
    enc_kept = _kept(reference.encoder[0][-1][1], pruned.encoder[0][-1][1])
    dec_kept = _kept(reference.decoder[1][-1][1], pruned.decoder[1][-1][1])
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        feat_ref, feat_p = reference.encoder[0](x), pruned.encoder[0](x)
        if unpool == "indices":
            pooled_ref, where_ref = F.max_pool2d(feat_ref, 2, 2, return_indices=True)
            pooled_p, where_p = F.max_pool2d(feat_p, 2, 2, return_indices=True)
        else:
            from edgeseg.models.segnet import max_pool_mask

            pooled_ref, where_ref = max_pool_mask(feat_ref)
            pooled_p, where_p = max_pool_mask(feat_p)
    torch.testing.assert_close(feat_p, feat_ref[:, enc_kept])  # the stem saw only output-channel pruning
    values = torch.randn(1, 16, 16, 16)  # what the decoder hands the unpool, in reference channel order
    if unpool == "indices":
        want = F.max_unpool2d(values, where_ref, 2, 2)[:, dec_kept]
        got = F.max_unpool2d(values[:, dec_kept], where_p, 2, 2)
    else:
        from edgeseg.models.segnet import mask_unpool

        want = mask_unpool(values, where_ref)[:, dec_kept]
        got = mask_unpool(values[:, dec_kept], where_p)
    if coupled:
        assert enc_kept == dec_kept
        torch.testing.assert_close(got, want)
    else:
        assert enc_kept != dec_kept and not torch.allclose(got, want)


def test_target_macs_steps_until_reached() -> None:
    model = create_model("unet_test", num_classes=2, in_channels=3)
    cfg = PruneConfig(target_macs=0.5, round_to=1, steps=10)
    rows = prune_model(model, cfg, Probe(meta=None, hw=(32, 32)), log=lambda _: None)
    assert rows[-1]["macs"] <= 0.5 * rows[0]["macs"] < rows[-2]["macs"]
    assert [r["step"] for r in rows] == list(range(len(rows)))


def test_target_latency_uses_the_measured_latency_and_reports_an_unreachable_target() -> None:
    model = create_model("unet_test", num_classes=2, in_channels=3)
    measured = []

    def latency(m: torch.nn.Module) -> float:  # stands in for ONNX Runtime timing: proportional to MACs
        measured.append(count_macs(m, (32, 32)) / 1e5)
        return measured[-1]

    start = latency(model)
    rows = prune_model(model, PruneConfig(target_latency_ms=0.6 * start, round_to=1, steps=8),
                       Probe(meta=None, hw=(32, 32), latency=latency), log=lambda _: None)
    assert rows[-1]["latency_ms"] <= 0.6 * start < rows[-2]["latency_ms"]
    with pytest.raises(PruneError, match="not reached"):
        prune_model(create_model("unet_test", num_classes=2, in_channels=3),
                    PruneConfig(target_latency_ms=1e-6, round_to=1, steps=2, max_ratio=0.5),
                    Probe(meta=None, hw=(32, 32), latency=latency), log=lambda _: None)


def test_onnx_latency_is_measured(tmp_path: Path) -> None:
    from edgeseg.compress.prune import onnx_latency_ms
    from edgeseg.artifacts.checkpoint import load_checkpoint

    ckpt = load_checkpoint(make_checkpoint(tmp_path / "m.pt"))
    ms = onnx_latency_ms(ckpt.model, ckpt.meta, (32, 32), threads=1, warmup=1, min_runs=3, min_time_s=0.0)
    assert 0 < ms < 1000


def test_prune_command_finetunes_with_distillation_and_writes_prune_json(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeseg.cli import app
    from edgeseg.artifacts.checkpoint import load_checkpoint

    src = make_checkpoint(tmp_path / "model.pt", model="unet_test")
    out = tmp_path / "pruned"
    res = CliRunner().invoke(app, ["prune", str(src), "--ratio", "0.5", "--round-to", "2", "--importance", "taylor",
                                   "--finetune-epochs", "1", "--distill", "--threads", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "prune.json").read_text())
    fig = doc["figures"]
    assert fig["after"]["macs"] < fig["before"]["macs"]
    for row in (fig["before"], fig["after"]):
        assert row["latency_ms"] > 0 and row["val"]["num_images"] == 6
    names = [c["name"] for c in doc["candidates"]]
    assert names == ["start", "pruned", "epoch 1"] and [c["name"] for c in doc["candidates"] if c["chosen"]] == [
        "pruned" if doc["finetune"]["chosen_epoch"] == 0 else "epoch 1"]
    assert fig["speed"] in res.output and ("faster" in fig["speed"]) == fig["faster"]
    assert doc["finetune"]["distill"] and doc["inputs"]["config"]["importance"] == "taylor"
    assert count_macs(load_checkpoint(out / "model.pt").model, (64, 64)) == fig["after"]["macs"]
    for written in (out / "model.pt", out / "finetune" / "last.pt"):  # pruned + its fine-tuning state: safe loads
        assert torch.serialization.get_unsafe_globals_in_checkpoint(written) == [], written


def test_bad_requests_are_one_line_errors(tmp_path: Path) -> None:
    from edgeseg.artifacts import ArtifactError
    from edgeseg.artifacts.checkpoint import load_checkpoint, read_checkpoint

    with pytest.raises(PruneError, match="exactly one of --ratio, --target-macs"):
        prune_config(ratio=0.5, target_macs=0.3)
    with pytest.raises(PruneError, match=r"importance \(--importance\).*'taylor'"):
        prune_config(ratio=0.5, importance="random")
    with pytest.raises(PruneError, match=r"ratio \(--ratio\): Input should be less than 1 \(got 1.5\)"):
        prune_config(ratio=1.5)
    assert parse_latency("40ms") == 40.0 and parse_latency("0.04s") == 40.0 and parse_latency("12.5") == 12.5
    with pytest.raises(PruneError, match="--target-latency"):
        parse_latency("fast")
    # A checkpoint whose stored layer shapes do not fit its weights names the tensor.
    path = make_checkpoint(tmp_path / "m.pt")
    payload = read_checkpoint(path)
    payload["layer_shapes"]["encoder.0.0.0"]["out_channels"] = 3
    torch.save(payload, path)
    with pytest.raises(ArtifactError, match="layer_shapes.*encoder.0.0"):
        load_checkpoint(path)


def test_instance_model_accuracy_is_the_tasks_mask_ap(tmp_path: Path) -> None:

    src = make_checkpoint(tmp_path / "model.pt", model="yolact_test", num_classes=2)
    doc = prune(src, tmp_path / "pruned", PruneConfig(ratio=0.5, round_to=2, threads=1), measure_latency=False)
    fig = doc["figures"]
    for row in (fig["before"], fig["after"]):
        val = row["val"]
        assert val["task"] == "instance" and val["num_images"] == 6
        assert {"mask_ap", "mask_ap50", "box_ap"} <= set(val) and "miou" not in val
    assert "mask_ap_drop_points" in fig and "miou_drop_points" not in fig
    with pytest.raises(PruneError, match="--distill.*not available for instance models"):
        prune(src, tmp_path / "kd", PruneConfig(ratio=0.5, distill=True, finetune_epochs=1), measure_latency=False)
    assert not (tmp_path / "kd").exists()  # refused before the folder is made


# Tiny registry variants widened to lite-like shapes (depthwise-separable units; U-Net's bilinear decoder puts a
# depthwise conv over concat(skip, upsampled), the group whose removals Torch-Pruning splits between two convs).
ALIGN_MODELS = {
    "unet_test": dict(base_width=16, separable=True, upsample="bilinear"),
    "segnet_test": dict(widths=(16, 32), depths=(1, 2), separable=True),
    "fcn_test": dict(widths=(16, 16, 32, 32, 32), head_width=32, separable=True),
}
ALIGN_CONFIGS = {
    "ratio": dict(ratio=0.5),
    "ratio75": dict(ratio=0.75),
    "global": dict(ratio=0.5, global_pruning=True),
    "macs": dict(target_macs=0.5, steps=4),
}


def _convs(model: torch.nn.Module) -> dict[str, int]:
    return {n: m.out_channels for n, m in model.named_modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))}


@pytest.mark.parametrize("how", list(ALIGN_CONFIGS))
@pytest.mark.parametrize("round_to", [4, 8])
@pytest.mark.parametrize("name", list(ALIGN_MODELS))
def test_every_pruned_conv_keeps_a_multiple_of_round_to(name: str, round_to: int, how: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=2, in_channels=3, **ALIGN_MODELS[name]).eval()
    _randomize_norms(model)
    for m in model.modules():  # uneven channel magnitudes, so importance splits coupled groups unevenly
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data *= torch.rand(m.out_channels, 1, 1, 1) * 4
    hw = get_model_info(name).input_size
    before = _convs(model)
    prune_model(model, PruneConfig(round_to=round_to, **ALIGN_CONFIGS[how]), Probe(meta=None, hw=hw),
                log=lambda _: None)
    after = _convs(model)
    assert after != before  # something was pruned
    unaligned = {n: (before[n], c) for n, c in after.items() if c != before[n] and c % round_to}
    assert not unaligned, f"pruned widths not multiples of {round_to} (name: (before, after)): {unaligned}"
    if how.startswith("ratio"):  # local ratio: every group at least 2 blocks wide loses channels (none skipped)
        whole = [n for n, c in after.items() if c == before[n] >= 2 * round_to]
        assert not whole, f"layers left unpruned at {ALIGN_CONFIGS[how]}: {whole}"
    with torch.no_grad():
        assert model(torch.randn(1, 3, *hw)).shape == (1, 2, *hw)


def test_keep_patterns_leave_layers_and_their_group_whole_and_bad_ones_are_errors() -> None:
    model = create_model("unet_test", num_classes=2, in_channels=3, base_width=16, separable=True,
                         upsample="bilinear")
    before = _convs(model)
    prune_model(model, PruneConfig(ratio=0.5, round_to=4, keep=["encoder.0", "decoder.0.*"]),
                Probe(meta=None, hw=(32, 32)), log=lambda _: None)
    after = _convs(model)
    for n in after:
        if n.startswith(("encoder.0.", "decoder.0.")):
            assert after[n] == before[n], n
    assert any(after[n] < before[n] for n in after)  # the other levels were pruned
    # A latency target honours the same exclusions and block rounding, and stops at the first step under it.
    model = create_model("unet_test", num_classes=2, in_channels=3, base_width=16, separable=True,
                         upsample="bilinear")
    start = count_macs(model, (32, 32)) / 1e5
    rows = prune_model(model, PruneConfig(target_latency_ms=0.7 * start, round_to=8, steps=6, keep=["encoder.0"]),
                       Probe(meta=None, hw=(32, 32), latency=lambda m: count_macs(m, (32, 32)) / 1e5),
                       log=lambda _: None)
    assert rows[-1]["latency_ms"] <= 0.7 * start < rows[-2]["latency_ms"]
    after = _convs(model)
    assert all(after[n] == before[n] for n in after if n.startswith("encoder.0."))
    assert all(c % 8 == 0 for n, c in after.items() if c != before[n])
    with pytest.raises(PruneError, match=r"--keep 'nothing\.here'.*matches none"):
        prune_model(create_model("unet_test", num_classes=2, in_channels=3),
                    PruneConfig(ratio=0.5, keep=["nothing.here"]), Probe(meta=None, hw=(32, 32)), log=lambda _: None)


def test_round_to_auto_is_the_ort_nchwc_block_of_this_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgeseg.compress import prune_config as P

    for flags, block in (("fpu sse avx2 fma", 8), ("fpu avx2 avx512f avx512bw", 16)):
        cpuinfo = tmp_path / f"cpuinfo{block}"
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        real = P.Path
        monkeypatch.setattr(P, "Path", lambda p: real(cpuinfo) if str(p) == "/proc/cpuinfo" else real(p))
        assert P.ort_cpu_block() == block and resolve_round_to(PruneConfig(ratio=0.5, round_to="auto")) == block
        monkeypatch.setattr(P, "Path", real)
    assert resolve_round_to(prune_config(ratio=0.5, round_to="16")) == 16
    for bad in (0, -8, "eight", 2.5, True):
        with pytest.raises(PruneError, match=r"round_to \(--round-to\)"):
            prune_config(ratio=0.5, round_to=bad)


def test_round_to_defaults_to_this_cpus_block_for_a_latency_target_and_8_otherwise() -> None:
    from edgeseg.compress.prune import ort_cpu_block

    assert resolve_round_to(PruneConfig(target_latency_ms=5)) == ort_cpu_block()
    assert resolve_round_to(PruneConfig(ratio=0.5)) == 8 and resolve_round_to(PruneConfig(target_macs=0.5)) == 8
    assert resolve_round_to(PruneConfig(target_latency_ms=5, round_to=4)) == 4


def test_ort_cpu_block_is_the_block_onnx_runtime_pads_convolutions_to_here(tmp_path: Path) -> None:
    """ORT's NCHWc transformer pads a conv's output channels to its block: 24 -> 32 and 40 -> 48 with block 16."""
    import onnx
    import onnxruntime as ort

    from edgeseg.compress.prune import ort_cpu_block

    net = torch.nn.Sequential(torch.nn.Conv2d(8, 24, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(24, 40, 3, padding=1))
    src, opt = tmp_path / "convs.onnx", tmp_path / "convs.opt.onnx"
    torch.onnx.export(net, torch.randn(1, 8, 16, 16), str(src), dynamo=False)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(opt)
    options.log_severity_level = 3
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(opt)).graph
    if not any(n.domain == "com.microsoft.nchwc" for n in graph.node):
        pytest.skip("ONNX Runtime uses no NCHWc kernels on this CPU")
    padded = sorted(int(i.dims[0]) for i in graph.initializer if len(i.dims) == 4)
    block = ort_cpu_block()
    assert padded == [-(-24 // block) * block, -(-40 // block) * block], (padded, block)
