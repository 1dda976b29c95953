"""NIMA: a timm classification backbone predicting the distribution of aesthetic scores."""

from __future__ import annotations

import torch
import torch.nn as nn

from visionzoo.aesthetics.models.common import head_output, output_head
from visionzoo.backbones import create_timm_model
from visionzoo.registry import register_model


def create_classifier_trunk(name: str, *, pretrained_file: str | None, in_chans: int) -> nn.Module:
    """A timm model without its classifier (``num_classes=0``): (B, C, H, W) → pooled
    (B, num_features); weights from a local file only (``visionzoo.backbones``)."""
    return create_timm_model(
        name, pretrained_file=pretrained_file, role="backbone", num_classes=0, in_chans=in_chans
    )


@register_model("aesthetics", "nima")
class NIMA(nn.Module):
    """Neural Image Assessment (Talebi & Milanfar, TIP 2018): backbone features, dropout and one
    FC layer to a softmax over the 10 score bins; mean and standard deviation of the score come
    from that distribution. With ``objective=binary|regression`` the FC layer has one output.

    ``forward(image (B, 3, H, W), crops=None)`` → (B, 10) logits, or (B,) for one output."""

    uses_crops = False

    def __init__(
        self,
        *,
        backbone: str = "test_resnet",
        pretrained_file: str | None = None,
        objective: str = "distribution",
        dropout: float = 0.75,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.objective = objective
        self.backbone = create_classifier_trunk(
            backbone, pretrained_file=pretrained_file, in_chans=in_chans
        )
        # timm's pooled output width: head_hidden_size, which differs from num_features where a
        # head convolution follows the pooling (MobileNetV3, LCNet, GhostNet: 576 vs 1024).
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.head = output_head(objective, width, dropout)

    def forward(self, image: torch.Tensor, crops: torch.Tensor | None = None) -> torch.Tensor:
        return head_output(self.objective, self.head(self.backbone(image)))
