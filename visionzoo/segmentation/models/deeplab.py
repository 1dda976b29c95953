"""DeepLabv3 (Chen et al. 2017) and DeepLabv3+ (Chen et al., ECCV 2018) on dilated timm encoders."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionzoo.backbones import create_encoder
from visionzoo.registry import register_model
from visionzoo.segmentation.models.common import ConvBNReLU, SegmentationModel


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1×1, three dilated 3×3 and an image-pooling branch."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, int, int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(cin, cout, kernel=1)] + [ConvBNReLU(cin, cout, dilation=r) for r in rates]
        )
        # No BN on the pooled branch: a batch of 1 × 1×1 maps would make BN statistics undefined.
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(ConvBNReLU(5 * cout, cout, kernel=1), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


class _DeepLabBase(SegmentationModel):
    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        encoder: str,
        pretrained_file: str | None,
        output_stride: int,
        aspp_channels: int,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.num_classes = num_classes
        self.encoder = create_encoder(
            encoder, pretrained_file=pretrained_file, in_chans=in_chans, output_stride=output_stride
        )
        self.stride = output_stride
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)  # the paper's doubling at OS 8
        self.aspp = ASPP(self.encoder.feature_info.channels()[-1], aspp_channels, rates)


@register_model("segmentation", "deeplabv3")
class DeepLabV3(_DeepLabBase):
    """ASPP on the dilated encoder's last features, bilinear upsampling to the input."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        encoder: str = "resnet18",
        pretrained_file: str | None = None,
        output_stride: int = 16,
        aspp_channels: int = 256,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            in_chans=in_chans,
            encoder=encoder,
            pretrained_file=pretrained_file,
            output_stride=output_stride,
            aspp_channels=aspp_channels,
        )
        self.classifier = nn.Sequential(
            ConvBNReLU(aspp_channels, aspp_channels), nn.Conv2d(aspp_channels, num_classes, 1)
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.aspp(self.encoder(x)[-1]))


@register_model("segmentation", "deeplabv3plus")
class DeepLabV3Plus(_DeepLabBase):
    """DeepLabv3 plus a decoder that fuses ASPP output with stride-4 low-level features."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int = 3,
        encoder: str = "resnet18",
        pretrained_file: str | None = None,
        output_stride: int = 16,
        aspp_channels: int = 256,
        low_level_channels: int = 48,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            in_chans=in_chans,
            encoder=encoder,
            pretrained_file=pretrained_file,
            output_stride=output_stride,
            aspp_channels=aspp_channels,
        )
        info = self.encoder.feature_info
        self.low_index = list(info.reduction()).index(4)
        self.low_proj = ConvBNReLU(info.channels()[self.low_index], low_level_channels, kernel=1)
        self.decoder = nn.Sequential(
            ConvBNReLU(aspp_channels + low_level_channels, aspp_channels),
            ConvBNReLU(aspp_channels, aspp_channels),
            nn.Conv2d(aspp_channels, num_classes, 1),
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        low = self.low_proj(feats[self.low_index])
        y = F.interpolate(
            self.aspp(feats[-1]), size=low.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.decoder(torch.cat([y, low], dim=1))
