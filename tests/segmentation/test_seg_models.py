"""Segmentation models: output size for odd inputs, gradients, options and local weights."""

from __future__ import annotations

from typing import Any

import pytest
import timm
import torch

from visionzoo import create_model, list_models, model_tasks

H, W = 21, 37  # odd, no multiple of any model stride; tiny to keep the CPU tests fast
SMALL = {
    "unet": {"base_channels": 8},
    "fcn": {"head_channels": 32},
    "deeplabv3": {"aspp_channels": 32},
    "deeplabv3plus": {"aspp_channels": 32},
}


def _check_forward_backward(model: torch.nn.Module, num_classes: int = 3) -> None:
    """Output (B, num_classes, H, W) for an odd-sized input; every parameter gets a finite grad."""
    x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(0))
    out = model.train()(x)
    assert out.shape == (2, num_classes, H, W)
    out.square().mean().backward()
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    assert any(p.grad.abs().sum() > 0 for p in params.values())


def test_registry_lists_the_segmentation_models() -> None:
    names = list_models("segmentation")
    assert {"unet", "fcn", "deeplabv3", "deeplabv3plus"} <= set(names)
    assert all("segmentation" in model_tasks(n) for n in names)


@pytest.mark.parametrize("name", list_models("segmentation"))
def test_every_registered_model(name: str) -> None:
    """Default architecture options (resnet18 for timm encoders), narrower heads for speed."""
    model = create_model(name, num_classes=3, **SMALL.get(name, {}))
    assert model.num_classes == 3
    _check_forward_backward(model)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("unet", {"encoder": None, "base_channels": 4, "depth": 3}),
        ("unet", {"encoder": "resnet18"}),
        ("deeplabv3", {"output_stride": 8, "aspp_channels": 32}),
        ("deeplabv3plus", {"output_stride": 8, "aspp_channels": 32}),
        ("fcn", {"variant": "32s", "head_channels": 32}),
        ("fcn", {"variant": "16s", "head_channels": 32}),
    ],
)
def test_model_options(name: str, kwargs: dict[str, Any]) -> None:
    _check_forward_backward(create_model(name, num_classes=3, **kwargs))


def test_unet_plain_has_no_timm_encoder_and_honours_depth() -> None:
    model = create_model("unet", num_classes=2, encoder=None, base_channels=4, depth=3)
    assert not hasattr(model.encoder, "feature_info")
    assert model.stride == 8
    assert len(model.decoder) == 3


def test_fcn_variants_have_skip_layers() -> None:
    counts = {
        v: len(create_model("fcn", num_classes=2, variant=v, head_channels=8).skip_scores)
        for v in ("32s", "16s", "8s")
    }
    assert counts == {"32s": 0, "16s": 1, "8s": 2}


def test_deeplab_output_stride_sets_encoder_stride() -> None:
    """With OS 8 the deepest features are 1/8 of the input, with OS 16 they are 1/16."""
    x = torch.randn(1, 3, 32, 48)
    for os_ in (8, 16):
        model = create_model("deeplabv3", num_classes=2, output_stride=os_, aspp_channels=8).eval()
        with torch.no_grad():
            assert model.encoder(x)[-1].shape[-2:] == (32 // os_, 48 // os_)


def test_fcn_bad_variant_raises() -> None:
    with pytest.raises(ValueError, match="4s"):
        create_model("fcn", num_classes=2, variant="4s")


@pytest.mark.parametrize("name", ["deeplabv3", "deeplabv3plus"])
def test_deeplab_bad_output_stride_raises(name: str) -> None:
    with pytest.raises(ValueError, match="32"):
        create_model(name, num_classes=2, output_stride=32)


def test_unknown_encoder_raises() -> None:
    with pytest.raises(ValueError, match="no_such_net"):
        create_model("unet", num_classes=2, encoder="no_such_net")


def test_pretrained_file_is_loaded(tmp_path) -> None:
    """A full timm classification state dict loads into the features-only encoder."""
    torch.manual_seed(123)
    ref = timm.create_model("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    torch.manual_seed(0)  # a different init, so equality can only come from the file
    model = create_model("unet", num_classes=2, encoder="resnet18", pretrained_file=str(path))
    enc = dict(model.encoder.named_parameters())
    assert torch.equal(enc["conv1.weight"], ref.conv1.weight)
    assert torch.equal(enc["layer4.1.conv2.weight"], ref.layer4[1].conv2.weight)
    scratch = create_model("unet", num_classes=2, encoder="resnet18")
    assert not torch.equal(scratch.encoder.conv1.weight, ref.conv1.weight)


def test_missing_pretrained_file_raises(tmp_path) -> None:
    path = tmp_path / "nope" / "r18.pth"
    with pytest.raises(FileNotFoundError, match="r18.pth") as info:
        create_model("unet", num_classes=2, encoder="resnet18", pretrained_file=str(path))
    assert str(path) in str(info.value)
