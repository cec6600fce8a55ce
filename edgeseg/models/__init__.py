"""Segmentation models. Each family module registers its variants when imported here by name."""

from edgeseg.models import fcn, maskrcnn, segnet, unet, yolact  # noqa: F401  (explicit family imports fill the registry)
from edgeseg.models.registry import ModelInfo, create_model, get_model_info, list_models, register_model

__all__ = ["ModelInfo", "create_model", "get_model_info", "list_models", "register_model"]
