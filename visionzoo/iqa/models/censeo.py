"""CenseoQoE: a timm backbone, global average pooling and an FC layer regressing quality, in a
no-reference and a full-reference mode (Tencent's CenseoQoE toolkit, "CenseoQoE: an open
framework for image and video quality assessment", 2021)."""

from __future__ import annotations

import torch
import torch.nn as nn

from visionzoo.iqa.models.common import QualityRegressor, normalise
from visionzoo.registry import register_model

MODES = ("nr", "fr")
DIFF_SCALE = 4.0  # the difference image is small next to the image: scaled to a similar spread


@register_model("iqa", "censeo")
class CenseoQoE(nn.Module):
    """``mode=nr`` scores the distorted image alone; ``mode=fr`` the distorted image stacked
    with its difference from the reference (6 input channels), as CenseoQoE's FR models do.
    Trained with MAE + the pairwise rank loss (``IQAModule``); videos are scored as the mean of
    their frames' scores (``predict.py``).

    ``forward(image (B, 3, H, W), reference (B, 3, H, W) | None)`` → (B,) standardised scores."""

    meta_learning = False
    default_loss = {"mae": 1.0, "rank": 1.0}

    def __init__(
        self,
        *,
        mode: str = "nr",
        backbone: str = "test_resnet",
        pretrained_file: str | None = None,
        hidden: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"censeo mode={mode!r}; choose nr (no-reference) or fr")
        self.mode = mode
        self.needs_reference = mode == "fr"
        self.higher_is_better = True
        self.net = QualityRegressor(
            backbone=backbone,
            pretrained_file=pretrained_file,
            in_chans=6 if self.needs_reference else 3,
            hidden=hidden,
            dropout=dropout,
        )

    def forward(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        x = normalise(image)
        if self.needs_reference:
            if reference is None:
                raise ValueError("censeo mode=fr needs reference images; use mode=nr without")
            x = torch.cat([x, DIFF_SCALE * (image - reference)], dim=1)
        return self.net(x)
