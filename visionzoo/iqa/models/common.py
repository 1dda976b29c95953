"""What the learned quality models share: a timm trunk, global average pooling and a regressor."""

from __future__ import annotations

import torch
import torch.nn as nn

from visionzoo.backbones import create_encoder

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class QualityRegressor(nn.Module):
    """A timm ``features_only`` trunk, global average pooling of its last map, and a regressor
    (dropout → FC, or FC → ReLU → FC with ``hidden`` > 0) to one score.

    ``forward(x (B, in_chans, H, W))`` → (B,); any H, W the trunk accepts (pooling makes the
    score size-free). Inputs are expected normalised (see ``normalise``)."""

    def __init__(
        self,
        *,
        backbone: str,
        pretrained_file: str | None,
        in_chans: int,
        hidden: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.trunk = create_encoder(backbone, pretrained_file=pretrained_file, in_chans=in_chans)
        width = self.trunk.feature_info.channels()[-1]
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden > 0:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        self.head = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.trunk(x)[-1].mean(dim=(2, 3))
        return self.head(pooled).squeeze(1)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] → ImageNet-standardised, as timm weights expect."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std
