"""MobileFaceNet (Chen et al., "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face
Verification on Mobile Devices", 2018) in the module layout of insightface's ``arcface_torch``
``mbf`` backbone (width ``scale`` 2, blocks (1, 4, 6, 2)), so its state dicts load strictly."""

from __future__ import annotations

import torch
import torch.nn as nn

TOTAL_STRIDE = 16  # four stride-2 convs: 112 px -> 7 x 7 before the global depthwise conv


class ConvBlock(nn.Module):
    """Conv (no bias) → BN → PReLU, held in ``layers`` as arcface_torch names it."""

    def __init__(
        self,
        in_c: int,
        out_c: int,
        *,
        kernel: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        activation: bool = True,
    ) -> None:
        super().__init__()
        parts: list[nn.Module] = [
            nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c),
        ]
        if activation:
            parts.append(nn.PReLU(out_c))
        self.layers = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to ``groups`` channels → depthwise 3x3 (stride) → linear
    1x1 projection to ``out_c``; the input is added back when ``residual``."""

    def __init__(
        self, in_c: int, out_c: int, *, groups: int, stride: int = 2, residual: bool = False
    ) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_c, groups),
            ConvBlock(groups, groups, kernel=3, stride=stride, padding=1, groups=groups),
            ConvBlock(groups, out_c, activation=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    """``num_block`` stride-1 residual ``DepthWise`` blocks at ``channels`` width."""

    def __init__(self, channels: int, *, num_block: int, groups: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *[
                DepthWise(channels, channels, groups=groups, stride=1, residual=True)
                for _ in range(num_block)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv head: depthwise ``side``×``side`` conv + BN → flatten → linear
    (no bias) → BatchNorm1d. ``(B, 512, side, side) -> (B, embedding_size)``."""

    def __init__(self, embedding_size: int, *, side: int = 7) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            ConvBlock(512, 512, kernel=side, groups=512, activation=False),
            nn.Flatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(nn.Module):
    """MobileFaceNet: ``(B, in_chans, S, S) -> (B, embedding_size)``, S = ``input_size``.

    ``scale`` multiplies the 64/128 base widths (arcface_torch ``mbf``: 2, ``mbf_large``: 4 with
    blocks (2, 8, 12, 4)); ``blocks`` are the residual block counts of the four stages. The GDC
    kernel is S/16 (7 for the released 112 px models). The embedding is not L2-normalised.
    """

    def __init__(
        self,
        *,
        embedding_size: int = 512,
        blocks: tuple[int, int, int, int] = (1, 4, 6, 2),
        scale: int = 2,
        in_chans: int = 3,
        input_size: int = 112,
    ) -> None:
        super().__init__()
        if input_size % TOTAL_STRIDE or input_size < TOTAL_STRIDE:
            raise ValueError(
                f"MobileFaceNet input_size must be a multiple of {TOTAL_STRIDE} (112 for "
                f"insightface weights), got {input_size}"
            )
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"MobileFaceNet blocks must be 4 positive counts, got {blocks}")
        c1, c2 = 64 * scale, 128 * scale
        stem: list[nn.Module] = [ConvBlock(in_chans, c1, kernel=3, stride=2, padding=1)]
        if blocks[0] == 1:
            # arcface_torch uses a grouped (64 groups) 3x3 conv here, not a full depthwise one.
            stem.append(ConvBlock(c1, c1, kernel=3, padding=1, groups=64))
        else:
            stem.append(Residual(c1, num_block=blocks[0], groups=128))
        self.layers = nn.ModuleList(
            [
                *stem,
                DepthWise(c1, c1, groups=128),
                Residual(c1, num_block=blocks[1], groups=128),
                DepthWise(c1, c2, groups=256),
                Residual(c2, num_block=blocks[2], groups=256),
                DepthWise(c2, c2, groups=512),
                Residual(c2, num_block=blocks[3], groups=256),
            ]
        )
        self.conv_sep = ConvBlock(c2, 512)
        self.features = GDC(embedding_size, side=input_size // TOTAL_STRIDE)
        self._init_weights()

    def _init_weights(self) -> None:
        # arcface_torch's initialisation: Kaiming (fan_out) convs and linears, unit/zero BN.
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))
