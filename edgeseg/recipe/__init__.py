"""Recipes: the typed schema of an experiment, loaded from YAML with ``--set a.b=c`` overrides.

sections.py holds the sections and RecipeError, load.py the Recipe, its validation and loading,
compare.py what changed between two recipes.
"""

from __future__ import annotations

from edgeseg.recipe.sections import (BackendName, BenchCfg, CalibrationCfg, CalibrationMethod, ClassWeighting,
                                     DURATION_EXAMPLE, DataCfg, DataKind, DepthwiseScope, ExecuTorchCfg, ExportCfg,
                                     ExportFormat, FloatDepthwise, Importance, InstanceCfg, Int8Policy, MaskEncoding,
                                     ModelCfg, OptimizeCfg, OptimizePruner, Optimizer, PostprocessPlace, Precision,
                                     PruneCfg, QatCfg, QuantizeCfg, RecipeError, ReportCfg, ReportFormat, Scheduler,
                                     SemanticLoss, SyntheticCfg, TrainCfg, TrainDevice, parse_duration)
from edgeseg.recipe.load import (Recipe, checkpoint_recipe, load_recipe, parse_override, quickstart_path,
                                 recipe_from_dict, stored_recipe)
from edgeseg.recipe.compare import (TRAINING_SECTIONS, recipe_differences)

__all__ = ["BackendName", "BenchCfg", "CalibrationCfg", "CalibrationMethod", "ClassWeighting", "DURATION_EXAMPLE",
           "DataCfg", "DataKind", "DepthwiseScope", "ExecuTorchCfg", "ExportCfg", "ExportFormat", "FloatDepthwise",
           "Importance", "InstanceCfg", "Int8Policy", "MaskEncoding", "ModelCfg", "OptimizeCfg", "OptimizePruner",
           "Optimizer", "PostprocessPlace", "Precision", "PruneCfg", "QatCfg", "QuantizeCfg", "Recipe", "RecipeError",
           "ReportCfg", "ReportFormat", "Scheduler", "SemanticLoss", "SyntheticCfg", "TRAINING_SECTIONS", "TrainCfg",
           "TrainDevice", "checkpoint_recipe", "load_recipe", "parse_duration", "parse_override", "quickstart_path",
           "recipe_differences", "recipe_from_dict", "stored_recipe"]
