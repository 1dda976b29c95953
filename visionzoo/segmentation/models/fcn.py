"""FCN (Long, Shelhamer, Darrell, CVPR 2015) with FCN-32s/16s/8s skip fusion on a timm encoder."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionzoo.backbones import create_encoder
from visionzoo.registry import register_model
from visionzoo.segmentation.models.common import ConvBNReLU, SegmentationModel

_SKIPS = {"32s": 0, "16s": 1, "8s": 2}


@register_model("segmentation", "fcn")
class FCN(SegmentationModel):
    """Class scores from the stride-32 features, refined by adding 1×1 scores of the stride-16
    (16s) and stride-8 (8s) features after upsampling, as in the paper's skip architecture."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        encoder: str = "resnet18",
        pretrained_file: str | None = None,
        variant: str = "8s",
        head_channels: int = 256,
    ) -> None:
        super().__init__()
        if variant not in _SKIPS:
            raise ValueError(f"FCN variant {variant!r} is not one of {', '.join(_SKIPS)}")
        self.num_classes = num_classes
        self.encoder = create_encoder(encoder, pretrained_file=pretrained_file, in_chans=in_chans)
        chans = self.encoder.feature_info.channels()
        self.stride = self.encoder.feature_info.reduction()[-1]
        # The paper's fc6/fc7 become a conv head on the deepest features.
        self.head = nn.Sequential(
            ConvBNReLU(chans[-1], head_channels), nn.Conv2d(head_channels, num_classes, 1)
        )
        n_skips = _SKIPS[variant]
        self.skip_scores = nn.ModuleList(
            nn.Conv2d(chans[-2 - i], num_classes, 1) for i in range(n_skips)
        )
        for conv in self.skip_scores:  # start as plain FCN-32s, as the paper's staged training
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        score = self.head(feats[-1])
        for i, conv in enumerate(self.skip_scores):
            skip = feats[-2 - i]
            score = conv(skip) + F.interpolate(
                score, size=skip.shape[-2:], mode="bilinear", align_corners=False
            )
        return score
