"""IResNet face-embedding backbones (Deng et al., "ArcFace", CVPR 2019; Duta et al., "Improved
Residual Networks", 2020) in the module layout of insightface's ``arcface_torch``, so that its
released backbone state dicts load with ``strict=True``."""

from __future__ import annotations

import torch
import torch.nn as nn

# Blocks per stage, as arcface_torch's iresnet18/34/50/100 define them.
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
STAGE_WIDTHS = (64, 128, 256, 512)
TOTAL_STRIDE = 16  # four stride-2 stages after a stride-1 stem: 112 px -> 7 x 7


def embedding_batchnorm(embedding_size: int) -> nn.BatchNorm1d:
    """The final ``BatchNorm1d`` of insightface embeddings: affine, but its scale is fixed to 1
    and not trained (only the shift learns), so the feature norm is set by the FC layer."""
    bn = nn.BatchNorm1d(embedding_size, eps=1e-5)
    nn.init.constant_(bn.weight, 1.0)
    bn.weight.requires_grad = False
    return bn


class IBasicBlock(nn.Module):
    """Pre-activation "improved" basic block: BN → conv3x3 → BN → PReLU → conv3x3(stride) → BN,
    plus the identity (or a conv1x1 + BN ``downsample`` when the shape changes).

    ``(B, inplanes, H, W) -> (B, planes, H / stride, W / stride)``.
    """

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        # The stride sits on the second conv, unlike torchvision's BasicBlock.
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-5),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """IResNet trunk + insightface embedding neck: ``(B, in_chans, S, S) -> (B, embedding_size)``.

    Stem conv3x3(64) + BN + PReLU at stride 1, four stages of ``IBasicBlock`` (widths 64–512,
    each starting with stride 2), then BN2d → flatten → Dropout → FC(512·(S/16)² → emb) →
    ``BatchNorm1d`` with its scale frozen at 1. ``S`` is ``input_size`` (112 for the released
    models; any multiple of 16 works, the FC width follows it). The embedding is not
    L2-normalised; verification normalises it.
    """

    def __init__(
        self,
        *,
        layers: tuple[int, int, int, int],
        embedding_size: int = 512,
        dropout: float = 0.0,
        in_chans: int = 3,
        input_size: int = 112,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"IResNet layers must be 4 positive block counts, got {layers}")
        if input_size % TOTAL_STRIDE or input_size < TOTAL_STRIDE:
            raise ValueError(
                f"IResNet input_size must be a multiple of {TOTAL_STRIDE} (112 for insightface "
                f"weights), got {input_size}"
            )
        self.input_size = input_size
        self.conv1 = nn.Conv2d(in_chans, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        inplanes = 64
        for index, (blocks, width) in enumerate(zip(layers, STAGE_WIDTHS, strict=True)):
            stage = [IBasicBlock(inplanes, width, stride=2)]
            stage += [IBasicBlock(width, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            inplanes = width
        self.bn2 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        side = input_size // TOTAL_STRIDE
        self.fc = nn.Linear(inplanes * side * side, embedding_size)
        self.features = embedding_batchnorm(embedding_size)
        self._init_weights()

    def _init_weights(self) -> None:
        # arcface_torch's initialisation: N(0, 0.1) convs, unit/zero BN.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(self.dropout(x)))


def build_iresnet(
    name: str,
    *,
    embedding_size: int = 512,
    dropout: float = 0.0,
    in_chans: int = 3,
    input_size: int = 112,
) -> IResNet:
    """Build ``iresnet18|iresnet34|iresnet50|iresnet100`` by name (see ``IRESNET_LAYERS``)."""
    if name not in IRESNET_LAYERS:
        raise ValueError(f"unknown IResNet {name!r}; pick one of {', '.join(IRESNET_LAYERS)}")
    return IResNet(
        layers=IRESNET_LAYERS[name],
        embedding_size=embedding_size,
        dropout=dropout,
        in_chans=in_chans,
        input_size=input_size,
    )
