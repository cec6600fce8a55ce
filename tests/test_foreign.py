"""Bring-your-own ONNX in `eval` and `predict`: with --data RECIPE a file without edgeseg metadata is read
like the same model with metadata; without it, a one-line error."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
import yaml
from PIL import Image

from edgeseg.evaluate import evaluate
from edgeseg.foreign import ForeignModelError, adopt_foreign
from edgeseg.predict import predict
from tests.conftest import make_checkpoint, tiny_recipe_dict


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from edgeseg.artifacts.checkpoint import load_checkpoint
    from edgeseg.export.torch2onnx import export_onnx

    root = tmp_path_factory.mktemp("foreign")
    ckpt = load_checkpoint(make_checkpoint(root / "model.pt"))
    ours = root / "model.onnx"
    export_onnx(ckpt.model.eval(), ckpt.meta, ours, hw=(64, 64), simplify=False)
    model = onnx.load(str(ours))
    del model.metadata_props[:]  # as a file from another toolkit would be
    theirs = root / "theirs.onnx"
    onnx.save(model, str(theirs))
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict("unet_test", num_classes=4)))
    image = root / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    return {"ours": ours, "theirs": theirs, "recipe": recipe, "image": image, "root": root}


def test_eval_with_a_recipe_matches_the_same_model_with_metadata(files):
    mine = evaluate(files["ours"], recipe=files["recipe"])
    foreign = evaluate(files["theirs"], recipe=files["recipe"])
    assert foreign["num_images"] == mine["num_images"] == 6
    assert foreign["miou"] == pytest.approx(mine["miou"]) and foreign["iou"] == pytest.approx(mine["iou"])


def test_eval_without_a_recipe_asks_for_one(files):
    with pytest.raises(ForeignModelError, match=r"no edgeseg metadata; `edgeseg eval` needs --data RECIPE"):
        evaluate(files["theirs"])


def test_predict_with_a_recipe_writes_what_the_metadata_model_writes(files, tmp_path):
    (mine,) = predict(files["ours"], [files["image"]], tmp_path / "mine")
    (theirs,) = predict(files["theirs"], [files["image"]], tmp_path / "theirs", data=files["recipe"])
    assert np.array_equal(np.asarray(Image.open(mine["mask"])), np.asarray(Image.open(theirs["mask"])))


def test_predict_without_a_recipe_is_one_line_exit_2_and_writes_nothing(files, tmp_path, monkeypatch, capsys):
    from edgeseg.cli import main

    monkeypatch.setattr(sys, "argv", ["edgeseg", "predict", str(files["theirs"]), str(files["image"]),
                                      "--out", str(tmp_path / "p")])
    monkeypatch.delenv("EDGESEG_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1, err
    assert "`edgeseg predict` needs --data RECIPE" in err
    assert list(tmp_path.iterdir()) == []


def test_a_recipe_with_another_class_count_is_refused(files, tmp_path):
    from edgeseg.runtime.ort_rt import OrtBackend

    be = OrtBackend(files["theirs"], foreign=True)
    assert be.foreign and be.meta.num_classes == 4
    other = tmp_path / "r.yaml"
    other.write_text(yaml.safe_dump(tiny_recipe_dict("unet_test", num_classes=3)))
    with pytest.raises(ForeignModelError, match="outputs 4 classes but .* has model.num_classes 3"):
        adopt_foreign(be, other)
    note = adopt_foreign(be, files["recipe"])
    assert "classes and normalisation from" in note and be.meta.mean == [0.5] * 3 and be.meta.input_size == (64, 64)
