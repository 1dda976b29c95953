"""U-Net (Ronneberger et al., MICCAI 2015), original or on any timm encoder."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionzoo.backbones import create_encoder
from visionzoo.registry import register_model
from visionzoo.segmentation.models.common import ConvBNReLU, SegmentationModel


class DecoderBlock(nn.Module):
    """Upsample ×2, concatenate the skip feature (if any), two 3×3 conv-BN-ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvBNReLU(cin + cskip, cout), ConvBNReLU(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else [2 * s for s in x.shape[-2:]]
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


@register_model("segmentation", "unet")
class UNet(SegmentationModel):
    """U-Net. ``encoder=None`` builds the original symmetric network (with padded convolutions
    so output size equals input size); a timm name uses that network as the encoder and sizes
    the decoder from its ``feature_info``.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        encoder: str | None = None,
        pretrained_file: str | None = None,
        base_channels: int = 64,
        depth: int = 4,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        if encoder is None:
            chans = [base_channels * 2**i for i in range(depth + 1)]
            self.encoder = _PlainEncoder(in_chans, chans)
            reductions = [2**i for i in range(depth + 1)]
            dec_chans = list(reversed(chans[:-1]))
        else:
            self.encoder = create_encoder(
                encoder, pretrained_file=pretrained_file, in_chans=in_chans
            )
            chans = list(self.encoder.feature_info.channels())
            reductions = list(self.encoder.feature_info.reduction())
            n_up = int(round(math.log2(reductions[-1])))
            dec_chans = list(decoder_channels)[:n_up]
            if len(dec_chans) < n_up:
                raise ValueError(f"decoder_channels needs {n_up} entries for encoder {encoder!r}")
        self.stride = reductions[-1]
        by_reduction = dict(zip(reductions, chans, strict=True))
        blocks, cin, r = [], chans[-1], reductions[-1]
        for cout in dec_chans:
            r //= 2
            blocks.append(DecoderBlock(cin, by_reduction.get(r, 0), cout))
            cin = cout
        self._reductions = reductions
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, num_classes, 3, padding=1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        by_reduction = dict(zip(self._reductions, feats, strict=True))
        y, r = feats[-1], self._reductions[-1]
        for block in self.decoder:
            r //= 2
            y = block(y, by_reduction.get(r))
        return self.head(y)


class _PlainEncoder(nn.Module):
    """The original U-Net contracting path: double convs with 2×2 max-pooling between them."""

    def __init__(self, in_chans: int, chans: list[int]) -> None:
        super().__init__()
        stages, cin = [], in_chans
        for c in chans:
            stages.append(nn.Sequential(ConvBNReLU(cin, c), ConvBNReLU(c, c)))
            cin = c
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        return feats
