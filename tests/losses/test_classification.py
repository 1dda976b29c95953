"""Cross-entropy, focal, BCE and the weighted sum against torch / torchvision / smp / formulas."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import segmentation_models_pytorch.losses as smp_losses
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss as tv_sigmoid_focal_loss

from visionzoo import create_loss, list_losses
from visionzoo.losses.classification import (
    CrossEntropyLoss,
    FocalLoss,
    SigmoidFocalLoss,
    class_weights_from_masks,
)
from visionzoo.losses.combined import WeightedSumLoss, build_loss
from visionzoo.registry import RegistryError

B, C, H, W = 2, 4, 5, 6
IGNORE = 255


def _multiclass(seed: int, ignore: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, C, H, W, generator=g) * 3
    target = torch.randint(0, C, (B, H, W), generator=g)
    if ignore:
        target[torch.rand(B, H, W, generator=g) < 0.2] = IGNORE
    return logits, target


def _binary(seed: int, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, channels, H, W, generator=g) * 3
    return logits, torch.randint(0, 2, (B, channels, H, W), generator=g).float()


def _lin_softmax_focal(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float,
    alpha_per_class: list[float] | None = None,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Reference: mean over kept pixels of -α_t (1 - p_t)^γ log p_t, written per pixel."""
    probs = logits.softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    labels = target.reshape(-1)
    terms = []
    for p, y in zip(probs, labels.tolist(), strict=True):
        if y == ignore_index:
            continue
        a = 1.0 if alpha_per_class is None else alpha_per_class[y]
        terms.append(-a * (1 - p[y]) ** gamma * torch.log(p[y]))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("weight", [None, [0.5, 1.0, 2.0, 0.25]])
def test_cross_entropy_matches_torch(ignore: bool, weight: list[float] | None) -> None:
    logits, target = _multiclass(0, ignore)
    ours = CrossEntropyLoss(weight=weight, label_smoothing=0.1)(logits, target)
    w = None if weight is None else torch.tensor(weight)
    ref = F.cross_entropy(logits, target, weight=w, ignore_index=IGNORE, label_smoothing=0.1)
    torch.testing.assert_close(ours, ref)


def test_weighted_cross_entropy_requires_weight() -> None:
    with pytest.raises(ValueError, match="needs `weight`"):
        create_loss("weighted_cross_entropy")
    logits, target = _multiclass(1, ignore=True)
    weight = [1.0, 2.0, 3.0, 4.0]
    ours = create_loss("weighted_cross_entropy", weight=weight)(logits, target)
    ref = F.cross_entropy(logits, target, weight=torch.tensor(weight), ignore_index=IGNORE)
    torch.testing.assert_close(ours, ref)


def test_class_weights_median_frequency() -> None:
    # class 0: 6 px over two 4-px masks; class 1: 1 px in mask A; class 2: 1 px in mask B;
    # class 3: never seen → neutral 1.0; 255 is ignored (mask B has 3 valid px)
    masks = [torch.tensor([[0, 0], [0, 1]]), torch.tensor([[0, 0], [2, IGNORE]])]
    freq = {0: 5 / 7, 1: 1 / 4, 2: 1 / 3}
    median = 1 / 3
    weights = class_weights_from_masks(masks, num_classes=4, ignore_index=IGNORE)
    expected = [median / freq[0], median / freq[1], median / freq[2], 1.0]
    assert weights == pytest.approx(expected)
    with pytest.raises(ValueError, match="mask labels"):
        class_weights_from_masks([torch.tensor([5])], num_classes=4)


@pytest.mark.parametrize("alpha", [0.25, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_binary_focal_matches_torchvision(alpha: float, gamma: float) -> None:
    logits, target = _binary(2)
    ours = FocalLoss("binary", alpha=alpha, gamma=gamma)(logits, target[:, 0])
    ref = tv_sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma, reduction="mean")
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode,channels", [("binary", 1), ("multilabel", C)])
def test_sigmoid_focal_with_ignore_matches_smp(mode: str, channels: int) -> None:
    logits, target = _binary(3, channels)
    target[torch.rand(target.shape, generator=torch.Generator().manual_seed(9)) < 0.2] = IGNORE
    ours = FocalLoss(mode, alpha=0.25, ignore_index=IGNORE)(logits, target)
    ref = smp_losses.FocalLoss(mode, alpha=0.25, ignore_index=IGNORE)(logits, target)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sigmoid_focal_matches_torchvision(reduction: str) -> None:
    logits, target = _binary(4, channels=C)
    ours = create_loss("sigmoid_focal", reduction=reduction)(logits, target)
    ref = tv_sigmoid_focal_loss(logits, target, alpha=0.25, gamma=2.0, reduction=reduction)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    assert isinstance(create_loss("sigmoid_focal"), SigmoidFocalLoss)


@pytest.mark.parametrize("ignore", [False, True])
def test_multiclass_focal_matches_lin_formula(ignore: bool) -> None:
    """Softmax focal by design; smp's multiclass focal is a sum of one-vs-rest sigmoid terms."""
    logits, target = _multiclass(5, ignore)
    ignore_index = IGNORE if ignore else None
    alphas = [0.1, 0.2, 0.3, 0.4]
    ours = FocalLoss("multiclass", alpha=alphas, gamma=2.0, ignore_index=ignore_index)
    ref = _lin_softmax_focal(logits, target, 2.0, alphas, ignore_index)
    torch.testing.assert_close(ours(logits, target), ref, atol=1e-5, rtol=0)
    # γ = 0 without α is cross-entropy
    ce = FocalLoss("multiclass", alpha=None, gamma=0.0, ignore_index=ignore_index)
    ref_ce = F.cross_entropy(logits, target, ignore_index=IGNORE if ignore else -100)
    torch.testing.assert_close(ce(logits, target), ref_ce, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pos_weight", [None, 2.0, [1.0, 2.0, 3.0, 0.5]])
def test_bce_matches_torch(pos_weight: float | list[float] | None) -> None:
    logits, target = _binary(6, channels=C)
    ignored = torch.rand(target.shape, generator=torch.Generator().manual_seed(1)) < 0.2
    target_ignored = target.masked_fill(ignored, IGNORE)
    ours = create_loss("bce", pos_weight=pos_weight, ignore_index=IGNORE)(logits, target_ignored)
    pw = None if pos_weight is None else torch.tensor(pos_weight)
    if pw is not None and pw.dim() == 1:
        pw = pw.view(C, 1, 1).expand(B, C, H, W)[~ignored]
    ref = F.binary_cross_entropy_with_logits(logits[~ignored], target[~ignored], pos_weight=pw)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize(
    "name,kw,make",
    [
        ("cross_entropy", {}, lambda: _multiclass(7, True)),
        ("weighted_cross_entropy", {"weight": [1.0, 2.0, 3.0, 4.0]}, lambda: _multiclass(7, True)),
        ("focal", {"mode": "multiclass", "ignore_index": IGNORE}, lambda: _multiclass(7, True)),
        ("focal", {"mode": "multilabel"}, lambda: _binary(7, C)),
        ("sigmoid_focal", {}, lambda: _binary(7, C)),
        ("bce", {"pos_weight": 3.0}, lambda: _binary(7, 1)),
    ],
)
def test_gradients_are_finite(name: str, kw: dict, make: Callable) -> None:
    logits, target = make()
    logits.requires_grad_(True)
    create_loss(name, **kw)(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_weighted_sum_equals_sum_of_parts() -> None:
    logits, target = _multiclass(8, ignore=False)
    logits.requires_grad_(True)
    class_weight = [1.0, 2.0, 1.0, 1.0]
    loss = create_loss(
        "weighted_sum",
        terms=[
            # cross-entropy's own ``weight`` clashes with the term weight, so it goes in kwargs
            {"name": "cross_entropy", "weight": 1.0, "kwargs": {"weight": class_weight}},
            {"name": "dice", "weight": 0.5, "mode": "multiclass"},
            {"name": "dice", "weight": 0.25, "mode": "multiclass", "classes": [1]},
        ],
    )
    assert isinstance(loss, WeightedSumLoss)
    total = loss(logits, target)
    parts = {
        "cross_entropy": F.cross_entropy(logits, target, weight=torch.tensor(class_weight)),
        "dice.1": smp_losses.DiceLoss("multiclass")(logits, target),
        "dice.2": smp_losses.DiceLoss("multiclass", classes=[1])(logits, target),
    }
    expected = parts["cross_entropy"] + 0.5 * parts["dice.1"] + 0.25 * parts["dice.2"]
    torch.testing.assert_close(total, expected, atol=1e-5, rtol=0)
    assert loss.last_terms.keys() == parts.keys()
    for key, value in parts.items():
        assert not loss.last_terms[key].requires_grad
        torch.testing.assert_close(loss.last_terms[key], value.detach(), atol=1e-5, rtol=0)
    total.backward()
    assert torch.isfinite(logits.grad).all()


def test_build_loss_from_name_or_spec() -> None:
    assert isinstance(build_loss("cross_entropy"), CrossEntropyLoss)
    focal = build_loss({"name": "focal", "mode": "binary", "gamma": 1.0})
    assert isinstance(focal, FocalLoss) and focal.gamma == 1.0
    with pytest.raises(ValueError, match="no 'name'"):
        build_loss({"mode": "binary"})


def test_unknown_loss_lists_registered() -> None:
    with pytest.raises(RegistryError) as info:
        create_loss("no_such_loss")
    message = str(info.value)
    assert "no_such_loss" in message
    for name in list_losses():
        assert name in message
    assert {"dice", "jaccard", "tversky", "cross_entropy", "focal", "bce"} <= set(list_losses())
