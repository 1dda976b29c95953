"""The toy family's models: a 2-layer CNN and a parameter-free brightness threshold."""

from __future__ import annotations

import torch
import torch.nn as nn

from visionzoo.registry import register_model


@register_model("toy", "toy_cnn")
class ToyCNN(nn.Module):
    """Two 3×3 convolutions, global average pooling and a linear classifier.

    ``(B, in_chans, H, W)`` images → ``(B, num_classes)`` logits."""

    def __init__(self, *, num_classes: int, in_chans: int = 3, width: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@register_model("toy", "toy_brightness", trainable=False)
class BrightnessThreshold(nn.Module):
    """Metric-only classifier: class 1 (light) when an image's mean exceeds ``threshold``.

    Inputs are normalised to [-1, 1], so the default threshold 0 is mid-grey. Returns
    ``(B, 2)`` logits ``±sharpness · (mean - threshold)``; it has no learnt weights."""

    def __init__(self, *, num_classes: int, threshold: float = 0.0, sharpness: float = 10.0):
        super().__init__()
        if num_classes != 2:
            raise ValueError(f"toy_brightness tells 2 classes apart, not {num_classes}")
        self.num_classes = num_classes
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.sharpness = sharpness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.sharpness * (x.mean(dim=(1, 2, 3)) - self.threshold)
        return torch.stack([-score, score], dim=1)
