"""Region (overlap) losses for segmentation: Dice, Jaccard and Tversky.

All three are ``1 - T(α, β)`` of one soft Tversky score (Salehi et al., 2017,
arXiv:1706.05721): Dice is α = β = 0.5, Jaccard α = β = 1. The semantics (masking, empty
classes, aggregation) follow segmentation_models_pytorch 0.5.0, which our tests check against.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionzoo.registry import register_loss

MODES = ("binary", "multiclass", "multilabel")


def soft_tversky_score(
    probs: torch.Tensor,
    target: torch.Tensor,
    alpha: float,
    beta: float,
    smooth: float = 0.0,
    eps: float = 1e-7,
    dims: tuple[int, ...] = (0, 2),
) -> torch.Tensor:
    """Soft Tversky index ``(TP + s) / (TP + α·FP + β·FN + s)`` reduced over ``dims``.

    ``probs`` and ``target`` share a shape, e.g. (B, C, N) → (C,) for the default ``dims``.
    TP is ``(Σp + Σt - ‖p - t‖₁) / 2``, i.e. Σ min(p, t), so soft labels give a proper
    Jaccard/Dice metric loss (Wang & Blaschko, arXiv:2302.05666); for hard labels it equals Σ p·t.
    """
    p_sum = probs.sum(dims)
    t_sum = target.sum(dims)
    tp = (p_sum + t_sum - torch.linalg.vector_norm(probs - target, ord=1, dim=dims)) / 2
    fp = p_sum - tp
    fn = t_sum - tp
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth).clamp_min(eps)


class _TverskyFamilyLoss(nn.Module):
    """Shared body of the region losses: activation, ignore masking, per-class score, aggregation.

    Subclasses fix the Tversky weights ``alpha`` (FP), ``beta`` (FN) and the exponent ``gamma``.
    ``forward(logits, target)`` takes logits (B, C, *) and a target of shape
    binary: (B, 1, *) or (B, *); multiclass: (B, *) long class indices; multilabel: (B, C, *).
    Returns a scalar: the class mean of ``1 - score`` (or ``-log score``), raised to ``gamma``.
    ``classes`` keeps only those channels in the mean; a class absent from the target adds zero.
    """

    alpha: float
    beta: float
    gamma: float = 1.0

    def __init__(
        self,
        mode: str,
        classes: list[int] | None = None,
        log_loss: bool = False,
        smooth: float = 0.0,
        ignore_index: int | None = None,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        if classes is not None and mode == "binary":
            raise ValueError("`classes` selects channels and needs mode 'multiclass'/'multilabel'")
        self.mode = mode
        self.classes = None if classes is None else list(classes)
        self.log_loss = log_loss
        self.smooth = smooth
        self.ignore_index = ignore_index
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bs, num_classes = logits.shape[:2]
        # log-then-exp keeps gradients alive where the probability saturates at 0 or 1
        if self.mode == "multiclass":
            probs = logits.log_softmax(dim=1).exp()
        else:
            probs = F.logsigmoid(logits).exp()
        probs = probs.reshape(bs, num_classes, -1)

        if self.mode == "multiclass":
            target = target.reshape(bs, 1, -1).long()  # (B, 1, N) class indices
        else:
            target = target.reshape(bs, num_classes, -1)
        valid = None if self.ignore_index is None else target != self.ignore_index
        if valid is not None:
            target = target.masked_fill(~valid, 0)  # an in-range label for one_hot; zeroed below
        if self.mode == "multiclass":
            target = F.one_hot(target[:, 0], num_classes).permute(0, 2, 1)
        if valid is not None:
            # ignored pixels count neither as prediction nor as ground truth
            probs = probs * valid
            target = target * valid
        target = target.to(probs.dtype)

        dims = (0, 2)  # per class, pooled over the whole batch
        score = soft_tversky_score(
            probs, target, self.alpha, self.beta, self.smooth, self.eps, dims
        )
        loss = -torch.log(score.clamp_min(self.eps)) if self.log_loss else 1.0 - score
        # the score is undefined for a class absent from the target, so it contributes zero
        loss = loss * (target.sum(dims) > 0).to(loss.dtype)
        if self.classes is not None:
            loss = loss[self.classes]
        return loss.mean() ** self.gamma


@register_loss("dice")
class DiceLoss(_TverskyFamilyLoss):
    """Soft Dice loss ``1 - 2TP / (2TP + FP + FN)`` (Milletari et al., V-Net, 2016)."""

    alpha = beta = 0.5


@register_loss("jaccard")
class JaccardLoss(_TverskyFamilyLoss):
    """Soft Jaccard (IoU) loss ``1 - TP / (TP + FP + FN)`` (Rahman & Wang, 2016)."""

    alpha = beta = 1.0


@register_loss("tversky")
class TverskyLoss(_TverskyFamilyLoss):
    """Tversky loss: α weighs false positives, β false negatives; the mean is raised to ``gamma``.

    α = β = 0.5 is Dice; ``gamma`` > 1 gives the focal Tversky loss (Abraham & Khan, 2019).
    """

    def __init__(
        self,
        mode: str,
        alpha: float = 0.5,
        beta: float = 0.5,
        gamma: float = 1.0,
        classes: list[int] | None = None,
        log_loss: bool = False,
        smooth: float = 0.0,
        ignore_index: int | None = None,
        eps: float = 1e-7,
    ) -> None:
        super().__init__(mode, classes, log_loss, smooth, ignore_index, eps)
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
