"""Dice / Jaccard / Tversky against segmentation_models_pytorch 0.5.0 as the reference."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch.losses as smp_losses
import torch

from visionzoo import create_loss
from visionzoo.losses.region import DiceLoss, JaccardLoss, TverskyLoss

B, C, H, W = 2, 4, 5, 6
IGNORE = 255


def _inputs(mode: str, ignore: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and a matching target; ~20% of target entries set to IGNORE if asked."""
    g = torch.Generator().manual_seed(seed)
    if mode == "binary":
        logits = torch.randn(B, 1, H, W, generator=g)
        target = torch.randint(0, 2, (B, 1, H, W), generator=g).float()
    elif mode == "multiclass":
        logits = torch.randn(B, C, H, W, generator=g)
        target = torch.randint(0, C, (B, H, W), generator=g)
    else:
        logits = torch.randn(B, C, H, W, generator=g)
        target = torch.randint(0, 2, (B, C, H, W), generator=g).float()
    if ignore:
        drop = torch.rand(target.shape, generator=g) < 0.2
        target = target.masked_fill(drop, IGNORE)
    return logits * 3, target


MODES = ["binary", "multiclass", "multilabel"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("log_loss", [False, True])
def test_dice_matches_smp(mode: str, ignore: bool, log_loss: bool) -> None:
    logits, target = _inputs(mode, ignore)
    ignore_index = IGNORE if ignore else None
    ours = DiceLoss(mode, log_loss=log_loss, ignore_index=ignore_index, smooth=0.5)
    ref = smp_losses.DiceLoss(mode, log_loss=log_loss, ignore_index=ignore_index, smooth=0.5)
    torch.testing.assert_close(ours(logits, target), ref(logits, target), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ignore", [False, True])
def test_jaccard_matches_smp(mode: str, ignore: bool) -> None:
    logits, target = _inputs(mode, ignore, seed=1)
    if ignore:
        # smp's JaccardLoss has no ignore_index; its Tversky with α = β = 1 is the same index
        ref = smp_losses.TverskyLoss(mode, ignore_index=IGNORE, alpha=1.0, beta=1.0)
    else:
        ref = smp_losses.JaccardLoss(mode)
    ours = JaccardLoss(mode, ignore_index=IGNORE if ignore else None)
    torch.testing.assert_close(ours(logits, target), ref(logits, target), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ignore", [False, True])
def test_tversky_matches_smp(mode: str, ignore: bool) -> None:
    logits, target = _inputs(mode, ignore, seed=2)
    kw = dict(alpha=0.3, beta=0.7, gamma=1.5, ignore_index=IGNORE if ignore else None)
    ours = TverskyLoss(mode, **kw)
    ref = smp_losses.TverskyLoss(mode, **kw)
    torch.testing.assert_close(ours(logits, target), ref(logits, target), atol=1e-5, rtol=0)


def test_binary_target_without_channel_dim() -> None:
    logits, target = _inputs("binary", ignore=True, seed=3)
    loss = DiceLoss("binary", ignore_index=IGNORE)
    torch.testing.assert_close(loss(logits, target[:, 0]), loss(logits, target))


@pytest.mark.parametrize("cls", [DiceLoss, JaccardLoss])
def test_classes_subset_and_absent_class(cls: type) -> None:
    """A class missing from the target contributes zero; ``classes`` picks channels."""
    logits, target = _inputs("multiclass", ignore=False, seed=4)
    target[target == 2] = 0  # class 2 absent
    ref_cls = smp_losses.DiceLoss if cls is DiceLoss else smp_losses.JaccardLoss
    for classes in (None, [1, 2]):
        ours = cls("multiclass", classes=classes)(logits, target)
        ref = ref_cls("multiclass", classes=classes)(logits, target)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_soft_labels_match_smp() -> None:
    """Multilabel targets in [0, 1]: TP is Σ min(p, t), not Σ p·t, as in smp 0.5.0."""
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(B, C, H, W, generator=g)
    target = torch.rand(B, C, H, W, generator=g)
    ours = DiceLoss("multilabel")(logits, target)
    torch.testing.assert_close(ours, smp_losses.DiceLoss("multilabel")(logits, target))


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky"])
@pytest.mark.parametrize("mode", MODES)
def test_gradients_are_finite(name: str, mode: str) -> None:
    logits, target = _inputs(mode, ignore=True, seed=6)
    logits.requires_grad_(True)
    create_loss(name, mode=mode, ignore_index=IGNORE)(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="mode"):
        DiceLoss("softmax")
    with pytest.raises(ValueError, match="classes"):
        JaccardLoss("binary", classes=[0])
