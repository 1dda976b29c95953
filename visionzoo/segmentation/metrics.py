"""Dataset-level segmentation metrics from one accumulated confusion matrix."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class SegmentationMetrics(Metric):
    """Accumulates a ``num_classes × num_classes`` confusion matrix (rows = truth) over a whole
    dataset and derives mIoU, per-class IoU, mean Dice and pixel accuracy from it.

    IoU and Dice are computed from dataset totals (not averaged per image), the convention of
    MMSegmentation and torchmetrics' ``MulticlassJaccardIndex(average="macro")``. Classes that
    never occur in truth or prediction are left out of the means (NaN per class).
    """

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state(
            "confmat",
            default=torch.zeros(num_classes, num_classes, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """``preds``: class ids (B, H, W) or logits (B, C, H, W); ``target``: ids (B, H, W)."""
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(dim=1)
        preds, target = preds.reshape(-1), target.reshape(-1).long()
        keep = target != self.ignore_index if self.ignore_index is not None else slice(None)
        preds, target = preds[keep], target[keep]
        for name, ids in (("target", target), ("prediction", preds)):
            if ids.numel() and int(ids.max()) >= self.num_classes:
                raise ValueError(
                    f"{name} holds class id {int(ids.max())} but num_classes={self.num_classes}"
                )
        idx = target * self.num_classes + preds
        self.confmat += torch.bincount(idx, minlength=self.num_classes**2).view_as(self.confmat)

    def compute(self) -> dict[str, torch.Tensor]:
        cm = self.confmat.double()
        tp = cm.diag()
        fp = cm.sum(0) - tp
        fn = cm.sum(1) - tp
        union = tp + fp + fn
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        dice = torch.where(
            union > 0, 2 * tp / (2 * tp + fp + fn).clamp(min=1), torch.full_like(tp, float("nan"))
        )
        return {
            "miou": iou.nanmean().float(),
            "dice": dice.nanmean().float(),
            "pixel_acc": (tp.sum() / cm.sum().clamp(min=1)).float(),
            "iou_per_class": iou.float(),
            "dice_per_class": dice.float(),
        }
