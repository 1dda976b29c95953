"""Registry behaviour and the model configs ↔ registry correspondence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import visionzoo
from visionzoo.core.module import RUNTIME_KEYS, split_model_spec
from visionzoo.registry import RegistryError, model_info, model_tasks

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Models of the package itself (tests register toy models of their own).
PACKAGE_MODELS = [
    m for m in visionzoo.list_models() if model_info(m).factory.__module__.startswith("visionzoo.")
]


def model_configs() -> dict[str, dict]:
    return {
        p.stem: yaml.safe_load(p.read_text()) for p in sorted((CONFIGS / "model").glob("*.yaml"))
    }


def test_every_model_config_names_a_registered_model() -> None:
    for stem, cfg in model_configs().items():
        assert cfg["name"] == stem, f"configs/model/{stem}.yaml must set name: {stem}"
        assert cfg["name"] in PACKAGE_MODELS


def test_every_registered_model_has_a_config() -> None:
    assert set(PACKAGE_MODELS) == set(model_configs())
    for stem, cfg in model_configs().items():  # `model.compile=true` works for every model
        assert set(RUNTIME_KEYS) <= set(cfg), f"configs/model/{stem}.yaml lacks {RUNTIME_KEYS}"


def test_model_config_task_matches_a_task_config() -> None:
    tasks = {p.stem for p in (CONFIGS / "task").glob("*.yaml")}
    for name in PACKAGE_MODELS:
        assert set(model_tasks(name)) <= tasks


def test_list_models_filters_by_task() -> None:
    seg = visionzoo.list_models("segmentation")
    assert {"unet", "fcn", "deeplabv3", "deeplabv3plus"} <= set(seg)
    assert visionzoo.list_models("iqa") == [] or "unet" not in visionzoo.list_models("iqa")


def test_unknown_model_message_lists_models() -> None:
    with pytest.raises(RegistryError) as err:
        visionzoo.create_model("no_such_net", num_classes=2)
    assert "no_such_net" in str(err.value) and "unet" in str(err.value)


def test_duplicate_registration_is_refused() -> None:
    from visionzoo.family import Family
    from visionzoo.registry import register_family, register_generator, register_loss

    with pytest.raises(RegistryError, match="model 'unet' is registered twice"):
        visionzoo.register_model("segmentation", "unet")(lambda **kw: None)
    with pytest.raises(RegistryError, match="loss 'dice' is registered twice"):
        register_loss("dice")(lambda **kw: None)
    with pytest.raises(RegistryError, match="synthetic dataset 'segmentation_shapes'"):
        register_generator("segmentation_shapes")(lambda out, **kw: None)
    with pytest.raises(RegistryError, match="task family 'segmentation'"):
        register_family(Family("segmentation", object, "unet", "synthetic_segmentation"))
    assert model_info("unet").factory.__module__ == "visionzoo.segmentation.models.unet"


def test_a_model_may_serve_several_families_and_carries_metadata() -> None:
    @visionzoo.register_model(("reg_test_a", "reg_test_b"), trainable=False, higher_is_better=False)
    def shared_scorer() -> torch.nn.Module:
        return torch.nn.Identity()

    assert visionzoo.list_models("reg_test_a") == visionzoo.list_models("reg_test_b")
    assert visionzoo.list_models("reg_test_a") == ["shared_scorer"]
    info = model_info("shared_scorer")
    assert info.tasks == ("reg_test_a", "reg_test_b")
    assert (info.trainable, info.higher_is_better) == (False, False)
    assert model_info("unet").trainable and model_info("unet").higher_is_better is None


DENSE_MODELS = [m for m in PACKAGE_MODELS if {"detection", "segmentation"} & set(model_tasks(m))]


@pytest.mark.parametrize("name", DENSE_MODELS)
def test_forward_every_registered_model(name: str) -> None:
    """Each detection / segmentation model's config defaults build a model that follows its
    family's contract: per-pixel logits (segmentation); a loss dict in training and boxes in
    eval (detection). The other families' models are checked by their own tests and, through
    the family default, by tests/test_families.py."""
    _, kwargs, _ = split_model_spec(model_configs()[name])  # drops compile / channels_last
    cfg = {
        k: v
        for k, v in kwargs.items()
        if not (isinstance(v, str) and v.startswith("${"))  # interpolations
    }
    cfg["num_classes"] = 3
    model = visionzoo.create_model(name, **cfg)
    if "detection" in model_tasks(name):
        images = torch.rand(2, 3, 64, 96)
        targets = [
            {"boxes": torch.tensor([[8.0, 8.0, 40.0, 30.0]]), "labels": torch.tensor([2])},
            {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long)},
        ]
        losses = model.train()(images, targets)
        assert torch.isfinite(losses["loss"]) and losses["loss"].requires_grad
        with torch.no_grad():
            preds = model.eval()(images)
        assert len(preds) == 2
        for p in preds:
            assert p["boxes"].shape[1:] == (4,) and len(p["scores"]) == len(p["labels"])
            assert p["labels"].numel() == 0 or int(p["labels"].max()) < 3
        return
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 40, 56))
    assert out.shape == (1, 3, 40, 56)
    assert torch.isfinite(out).all()
