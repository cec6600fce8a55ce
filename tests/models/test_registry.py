"""Registry behaviour: duplicates, unknown names, defaults."""

from __future__ import annotations

import pytest

from edgeseg.models import create_model, get_model_info, list_models, registry


def test_duplicate_registration_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("unet", family="unet", stride=16)(lambda **kw: None)


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(KeyError, match="did you mean 'unet-lite'"):
        create_model("unet_lite", num_classes=2)
    with pytest.raises(KeyError, match="did you mean 'segnet'"):
        get_model_info("segnt")


def test_test_variants_hidden_by_default() -> None:
    assert "unet_test" not in list_models()
    assert "unet_test" in list_models(include_test=True)
    assert {"unet", "unet-lite", "segnet", "segnet-lite", "fcn8s", "fcn-lite"} <= set(list_models("semantic"))


def test_kwargs_override_defaults() -> None:
    model = create_model("segnet_test", num_classes=2, unpool="compare")
    assert model.unpool == "compare" and model.config["unpool"] == "compare"
    assert get_model_info("segnet_test").defaults.get("unpool", "indices") == "indices"
