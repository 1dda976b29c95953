"""Pairwise ranking loss over a batch of predicted scores, for score regression (aesthetics,
image quality), where the order of images matters as much as their values."""

from __future__ import annotations

import torch
import torch.nn as nn

from visionzoo.registry import register_loss


def pairwise_rank_loss(
    scores: torch.Tensor, target: torch.Tensor, margin: float = 0.0
) -> torch.Tensor:
    """Margin ranking (hinge) loss over every ordered pair ``(i, j)`` of the batch whose targets
    differ: ``max(0, margin − sign(t_i − t_j) · (s_i − s_j))``, averaged over those pairs (as
    ``torch.nn.MarginRankingLoss`` on all such pairs; the pairwise ranking term of Kong et al.,
    "Photo aesthetics ranking network with attributes and content adaptation", ECCV 2016, and
    of RankIQA, Liu et al., ICCV 2017).

    ``scores``, ``target``: (B,) (or (B, 1)). Returns a scalar; 0 when no two targets differ.
    """
    s, t = scores.reshape(-1), target.reshape(-1).to(scores.dtype)
    if s.shape != t.shape:
        raise ValueError(f"{s.numel()} scores but {t.numel()} targets; pass one of each per image")
    sign = torch.sign(t[:, None] - t[None, :])
    pairs = sign != 0
    if not pairs.any():
        return s.sum() * 0.0  # keeps the graph: a batch of equal targets has nothing to rank
    hinge = (margin - sign * (s[:, None] - s[None, :])).clamp_min(0)
    return hinge[pairs].mean()


@register_loss("pairwise_rank")
class PairwiseRankLoss(nn.Module):
    """``pairwise_rank_loss`` as a module: ``margin`` is in the units of the scores."""

    def __init__(self, *, margin: float = 0.0) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"pairwise_rank margin={margin}; use a margin ≥ 0")
        self.margin = margin

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return pairwise_rank_loss(scores, target, self.margin)
