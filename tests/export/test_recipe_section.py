"""`edgeseg export` follows the recipe's export section, and artifacts describe the model that was built."""

from __future__ import annotations

import dataclasses
import json

import torch

from edgeseg.artifacts.metadata import read_onnx
from tests.conftest import tiny_recipe_dict


def _checkpoint(path, export_section):
    """A unet_test checkpoint built with depth=3 (stride 8) whose stored metadata says stride 4."""
    from edgeseg.artifacts.checkpoint import save_checkpoint
    from edgeseg.models import create_model
    from edgeseg.recipe import recipe_from_dict
    from edgeseg.train.meta import meta_for

    tree = tiny_recipe_dict()
    tree["model"]["args"] = {"depth": 3}
    tree["export"] = export_section
    recipe = recipe_from_dict(tree)
    torch.manual_seed(0)
    net = create_model("unet_test", num_classes=4, depth=3)
    meta = meta_for(net, recipe)
    assert meta.stride == 8  # meta_for reads the built model
    stale = dataclasses.replace(meta, stride=4)  # what the registry default used to give
    return save_checkpoint(path, net, stale, epoch=0, metrics={})


def test_meta_records_the_built_models_stride():
    from edgeseg.models import create_model, get_model_info
    from edgeseg.recipe import recipe_from_dict
    from edgeseg.train.meta import meta_for

    net = create_model("unet-lite", num_classes=2, depth=5)
    assert get_model_info("unet-lite").stride == 16
    assert meta_for(net, recipe_from_dict({"model": {"name": "unet-lite", "args": {"depth": 5}}})).stride == 32


def test_meta_records_the_exported_graphs_output_names():
    from edgeseg.artifacts import ModelMeta
    from edgeseg.export import artifact_meta
    from edgeseg.models import create_model
    from edgeseg.models.yolact import YolactWithPostprocess
    from edgeseg.recipe import recipe_from_dict
    from edgeseg.train.meta import meta_for

    recipe = recipe_from_dict({"model": {"name": "yolact_test", "num_classes": 2}, "data": {"kind": "synthetic"}})
    net = create_model("yolact_test", num_classes=2)
    meta = meta_for(net, recipe)
    assert meta.output_names == ["scores", "boxes", "coefs", "protos"]
    assert ModelMeta.from_dict(meta.to_dict()).output_names == meta.output_names  # stored and read back
    with_postprocess = artifact_meta(net, meta, recipe, YolactWithPostprocess(net))
    assert with_postprocess.output_names == ["det_boxes", "det_scores", "det_labels", "det_masks"]
    older = {k: v for k, v in meta.to_dict().items() if k != "output_names"}
    assert ModelMeta.from_dict(older).output_names == []  # artifacts from before the field still load


def test_cli_export_without_flags_follows_the_recipe(tmp_path):
    from typer.testing import CliRunner

    from edgeseg.cli import app

    ckpt = _checkpoint(tmp_path / "model.pt", {"formats": ["onnx"], "precisions": ["fp32", "fp16"]})
    out = tmp_path / "ex"
    res = CliRunner().invoke(app, ["export", str(ckpt), "--set", "data.image_size=48", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "export.json").read_text())
    assert doc["inputs"]["precisions"] == ["fp32", "fp16"]  # from the stored recipe's export section
    assert {(a["format"], a["precision"]) for a in doc["artifacts"]} == {("onnx", "fp32"), ("onnx", "fp16")}
    for name in ("model.onnx", "model.fp16.onnx"):
        meta = read_onnx(out / name)
        assert meta.stride == 8, name  # the built network's, not the stale stored figure
        assert meta.input_size == (48, 48), name  # --set data.image_size at export time
        assert meta.output_names == ["logits"], name
    assert doc["inputs"]["input_size"] == [48, 48]
