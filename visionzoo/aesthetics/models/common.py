"""What the aesthetics models share: the training objectives and the RAPID-style column."""

from __future__ import annotations

import torch
import torch.nn as nn

# distribution: logits over the 10 score bins (EMD loss); binary: one high/low logit (binary
# cross-entropy); regression: the mean score itself (squared error + pairwise rank loss).
OBJECTIVES = ("distribution", "binary", "regression")
NUM_BINS = 10
PRIOR_MEAN = 5.5  # regression outputs start at the middle of the 1..10 scale


def output_head(objective: str, in_features: int, dropout: float) -> nn.Sequential:
    """Dropout + linear layer sized for ``objective``: (B, in_features) → (B, 10) or (B, 1)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"model.objective={objective!r}; choose one of {', '.join(OBJECTIVES)}")
    linear = nn.Linear(in_features, NUM_BINS if objective == "distribution" else 1)
    if objective == "regression":
        nn.init.constant_(linear.bias, PRIOR_MEAN)
    return nn.Sequential(nn.Dropout(dropout), linear)


def head_output(objective: str, out: torch.Tensor) -> torch.Tensor:
    """(B, 10) bin logits for ``distribution``, else the single output squeezed to (B,)."""
    return out if objective == "distribution" else out.squeeze(1)


class Column(nn.Module):
    """One column of RAPID (Lu et al., "RAPID: rating pictorial aesthetics using deep learning",
    ACM MM 2014, Fig. 2): four convolutions and a fully connected layer, here with batch norm
    and ``width`` channels (paper: 64) so it trains from scratch on a CPU. The last map is pooled
    to a ``grid`` × ``grid`` layout before the FC layer, which keeps where things are in the
    frame (composition), as the paper's FC layers over the whole map do.

    (B, in_chans, H, W) → (B, feature_dim)."""

    def __init__(
        self, *, in_chans: int = 3, width: int = 32, feature_dim: int = 128, grid: int = 4
    ) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
            conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False)
            return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_chans, width, 5, 2),
            nn.MaxPool2d(2),
            *block(width, 2 * width, 3),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width, 3),
            *block(4 * width, 4 * width, 3),
            nn.AdaptiveAvgPool2d(grid),
        )
        self.fc = nn.Sequential(nn.Linear(4 * width * grid * grid, feature_dim), nn.ReLU())
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))
