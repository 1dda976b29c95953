"""MetaIQA: a deep meta-learned no-reference quality model (Zhu et al., "MetaIQA: Deep
Meta-learning for No-Reference Image Quality Assessment", CVPR 2020)."""

from __future__ import annotations

import torch
import torch.nn as nn

from visionzoo.iqa.models.common import QualityRegressor, normalise
from visionzoo.registry import register_model


@register_model("iqa", "metaiqa")
class MetaIQA(nn.Module):
    """A ResNet-18 (paper; any timm backbone here) with global average pooling and an FC
    regressor. ``IQAModule`` meta-trains it across distortion-type tasks (support / query
    bi-level updates, ``task.meta``) and then fine-tunes it on the target set, with the
    squared-error loss of the paper.

    ``forward(image (B, 3, H, W), reference=None)`` → (B,) standardised scores."""

    meta_learning = True
    default_loss = {"mse": 1.0}

    def __init__(
        self,
        *,
        backbone: str = "test_resnet",
        pretrained_file: str | None = None,
        hidden: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.needs_reference = False
        self.higher_is_better = True
        self.net = QualityRegressor(
            backbone=backbone,
            pretrained_file=pretrained_file,
            in_chans=3,
            hidden=hidden,
            dropout=dropout,
        )

    def forward(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(normalise(image))
