"""The Recipe, its validation with clear errors, ``--set a.b=c`` overrides and loading.

A recipe is validated by pydantic with ``extra="forbid"``: an unknown key is an error that names the
file, the dotted field and the closest valid key. Relative paths resolve against the recipe file.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from edgeseg.artifacts import text_sha256
from edgeseg.recipe.sections import (BenchCfg, DataCfg, ExportCfg, InstanceCfg, ModelCfg, OptimizeCfg, PruneCfg,
                                     QuantizeCfg, RecipeError, ReportCfg, TrainCfg, _Strict)


class Recipe(_Strict):
    """One experiment: model, data, training and the later pipeline stages."""

    name: str = "experiment"
    model: ModelCfg = Field(default_factory=ModelCfg)
    data: DataCfg = Field(default_factory=DataCfg)
    train: TrainCfg = Field(default_factory=TrainCfg)
    prune: PruneCfg | None = None
    quantize: QuantizeCfg | None = None
    export: ExportCfg | None = None
    bench: BenchCfg | None = None
    report: ReportCfg | None = None
    optimize: OptimizeCfg | None = None
    instance: InstanceCfg = Field(default_factory=InstanceCfg)

    @model_validator(mode="after")
    def _one_weight_per_class(self) -> Recipe:
        weights = self.train.class_weights
        if isinstance(weights, list) and len(weights) != self.model.num_classes:
            raise ValueError(f"train.class_weights has {len(weights)} values but model.num_classes is "
                             f"{self.model.num_classes}; give one weight per class")
        return self

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError("must be a plain folder name (no '/', not starting with '.')")
        return v

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (paths as strings)."""
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """Stable hash of the recipe's content (not of its file)."""
        return text_sha256(yaml.safe_dump(self.to_dict(), sort_keys=True))


def _valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        for cand in getattr(ann, "__args__", ()) or (ann,):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                keys.extend(_valid_keys(cand, prefix + name + "."))
    return keys


def _suggest(bad: str) -> str:
    close = difflib.get_close_matches(bad, _valid_keys(Recipe), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


_UNION_TAGS = ("int", "float", "str", "bool", "none")


def _field_path(loc: tuple[Any, ...]) -> str:
    """Dotted field path without pydantic's union-member tags (``literal[...]``, ``list[float]``, ``int``)."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in _UNION_TAGS)))


def _format_errors(err: ValidationError, source: str) -> str:
    lines: dict[str, str] = {}
    for e in err.errors():
        loc = _field_path(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.setdefault(loc, f"{source}: unknown key '{loc}'{_suggest(loc)}")
        elif not loc:  # a check across sections (its message names the fields)
            lines.setdefault(msg, f"{source}: {msg}")
        elif loc in lines:  # another member of a union: one line per field
            lines[loc] = lines[loc].replace(" (got ", f", or {msg[0].lower() + msg[1:]} (got ", 1)
        else:
            lines[loc] = f"{source}: field '{loc}': {msg} (got {e.get('input')!r})"
    return "\n".join(lines.values())


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=c`` into (["a", "b"], yaml-typed value)."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise RecipeError(f"--set {text!r}: value is not valid YAML: {exc}") from None
    return key.strip().split("."), value


def _apply_override(tree: dict[str, Any], path: list[str], value: Any, text: str) -> None:
    node = tree
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"--set {text!r}: '{'.'.join(path[:i + 1])}' is a value, not a section")
        node = child
    node[path[-1]] = value


def _resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    root = recipe.data.root
    if root is not None and not root.is_absolute():
        recipe.data.root = (base / root).resolve()
    ann = recipe.data.annotations
    if isinstance(ann, dict):
        recipe.data.annotations = {k: v if v.is_absolute() else (base / v).resolve() for k, v in ann.items()}
    elif ann is not None and not ann.is_absolute():
        recipe.data.annotations = (base / ann).resolve()
    return recipe


def recipe_from_dict(tree: dict[str, Any], source: str = "<recipe>", base_dir: Path | None = None) -> Recipe:
    """Validate a dict into a Recipe; relative paths resolve against ``base_dir``."""
    try:
        recipe = Recipe.model_validate(tree)
    except ValidationError as err:
        raise RecipeError(_format_errors(err, source)) from None
    return _resolve_paths(recipe, base_dir or Path.cwd())


def stored_recipe(tree: dict[str, Any], overrides: list[str] | None = None, source: str = "<stored recipe>") -> Recipe:
    """The recipe an artifact stores (a plain dict), with ``--set`` overrides applied."""
    tree = dict(tree)
    for text in overrides or []:
        keys, value = parse_override(text)
        _apply_override(tree, keys, value, text)
    return recipe_from_dict(tree, source=source)


def checkpoint_recipe(ckpt: Any, recipe: str | Path | None, overrides: list[str] | None) -> tuple[Recipe, str]:
    """The recipe a verb on a checkpoint works with: ``recipe`` if given, else the one the checkpoint stores.

    Returns the recipe and where it came from (the file, or "stored in checkpoint").
    """
    if recipe is not None:
        return load_recipe(recipe, overrides), str(recipe)
    if not ckpt.meta.recipe:
        raise RecipeError(f"{ckpt.path}: the checkpoint stores no recipe; pass recipe= (--data RECIPE) to say "
                          "where calibration and validation images come from")
    return stored_recipe(ckpt.meta.recipe, overrides, source=f"{ckpt.path} (stored recipe)"), "stored in checkpoint"


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Load a YAML recipe (``None``: the embedded quickstart) and apply ``--set`` overrides."""
    path = Path(path) if path is not None else quickstart_path()
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    if tree is None:  # silently training the defaults would hide a truncated or wrong file
        raise RecipeError(f"{path}: the recipe is empty; expected sections (name, model, data, train, ...); "
                          "run without a recipe for the built-in quickstart")
    if not isinstance(tree, dict):
        raise RecipeError(f"{path}: expected a mapping of sections (name, model, data, train, ...)")
    for text in overrides or []:
        keys, value = parse_override(text)
        _apply_override(tree, keys, value, text)
    return recipe_from_dict(tree, source=str(path), base_dir=path.parent.resolve())


def quickstart_path() -> Path:
    """The embedded default recipe shipped inside the package."""
    return Path(__file__).parents[1] / "recipes" / "quickstart.yaml"
