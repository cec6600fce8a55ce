from pathlib import Path

import pytest

from edgeseg.recipe import RecipeError, load_recipe, quickstart_path


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_quickstart_is_embedded_and_valid():
    r = load_recipe(None)
    assert quickstart_path().is_file()
    assert r.model.name == "unet-lite" and r.data.kind == "synthetic"


def test_one_quickstart_file():
    """recipes/quickstart.yaml (what the README shows) is the embedded default itself, not a copy."""
    shown = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    assert shown.is_symlink() and shown.resolve() == quickstart_path().resolve()


def test_unknown_key_names_file_field_and_suggests(tmp_path):
    p = write(tmp_path, "name: x\ntrain: {epocs: 3}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert str(p) in msg and "train.epocs" in msg and "train.epochs" in msg


def test_wrong_type_names_field(tmp_path):
    p = write(tmp_path, "train: {batch_size: many}\n")
    with pytest.raises(RecipeError, match=r"train\.batch_size"):
        load_recipe(p)


def test_overrides_are_typed_and_dotted(tmp_path):
    p = write(tmp_path, "name: x\n")
    r = load_recipe(p, ["model.name=unet", "train.epochs=1", "data.image_size=96", "train.lr=3e-4",
                        "data.classes=[a, b]"])
    assert r.model.name == "unet" and r.train.epochs == 1 and r.data.size_hw == (96, 96)
    assert r.train.lr == pytest.approx(3e-4) and r.data.classes == ["a", "b"]


def test_bad_override(tmp_path):
    p = write(tmp_path, "name: x\n")
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        load_recipe(p, ["train.epochs"])
    with pytest.raises(RecipeError, match="did you mean 'train.batch_size'"):
        load_recipe(p, ["train.batchsize=3"])


def test_relative_root_resolves_against_recipe_file(tmp_path):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "r.yaml"
    p.write_text("data: {kind: folder, root: ../data}\n")
    assert load_recipe(p).data.root == (tmp_path / "data").resolve()


def test_missing_and_non_mapping_files(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    r = load_recipe(path)
    assert r.name


def test_choice_lists_come_from_the_dispatch_tables(tmp_path):
    from edgeseg.catalog import FORMATS, PRECISIONS, REPORT_FORMATS, backend_choices

    BACKEND_CHOICES = backend_choices()

    p = write(tmp_path, "name: x\n")
    tables = {"export.formats": FORMATS, "export.precisions": PRECISIONS, "bench.backends": BACKEND_CHOICES,
              "report.formats": REPORT_FORMATS}
    for key, table in tables.items():
        assert load_recipe(p, [f"{key}=[{', '.join(table)}]"]) is not None  # every table entry is accepted
        with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
            load_recipe(p, [f"{key}=[coreml]"])


def test_one_set_of_bench_defaults():
    import inspect

    from edgeseg.bench.core import BenchSettings
    from edgeseg.bench.runner import _parser
    from edgeseg.cli import bench
    from edgeseg.recipe import BenchCfg

    want = BenchSettings()
    cfg = BenchCfg()
    assert (cfg.warmup, cfg.min_runs, cfg.min_time_s) == (want.warmup, want.min_runs, want.min_time_s)
    args = _parser().parse_args(["m.onnx"])
    assert (args.warmup, args.min_runs, args.min_time) == (want.warmup, want.min_runs, want.min_time_s)
    cli = {n: p.default.default for n, p in inspect.signature(bench).parameters.items()
           if n in ("warmup", "min_runs", "min_time")}
    assert (cli["warmup"], cli["min_runs"], cli["min_time"]) == (want.warmup, want.min_runs, want.min_time_s)
