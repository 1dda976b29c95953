"""Earth mover's distance between score distributions, the NIMA training loss."""

from __future__ import annotations

import torch
import torch.nn as nn

from visionzoo.registry import register_loss


def emd(p: torch.Tensor, q: torch.Tensor, r: int = 2, eps: float = 1e-12) -> torch.Tensor:
    """Normalised EMD between score distributions over ordered bins (Hou et al., "Squared earth
    mover's distance-based loss for training deep neural networks", 2016; Talebi & Milanfar,
    NIMA, TIP 2018, eq. 1): ``(1/N · Σ_k |CDF_p(k) − CDF_q(k)|^r)^(1/r)``.

    ``p``, ``q``: (B, N) distributions (each row sums to 1; vote counts are normalised here).
    Returns (B,). ``eps`` keeps the root differentiable where ``p == q``. For ``r = 1`` this is
    the 1-Wasserstein distance over bins 1..N divided by N.
    """
    if p.shape != q.shape or p.ndim != 2:
        raise ValueError(
            f"emd needs two (B, N) distributions, got {tuple(p.shape)} and {tuple(q.shape)}"
        )
    p = p / p.sum(1, keepdim=True)
    q = q / q.sum(1, keepdim=True)
    gap = (p.cumsum(1) - q.cumsum(1)).abs().pow(r).mean(1)
    return (gap + eps).pow(1.0 / r)


@register_loss("emd")
class EMDLoss(nn.Module):
    """Batch mean of ``emd(softmax(logits), target, r)``; ``target`` (B, N) is a distribution or
    raw vote counts (each row is normalised, so unequal vote totals weigh alike)."""

    def __init__(self, *, r: int = 2) -> None:
        super().__init__()
        if r not in (1, 2):
            raise ValueError(f"emd r={r}; NIMA uses r=2 (or 1, the Wasserstein distance)")
        self.r = r

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return emd(logits.softmax(1), target.to(logits.dtype), self.r).mean()
