"""SegmentationMetrics against torchmetrics and hand-computed confusion-matrix values."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import MulticlassF1Score, MulticlassJaccardIndex

from visionzoo.segmentation.metrics import SegmentationMetrics

IGNORE = 255


def _random(seed: int, c: int, absent: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (preds, target) of shape (2, 7, 9) with ~15% ignore pixels; class ``absent`` is
    removed from both tensors when given."""
    g = torch.Generator().manual_seed(seed)
    preds = torch.randint(0, c, (2, 7, 9), generator=g)
    target = torch.randint(0, c, (2, 7, 9), generator=g)
    if absent is not None:
        preds[preds == absent] = (absent + 1) % c
        target[target == absent] = (absent + 1) % c
    target[torch.rand(2, 7, 9, generator=g) < 0.15] = IGNORE
    return preds, target


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("absent", [None, 2])
def test_miou_and_per_class_iou_match_torchmetrics(seed: int, absent: int | None) -> None:
    """mIoU = macro Jaccard; per-class IoU = Jaccard 'none' on present classes, NaN on absent."""
    c = 4
    preds, target = _random(seed, c, absent)
    m = SegmentationMetrics(c, ignore_index=IGNORE)
    m.update(preds, target)
    out = m.compute()
    ref_macro = MulticlassJaccardIndex(c, average="macro", ignore_index=IGNORE)(preds, target)
    ref_none = MulticlassJaccardIndex(c, average="none", ignore_index=IGNORE)(preds, target)
    torch.testing.assert_close(out["miou"], ref_macro.float(), atol=1e-6, rtol=0)
    present = [k for k in range(c) if k != absent]
    torch.testing.assert_close(out["iou_per_class"][present], ref_none[present], atol=1e-6, rtol=0)
    if absent is not None:
        assert math.isnan(out["iou_per_class"][absent].item())


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("absent", [None, 1])
def test_dice_matches_torchmetrics_f1(seed: int, absent: int | None) -> None:
    """Mean Dice = macro F1 over all kept pixels (global)."""
    c = 3
    preds, target = _random(seed, c, absent)
    m = SegmentationMetrics(c, ignore_index=IGNORE)
    m.update(preds, target)
    ref = MulticlassF1Score(c, average="macro", multidim_average="global", ignore_index=IGNORE)
    torch.testing.assert_close(m.compute()["dice"], ref(preds, target).float(), atol=1e-6, rtol=0)


def test_hand_computed_3x3() -> None:
    """A 3×3 example with one ignored pixel and logits input, every number worked out by hand."""
    target = torch.tensor([[[0, 0, 1], [1, 1, 2], [2, 2, IGNORE]]])
    preds = torch.tensor([[[0, 1, 1], [1, 0, 2], [2, 1, 0]]])
    # kept pixels (t, p): (0,0) (0,1) (1,1) (1,1) (1,0) (2,2) (2,2) (2,1)
    # class 0: tp 1 fp 1 fn 1 | class 1: tp 2 fp 2 fn 1 | class 2: tp 2 fp 0 fn 1
    logits = torch.nn.functional.one_hot(preds, 3).permute(0, 3, 1, 2).float() * 5.0
    m = SegmentationMetrics(3, ignore_index=IGNORE)
    m.update(logits, target)
    out = m.compute()
    iou = torch.tensor([1 / 3, 2 / 5, 2 / 3])
    dice = torch.tensor([2 / 4, 4 / 7, 4 / 5])
    torch.testing.assert_close(out["iou_per_class"], iou)
    torch.testing.assert_close(out["dice_per_class"], dice)
    torch.testing.assert_close(out["miou"], iou.mean())
    torch.testing.assert_close(out["dice"], dice.mean())
    torch.testing.assert_close(out["pixel_acc"], torch.tensor(5 / 8))


def test_pixel_accuracy_ignores_ignore_pixels() -> None:
    """Wrong predictions on ignored pixels do not count."""
    target = torch.tensor([[0, 1, IGNORE, IGNORE]])
    preds = torch.tensor([[0, 0, 1, 1]])
    m = SegmentationMetrics(2, ignore_index=IGNORE)
    m.update(preds, target)
    torch.testing.assert_close(m.compute()["pixel_acc"], torch.tensor(0.5))


def test_two_updates_equal_one_update_on_concatenation() -> None:
    """Accumulating over batches gives dataset totals, not an average of batch scores."""
    p1, t1 = _random(10, 4)
    p2, t2 = _random(11, 4, absent=3)
    p2, t2 = p2[:1, :3], t2[:1, :3]  # unequal batch sizes: averaging batch scores would differ
    split = SegmentationMetrics(4)
    split.update(p1, t1)
    split.update(p2, t2)
    whole = SegmentationMetrics(4)
    whole.update(torch.cat([p1.flatten(), p2.flatten()]), torch.cat([t1.flatten(), t2.flatten()]))
    a, b = split.compute(), whole.compute()
    for key in ("miou", "dice", "pixel_acc", "iou_per_class", "dice_per_class"):
        torch.testing.assert_close(a[key], b[key], equal_nan=True)
    ref = MulticlassJaccardIndex(4, average="macro", ignore_index=IGNORE)
    ref.update(p1, t1)
    ref.update(p2, t2)
    torch.testing.assert_close(a["miou"], ref.compute().float(), atol=1e-6, rtol=0)


def test_target_id_out_of_range_raises() -> None:
    m = SegmentationMetrics(2)
    with pytest.raises(ValueError, match="class id 5"):
        m.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 5))
