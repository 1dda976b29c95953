"""RAPID: single- and double-column networks for high/low aesthetic classification."""

from __future__ import annotations

import torch
import torch.nn as nn

from visionzoo.aesthetics.models.common import Column, head_output, output_head
from visionzoo.registry import register_model


@register_model("aesthetics", "rapid")
class RAPID(nn.Module):
    """RAPID (Lu et al., ACM MM 2014): a global column sees the whole image warped to a square,
    and (``columns=2``, the DCNN) a local column sees crops at full resolution; their features
    are concatenated and one FC layer decides high vs low (binary cross-entropy). ``columns=1``
    is the single-column SCNN on the global view. The local column's features are averaged over
    the crops of an image (one random crop per image in the paper's training).

    ``forward(image (B, 3, S, S), crops (B, K, 3, c, c) | None)`` → (B,) logits, or (B, 10)
    with ``objective=distribution``."""

    def __init__(
        self,
        *,
        columns: int = 2,
        objective: str = "binary",
        width: int = 32,
        feature_dim: int = 128,
        grid: int = 4,
        dropout: float = 0.5,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if columns not in (1, 2):
            raise ValueError(f"rapid columns={columns}; choose 1 (SCNN) or 2 (DCNN)")
        self.objective, self.columns = objective, columns
        self.uses_crops = columns == 2
        column = {"in_chans": in_chans, "width": width, "feature_dim": feature_dim, "grid": grid}
        self.global_column = Column(**column)
        self.local_column = Column(**column) if columns == 2 else None
        self.head = output_head(objective, columns * feature_dim, dropout)

    def forward(self, image: torch.Tensor, crops: torch.Tensor | None = None) -> torch.Tensor:
        features = [self.global_column(image)]
        if self.local_column is not None:
            if crops is None:
                raise ValueError("rapid columns=2 needs local crops: set data.num_crops ≥ 1")
            b, k = crops.shape[:2]
            local = self.local_column(crops.flatten(0, 1)).view(b, k, -1).mean(1)
            features.append(local)
        return head_output(self.objective, self.head(torch.cat(features, 1)))
