"""Gradient harmonizing losses GHM-C and GHM-R (Li, Liu & Wang, AAAI 2019, arXiv:1811.05181).

Each element's loss is weighted by ``β = N / GD(g)``, the inverse density of its gradient norm
``g`` among the N valid elements, so that the many easy examples (small g) and the few outliers
(g near 1) stop dominating the gradient. The density uses the paper's unit-region approximation:
[0, 1] is cut into ``bins`` equal bins and ``GD(g) = count(bin of g) · n``, where n is the number
of non-empty bins. The paper's M = ``bins`` would be the same up to a constant; counting only
non-empty bins (as mmdetection does) keeps Σβ = N, so the loss keeps the CE scale.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionzoo.losses.classification import _check_reduction
from visionzoo.registry import register_loss


class _GHMLoss(nn.Module):
    """Shared bin counting and weighting of GHM-C and GHM-R.

    With ``momentum`` > 0 the bin counts are an exponential moving average
    ``S ← momentum·S + (1 - momentum)·R`` over batches, as in the paper, kept in the buffer
    ``bin_count``. It starts from the first batch's counts (an all-zero start would inflate the
    first weights by 1 / (1 - momentum)) and is only updated in training mode. The buffer always
    holds the counts the last training batch was weighted with (the plain counts at momentum 0).

    ``reduction``: ``mean`` is the paper's ``Σ β·L / N`` (N the number of valid elements, at
    least 1), ``sum`` is ``Σ β·L`` and ``none`` returns ``β·L`` (0 at invalid elements); each is
    multiplied by ``loss_weight``.
    """

    def __init__(
        self,
        bins: int = 10,
        momentum: float = 0.0,
        loss_weight: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if bins < 1:
            raise ValueError(f"bins must be a positive integer, got {bins}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        _check_reduction(reduction)
        self.bins = bins
        self.momentum = momentum
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.register_buffer("bin_count", torch.zeros(bins))

    def harmonizing_weights(self, g: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """β = N / (count(bin of g) · n) per element of ``g`` (any shape, values in [0, 1]).

        Invalid elements get weight 0 and are not counted. Bin i holds ``i/bins ≤ g < (i+1)/bins``;
        the last edge sits slightly above 1 so that g = 1 falls in the last bin.
        """
        # counts, N and β reach millions and g must resolve the edge above 1: no float16 here
        dtype = torch.promote_types(g.dtype, torch.float32)
        g = g.to(dtype)
        edges = torch.arange(self.bins + 1, device=g.device, dtype=dtype) / self.bins
        edges[-1] += 1e-6
        index = torch.bucketize(g, edges, right=True) - 1
        # invalid elements go to an overflow bin, which keeps the count free of host syncs
        index = torch.where(valid, index, self.bins)
        counts = torch.bincount(index.flatten(), minlength=self.bins + 1)[: self.bins]
        counts = counts.to(dtype)
        non_empty = (counts > 0).sum()

        if self.momentum > 0:
            started = self.bin_count.sum() > 0
            average = self.momentum * self.bin_count.to(dtype) + (1 - self.momentum) * counts
            counts = torch.where(started, average, counts)
        if self.training:
            self.bin_count.copy_(counts)

        total = valid.sum().clamp_min(1).to(dtype)
        density = counts[index.clamp_max(self.bins - 1)] * non_empty
        return torch.where(valid, total / density.clamp_min(1e-12), 0.0)

    def _reduce(
        self, loss: torch.Tensor, weights: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        loss = loss * weights * self.loss_weight
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / valid.sum().clamp_min(1)


@register_loss("ghm_c")
class GHMCLoss(_GHMLoss):
    """GHM-C: sigmoid cross-entropy weighted by the density of ``g = |sigmoid(x) - y|``.

    ``forward(logits, target, valid=None)``: ``logits`` and binary / one-hot ``target`` share a
    shape, e.g. (anchors, classes); ``valid`` (same shape, bool or weights > 0) marks the elements
    that count, e.g. to drop ignored anchors. Returns a scalar unless ``reduction="none"``.
    """

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        if target.shape != logits.shape:
            raise ValueError(
                f"ghm_c needs binary/one-hot targets shaped like the logits {tuple(logits.shape)}; "
                f"got {tuple(target.shape)} (one-hot encode class indices first)"
            )
        target = target.to(logits.dtype)
        valid = torch.ones_like(target, dtype=torch.bool) if valid is None else valid > 0
        g = (torch.sigmoid(logits.detach()) - target).abs()
        weights = self.harmonizing_weights(g, valid)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return self._reduce(loss, weights, valid)


@register_loss("ghm_r")
class GHMRLoss(_GHMLoss):
    """GHM-R: authentic smooth L1 ``ASL1(d) = √(d² + μ²) - μ`` weighted by the density of
    its gradient norm ``g = |d| / √(d² + μ²)``, d = pred - target.

    ``forward(pred, target, valid=None)`` on same-shape regression targets, e.g. (boxes, 4)
    deltas; ``valid`` as in ``ghm_c``. ``mu`` sets where ASL1 turns from quadratic to linear.
    """

    def __init__(
        self,
        mu: float = 0.02,
        bins: int = 10,
        momentum: float = 0.0,
        loss_weight: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(bins, momentum, loss_weight, reduction)
        self.mu = mu

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        if target.shape != pred.shape:
            raise ValueError(f"target shape {tuple(target.shape)} != pred {tuple(pred.shape)}")
        valid = torch.ones_like(pred, dtype=torch.bool) if valid is None else valid > 0
        diff = pred - target.to(pred.dtype)
        root = torch.sqrt(diff**2 + self.mu**2)
        weights = self.harmonizing_weights((diff / root).detach().abs(), valid)
        return self._reduce(root - self.mu, weights, valid)
