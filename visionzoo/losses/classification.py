"""Per-pixel / per-element classification losses: cross-entropy, focal and binary cross-entropy.

Every loss takes logits; ``ignore_index`` drops target positions from both the loss and the
``mean`` denominator, as ``F.cross_entropy`` does.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from visionzoo.registry import register_loss

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"unknown reduction {reduction!r}; expected one of {', '.join(REDUCTIONS)}"
        )


def _masked_reduce(loss: torch.Tensor, valid: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Reduce an element-wise ``loss``; ``valid`` (same shape, bool) zeroes ignored elements.

    ``mean`` divides by the number of valid elements (at least 1, so an all-ignored batch gives 0
    rather than NaN).
    """
    if valid is not None:
        loss = loss * valid
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    count = loss.numel() if valid is None else valid.sum().clamp_min(1)
    return loss.sum() / count


def _binary_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Accept a (B, *) target for (B, 1, *) logits, the usual binary-mask layout."""
    if target.dim() == logits.dim() - 1 and logits.shape[1] == 1:
        target = target.unsqueeze(1)
    if target.shape != logits.shape:
        raise ValueError(f"target shape {tuple(target.shape)} != logits {tuple(logits.shape)}")
    return target


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """Sigmoid focal loss ``-α_t (1 - p_t)^γ log p_t`` (Lin et al., RetinaNet, 2017, eq. 5).

    ``logits`` and ``targets`` (in [0, 1]) share any shape. ``alpha`` < 0 disables the α_t
    weighting, as in ``torchvision.ops.sigmoid_focal_loss``, which this equals.
    """
    _check_reduction(reduction)
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return _masked_reduce(loss, None, reduction)


def class_weights_from_masks(
    masks: Iterable[torch.Tensor | np.ndarray], num_classes: int, ignore_index: int | None = 255
) -> list[float]:
    """Median-frequency class weights for cross-entropy (Eigen & Fergus, 2015, sec. 4.2).

    ``masks`` yields label maps of any shape. ``freq(c)`` is the pixel count of class ``c``
    divided by the pixel count of the masks that contain ``c``; the weight is
    ``median(freq) / freq(c)``. A class seen in no mask gets the neutral weight 1.0 (a zero weight
    would make a batch of only that class divide 0 by 0). Returns a list for the ``weight`` key.
    """
    counts = torch.zeros(num_classes, dtype=torch.float64)
    exposure = torch.zeros(num_classes, dtype=torch.float64)
    for mask in masks:
        labels = torch.as_tensor(mask).reshape(-1).long()
        if ignore_index is not None:
            labels = labels[labels != ignore_index]
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"mask labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}; "
                f"found values in [{labels.min().item()}, {labels.max().item()}]"
            )
        per_class = torch.bincount(labels, minlength=num_classes).double()
        counts += per_class
        exposure += (per_class > 0).double() * labels.numel()
    seen = counts > 0
    if not seen.any():
        raise ValueError("no labelled pixels found in the masks; cannot compute class weights")
    freq = counts[seen] / exposure[seen]
    weights = torch.ones(num_classes, dtype=torch.float64)
    # the median of an even count is the mean of the middle two (torch.median takes the lower)
    weights[seen] = freq.quantile(0.5) / freq
    return weights.tolist()


@register_loss("cross_entropy")
class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy: logits (B, C, *) and long targets (B, *) → scalar.

    Thin wrapper of ``F.cross_entropy`` that takes class weights as a plain list (config-friendly)
    and moves them with the module. With weights, ``mean`` divides by the summed target weights.
    """

    requires_weight = False

    def __init__(
        self,
        weight: list[float] | None = None,
        ignore_index: int = 255,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if weight is None and self.requires_weight:
            raise ValueError(
                "weighted_cross_entropy needs `weight`, one float per class; compute it with "
                "visionzoo.losses.classification.class_weights_from_masks or use cross_entropy"
            )
        self.register_buffer(
            "weight", None if weight is None else torch.tensor(weight, dtype=torch.float32)
        )
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(logits.dtype)
        return F.cross_entropy(
            logits,
            target.long(),
            weight=weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )


@register_loss("weighted_cross_entropy")
class WeightedCrossEntropyLoss(CrossEntropyLoss):
    """Cross-entropy with a mandatory per-class ``weight`` (see ``class_weights_from_masks``)."""

    requires_weight = True


@register_loss("focal")
class FocalLoss(nn.Module):
    """Focal loss for dense prediction (Lin et al., 2017).

    ``mode="multiclass"``: softmax focal ``-α_t (1 - p_t)^γ log p_t`` with logits (B, C, *) and
    long targets (B, *); ``alpha`` is a per-class list (α_t = alpha[target]) or a float applied to
    every class (kornia's convention), < 0 or None disables it.
    ``mode="binary"``/``"multilabel"``: sigmoid focal per element with logits (B, C, *) and targets
    of the same shape ((B, *) also accepted when C = 1); ``alpha`` is a float, < 0 disables it.
    Without ignored elements binary ``mean`` equals ``torchvision.ops.sigmoid_focal_loss``.
    """

    def __init__(
        self,
        mode: str,
        alpha: float | list[float] | None = 0.25,
        gamma: float = 2.0,
        ignore_index: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if mode not in ("binary", "multiclass", "multilabel"):
            raise ValueError(f"unknown mode {mode!r}; expected binary, multiclass or multilabel")
        _check_reduction(reduction)
        if isinstance(alpha, (list, tuple)):
            if mode != "multiclass":
                raise ValueError("a per-class alpha list needs mode='multiclass'; pass a float")
            self.register_buffer("class_alpha", torch.tensor(alpha, dtype=torch.float32))
            self.alpha = -1.0
        else:
            self.register_buffer("class_alpha", None)
            self.alpha = -1.0 if alpha is None else float(alpha)
        self.mode = mode
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.mode != "multiclass":
            target = _binary_target(logits, target)
        valid = None if self.ignore_index is None else target != self.ignore_index
        if valid is not None:
            target = target.masked_fill(~valid, 0)  # any legal value; masked in the reduction

        if self.mode != "multiclass":
            loss = sigmoid_focal_loss(logits, target, self.alpha, self.gamma, reduction="none")
            return _masked_reduce(loss, valid, self.reduction)

        target = target.long()
        log_p_t = logits.log_softmax(dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
        loss = -((1 - log_p_t.exp()) ** self.gamma) * log_p_t
        if self.class_alpha is not None:
            loss = loss * self.class_alpha.to(loss.dtype)[target]
        elif self.alpha >= 0:
            loss = loss * self.alpha
        return _masked_reduce(loss, valid, self.reduction)


@register_loss("sigmoid_focal")
class SigmoidFocalLoss(nn.Module):
    """Detection-style sigmoid focal loss on logits and same-shape {0, 1} (one-hot) targets.

    ``reduction`` defaults to ``sum`` because detectors divide by the number of positive anchors
    themselves (RetinaNet); ``mean`` and ``none`` are available.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "sum") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return sigmoid_focal_loss(logits, targets, self.alpha, self.gamma, self.reduction)


@register_loss("bce")
class BCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy on logits (B, C, *) and same-shape targets in [0, 1] ((B, *) if C = 1).

    ``pos_weight`` is one float or one float per channel C (broadcast over the spatial dims);
    elements whose target equals ``ignore_index`` are dropped.
    """

    def __init__(
        self,
        pos_weight: float | list[float] | None = None,
        ignore_index: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.register_buffer(
            "pos_weight",
            None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float32),
        )
        self.ignore_index = ignore_index
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _binary_target(logits, target)
        valid = None if self.ignore_index is None else target != self.ignore_index
        if valid is not None:
            target = target.masked_fill(~valid, 0)
        pos_weight = self.pos_weight
        if pos_weight is not None and pos_weight.dim() == 1:
            # torch broadcasts pos_weight against the last dim; ours is per channel (dim 1)
            pos_weight = pos_weight.reshape(-1, *([1] * (logits.dim() - 2)))
        loss = F.binary_cross_entropy_with_logits(
            logits,
            target.to(logits.dtype),
            pos_weight=None if pos_weight is None else pos_weight.to(logits.dtype),
            reduction="none",
        )
        return _masked_reduce(loss, valid, self.reduction)
