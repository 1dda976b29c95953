"""DMA-Net: deep multi-patch aggregation for high/low aesthetic classification."""

from __future__ import annotations

import torch
import torch.nn as nn

from visionzoo.aesthetics.models.common import Column, head_output, output_head
from visionzoo.registry import register_model

AGGREGATIONS = ("stats", "sort")


def aggregate(features: torch.Tensor, how: str) -> torch.Tensor:
    """Orderless aggregation of per-patch features (B, K, D) (Lu et al., "Deep multi-patch
    aggregation network for image style, aesthetics, and quality estimation", ICCV 2015,
    Sec. 3.2): ``stats`` → (B, 4D), each dimension's min, max, mean and median over the K
    patches; ``sort`` → (B, K·D), each dimension sorted over the patches (ascending)."""
    if how == "stats":
        return torch.cat(
            [
                features.min(1).values,
                features.max(1).values,
                features.mean(1),
                features.median(1).values,
            ],
            1,
        )
    if how == "sort":
        return features.sort(1).values.flatten(1)
    raise ValueError(f"dma aggregation={how!r}; choose one of {', '.join(AGGREGATIONS)}")


@register_model("aesthetics", "dma")
class DMA(nn.Module):
    """DMA-Net: ``num_patches`` patches of an image pass one shared column; their features are
    aggregated (``aggregation=stats|sort``) and FC layers decide high vs low.

    ``forward(image, crops (B, K, 3, c, c))`` → (B,) logits, or (B, 10) with
    ``objective=distribution``; ``sort`` needs K = ``num_patches``, ``stats`` any K."""

    uses_crops = True

    def __init__(
        self,
        *,
        num_patches: int = 4,
        aggregation: str = "stats",
        objective: str = "binary",
        width: int = 32,
        feature_dim: int = 64,
        hidden: int = 128,
        grid: int = 2,
        dropout: float = 0.5,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"dma aggregation={aggregation!r}; choose one of stats, sort")
        if num_patches < 2:
            raise ValueError(f"dma num_patches={num_patches}; aggregation needs ≥ 2 patches")
        self.objective, self.aggregation, self.num_patches = objective, aggregation, num_patches
        self.column = Column(in_chans=in_chans, width=width, feature_dim=feature_dim, grid=grid)
        size = (4 if aggregation == "stats" else num_patches) * feature_dim
        self.fc = nn.Sequential(nn.Linear(size, hidden), nn.ReLU())
        self.head = output_head(objective, hidden, dropout)

    def forward(self, image: torch.Tensor, crops: torch.Tensor | None = None) -> torch.Tensor:
        wrong = crops is None or (self.aggregation == "sort" and crops.shape[1] != self.num_patches)
        if wrong:
            got = 0 if crops is None else crops.shape[1]
            raise ValueError(
                f"dma needs {self.num_patches} patches per image but got {got}: set "
                f"data.num_crops={self.num_patches} (or model.num_patches={got})"
            )
        b, k = crops.shape[:2]
        features = self.column(crops.flatten(0, 1)).view(b, k, -1)
        return head_output(
            self.objective, self.head(self.fc(aggregate(features, self.aggregation)))
        )
