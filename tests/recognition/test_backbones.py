"""Embedding backbones: arcface_torch state-dict layout (keys and shapes written independently in
``fixtures/make_iresnet_keys.py``), published parameter / FLOP counts, forward shapes and local
``pretrained_file`` loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from visionzoo.recognition.models import create_backbone

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def official_state(keys: list) -> dict[str, torch.Tensor]:
    """A state dict with exactly the fixture's keys and shapes; entry i is filled with i, so a
    tensor landing under another name shows."""
    return {
        key: torch.full(shape, index, dtype=torch.long if key.endswith("_tracked") else None)
        for index, (key, shape) in enumerate(keys)
    }


def meta_backbone(name: str, **kw) -> torch.nn.Module:
    """Built on the meta device: layout and counts without allocating the weights."""
    with torch.device("meta"):
        return create_backbone(name, **kw)


@pytest.mark.parametrize("name", ["iresnet50", "mobilefacenet"])
def test_arcface_torch_state_dict_loads_strictly(name: str) -> None:
    keys = fixture(f"{name}_keys.json")["keys"]
    # Allocated but not initialised: the load overwrites every tensor.
    model = meta_backbone(name).to_empty(device="cpu")
    ours = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    assert ours == keys  # same names, shapes and registration order
    model.load_state_dict(official_state(keys), strict=True)
    for index, value in enumerate(model.state_dict().values()):
        assert (value == index).all()


@pytest.mark.parametrize("name", ["iresnet18", "iresnet34", "iresnet50", "iresnet100"])
def test_iresnet_key_counts(name: str) -> None:
    assert (
        len(meta_backbone(name).state_dict()) == fixture("iresnet50_keys.json")["key_counts"][name]
    )


def test_iresnet50_parameter_count_is_published() -> None:
    # 43.59 M: IResNet-50 (arcface_torch), Boutros et al., "AdaDistill", ECCV 2024, sec. 4.
    params = sum(p.numel() for p in meta_backbone("iresnet50").parameters())
    assert round(params / 1e6, 2) == 43.59


@pytest.mark.parametrize(
    ("name", "gflops", "tolerance"),
    # arcface_torch README: r18 2.6, r50 6.3, r100 12.1 GFLOPs (multiply-adds, 112 px);
    # "mobilefacenet-0.45G" also counts BN/PReLU work, which FlopCounterMode leaves out.
    [
        ("iresnet18", 2.6, 0.05),
        ("iresnet50", 6.3, 0.05),
        ("iresnet100", 12.1, 0.05),
        ("mobilefacenet", 0.45, 0.02),
    ],
)
def test_multiply_adds_match_arcface_torch(name: str, gflops: float, tolerance: float) -> None:
    model = meta_backbone(name).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 112, 112, device="meta"))
    assert counter.get_total_flops() / 2e9 == pytest.approx(gflops, abs=tolerance)


def test_embedding_batchnorm_scale_is_frozen_at_one() -> None:
    model = meta_backbone("iresnet18")
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["features.weight"]
    assert torch.equal(create_backbone("mobilefacenet").features.layers[3].weight, torch.ones(512))
    timm_neck = create_backbone("mobilenetv3_small_050").features
    assert torch.equal(timm_neck.weight, torch.ones(512)) and not timm_neck.weight.requires_grad


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet", "resnet18"])
def test_forward_shape(name: str) -> None:
    model = create_backbone(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 512) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "kw", "size"),
    [
        # iresnet34/50 differ from iresnet18 (run for real above) only in block counts.
        ("iresnet34", {}, 112),
        ("iresnet50", {}, 112),
        ("iresnet18", {"in_chans": 1, "input_size": 32, "embedding_size": 128}, 32),
        ("iresnet18", {"input_size": 128}, 128),
        ("mobilefacenet", {"embedding_size": 256, "input_size": 48}, 48),
        ("mobilefacenet", {"blocks": (2, 8, 12, 4), "scale": 4}, 112),  # arcface_torch mbf_large
        ("resnet18", {"in_chans": 1, "embedding_size": 64, "dropout": 0.2}, 40),
        ("vit_tiny_patch16_224", {"input_size": 112}, 112),  # img_size follows input_size
    ],
)
def test_options_change_shapes(name: str, kw: dict, size: int) -> None:
    # Shape plumbing only: the meta device runs the graph without computing anything.
    model = meta_backbone(name, **kw).eval()
    out = model(torch.empty(2, kw.get("in_chans", 3), size, size, device="meta"))
    assert out.shape == (2, kw.get("embedding_size", 512))


@pytest.mark.parametrize(
    ("name", "wrap"),
    [("iresnet18", "plain"), ("mobilefacenet", "state_dict"), ("mobilefacenet", "ddp")],
)
def test_pretrained_file_round_trip(tmp_path, name: str, wrap: str) -> None:
    # 32 px keeps it small; loading does not depend on the input size.
    source = create_backbone(name, input_size=32)
    state = source.state_dict()
    payload = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "ddp": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    torch.save(payload, tmp_path / "backbone.pth")
    loaded = create_backbone(name, input_size=32, pretrained_file=str(tmp_path / "backbone.pth"))
    assert loaded.state_dict().keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_timm_pretrained_file_loads_trunk(tmp_path) -> None:
    import timm

    name = "mobilenetv3_small_050"
    classifier = timm.create_model(name, pretrained=False)
    torch.save(classifier.state_dict(), tmp_path / "timm.pth")
    model = create_backbone(name, pretrained_file=str(tmp_path / "timm.pth"))
    trunk = model.trunk.state_dict()
    head = classifier.pretrained_cfg["classifier"]
    assert set(trunk) == {k for k in classifier.state_dict() if not k.startswith(f"{head}.")}
    for key, value in trunk.items():
        assert torch.equal(value, classifier.state_dict()[key]), key
    grey = create_backbone(name, in_chans=1, pretrained_file=str(tmp_path / "timm.pth"))
    # timm's adapt_input_conv folds RGB filters to one channel by summing them.
    stem = f"{classifier.pretrained_cfg['first_conv']}.weight"
    expected = classifier.state_dict()[stem].sum(1, keepdim=True)
    assert torch.allclose(grey.trunk.state_dict()[stem], expected)


def test_pretrained_file_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        create_backbone("mobilefacenet", pretrained_file=str(tmp_path / "nope.pth"))
    state = official_state(fixture("mobilefacenet_keys.json")["keys"])
    dropped = ["layers.0.layers.0.weight", "layers.0.layers.2.weight", "conv_sep.layers.2.weight"]
    for key in dropped:
        del state[key]
    state["head.weight"] = state["extra.bias"] = torch.zeros(3)
    state["features.layers.2.weight"] = torch.zeros(128, 512)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        create_backbone("mobilefacenet", pretrained_file=str(tmp_path / "bad.pth"))
    message = str(err.value)
    assert "\n" not in message and "bad.pth" in message
    assert f"3 missing keys ({', '.join(dropped)})" in message
    assert "2 unexpected keys (head.weight, extra.bias)" in message
    assert (
        "1 mis-shaped (file vs model) keys (features.layers.2.weight (128, 512) vs (512, 512))"
        in message
    )
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        create_backbone("mobilefacenet", pretrained_file=str(tmp_path / "list.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read pretrained_file"):
        create_backbone("mobilefacenet", pretrained_file=str(tmp_path / "junk.pth"))
    with pytest.raises(ValueError, match="unknown backbone 'iresnet7'"):
        create_backbone("iresnet7")
