"""Box-regression losses: the IoU family (IoU, GIoU, DIoU, CIoU, SIoU) and smooth L1.

``aligned_box_iou`` is the one implementation of the IoU-like similarities between aligned boxes;
the registered losses are ``1 - similarity`` and detectors (YOLOv5) call it directly. IoU, GIoU,
DIoU and CIoU equal ``torchvision.ops`` (same ``eps`` placement, CIoU's α without gradient).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionzoo.losses.classification import _check_reduction
from visionzoo.registry import register_loss

IOU_KINDS = ("iou", "giou", "diou", "ciou", "siou")


def aligned_box_iou(
    pred: torch.Tensor, target: torch.Tensor, kind: str = "iou", eps: float = 1e-7
) -> torch.Tensor:
    """IoU-like similarity between aligned xyxy boxes: ``pred`` and ``target`` (..., 4) → (...).

    ``kind`` picks the similarity, each ``IoU`` minus a penalty:
      - ``iou``: intersection / union;
      - ``giou``: ``IoU - |C \\ (A ∪ B)| / |C|``, C the enclosing box (Rezatofighi et al., 2019);
      - ``diou``: ``IoU - ρ²/c²``, ρ the centre distance, c the enclosing diagonal
        (Zheng et al., AAAI 2020);
      - ``ciou``: ``DIoU - αv`` with the aspect-ratio term v and its trade-off α (ibid.);
      - ``siou``: ``IoU - (Δ + Ω)/2`` with the angle-aware distance cost Δ and the shape cost Ω,
        θ = 4 (Gevorgyan, arXiv:2205.12740, 2022).
    Differentiable in both inputs; boxes of zero width or height give finite values and gradients.
    Inputs in half precision are computed in float32, as torchvision does.
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"unknown IoU kind {kind!r}; expected one of {', '.join(IOU_KINDS)}")
    if pred.shape[-1] != 4 or target.shape[-1] != 4:
        raise ValueError(
            f"boxes must be (..., 4) xyxy; got pred {tuple(pred.shape)}, target "
            f"{tuple(target.shape)}"
        )
    if pred.dtype not in (torch.float32, torch.float64):
        pred = pred.float()
    if target.dtype not in (torch.float32, torch.float64):
        target = target.float()

    x1, y1, x2, y2 = pred.unbind(-1)
    x1g, y1g, x2g, y2g = target.unbind(-1)
    w, h = x2 - x1, y2 - y1
    wg, hg = x2g - x1g, y2g - y1g
    # relu, not clamp: its zero gradient at a touching edge matches torchvision's masked product
    inter = (torch.min(x2, x2g) - torch.max(x1, x1g)).relu() * (
        torch.min(y2, y2g) - torch.max(y1, y1g)
    ).relu()
    union = w * h + wg * hg - inter
    iou = inter / (union + eps)
    if kind == "iou":
        return iou

    cw = torch.max(x2, x2g) - torch.min(x1, x1g)  # enclosing box
    ch = torch.max(y2, y2g) - torch.min(y1, y1g)
    if kind == "giou":
        area_c = cw * ch
        return iou - (area_c - union) / (area_c + eps)

    dx = (x1g + x2g - x1 - x2) / 2  # centre offset target - pred
    dy = (y1g + y2g - y1 - y2) / 2
    if kind == "siou":
        distance = _siou_distance_cost(dx, dy, cw, ch, eps)
        return iou - (distance + _siou_shape_cost(w, h, wg, hg, eps)) / 2

    diou = iou - (dx**2 + dy**2) / (cw**2 + ch**2 + eps)
    if kind == "diou":
        return diou
    # clamp_min keeps w/h finite for flat boxes and equals torchvision's w/h elsewhere
    v = (4 / math.pi**2) * (
        torch.atan(wg / hg.clamp_min(eps)) - torch.atan(w / h.clamp_min(eps))
    ) ** 2
    with torch.no_grad():  # α is a trade-off weight, not optimised (Zheng et al.)
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


def _siou_distance_cost(
    dx: torch.Tensor, dy: torch.Tensor, cw: torch.Tensor, ch: torch.Tensor, eps: float
) -> torch.Tensor:
    """SIoU's Δ = Σ_t (1 - exp(-γ ρ_t)), γ = 2 - Λ, with the angle cost Λ folded in.

    The paper's Λ = 1 - 2 sin²(arcsin(|dy|/σ) - π/4) is sin(2α) = 2|dx||dy| / σ², σ² = dx² + dy²;
    the closed form avoids arcsin's infinite slope at α = π/2. The ``eps²`` floor only acts when
    the centres (nearly) coincide, where Λ ≤ 1 still holds and Δ ≈ 0 anyway.
    """
    angle = 2 * dx.abs() * dy.abs() / (dx**2 + dy**2).clamp_min(eps**2)
    gamma = 2 - angle
    rho_x = (dx / (cw + eps)) ** 2
    rho_y = (dy / (ch + eps)) ** 2
    return 2 - torch.exp(-gamma * rho_x) - torch.exp(-gamma * rho_y)


def _siou_shape_cost(
    w: torch.Tensor,
    h: torch.Tensor,
    wg: torch.Tensor,
    hg: torch.Tensor,
    eps: float,
    theta: float = 4.0,
) -> torch.Tensor:
    """SIoU's Ω = Σ_{w,h} (1 - exp(-ω))^θ, ω the size difference relative to the larger size."""
    omega_w = (w - wg).abs() / (torch.max(w, wg) + eps)
    omega_h = (h - hg).abs() / (torch.max(h, hg) + eps)
    return (1 - torch.exp(-omega_w)) ** theta + (1 - torch.exp(-omega_h)) ** theta


def weighted_reduce(
    loss: torch.Tensor, weight: torch.Tensor | None, reduction: str
) -> torch.Tensor:
    """Reduce a per-box ``loss`` (...) with an optional ``weight`` broadcastable to it.

    ``mean`` is the weighted mean ``Σ w·l / Σ w`` (FCOS's IoU loss); all-zero weights or no boxes
    give 0, not NaN. ``none`` returns ``w·l``.
    """
    if weight is not None:
        weight = weight.to(loss.dtype).expand_as(loss)
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum" or loss.numel() == 0:
        return loss.sum()
    if weight is None:
        return loss.mean()
    return loss.sum() / weight.sum().clamp_min(torch.finfo(loss.dtype).tiny)


class _BoxIoULoss(nn.Module):
    """``1 - aligned_box_iou(pred, target, kind)`` for xyxy boxes (..., 4), reduced over boxes.

    ``forward(pred, target, weight=None)``; ``weight`` (...) weighs each box, see
    ``weighted_reduce``. Subclasses fix ``kind``.
    """

    kind: str

    def __init__(self, reduction: str = "mean", eps: float = 1e-7) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction
        self.eps = eps

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        loss = 1 - aligned_box_iou(pred, target, self.kind, self.eps)
        return weighted_reduce(loss, weight, self.reduction)


@register_loss("iou_loss")
class IoULoss(_BoxIoULoss):
    """``1 - IoU`` (Yu et al., UnitBox, 2016); no gradient for disjoint boxes."""

    kind = "iou"


@register_loss("giou_loss")
class GIoULoss(_BoxIoULoss):
    """``1 - GIoU`` ∈ [0, 2] (Rezatofighi et al., CVPR 2019)."""

    kind = "giou"


@register_loss("diou_loss")
class DIoULoss(_BoxIoULoss):
    """``1 - DIoU`` ∈ [0, 2]: IoU loss plus the normalised centre distance (Zheng et al., 2020)."""

    kind = "diou"


@register_loss("ciou_loss")
class CIoULoss(_BoxIoULoss):
    """``1 - CIoU``: DIoU loss plus the aspect-ratio term αv (Zheng et al., 2020)."""

    kind = "ciou"


@register_loss("siou_loss")
class SIoULoss(_BoxIoULoss):
    """``1 - IoU + (Δ + Ω)/2``: angle-aware distance and shape costs (Gevorgyan, 2022)."""

    kind = "siou"


@register_loss("smooth_l1")
class SmoothL1Loss(nn.Module):
    """Smooth L1 (Huber / β) of ``pred - target``, same shapes (Girshick, Fast R-CNN, 2015, eq. 3).

    ``beta`` is the L2 → L1 switch point (0 gives L1). ``forward(pred, target, weight=None)``
    reduces as ``weighted_reduce``; unweighted it equals ``F.smooth_l1_loss``.
    """

    def __init__(self, beta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.beta = beta
        self.reduction = reduction

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        loss = F.smooth_l1_loss(pred, target, reduction="none", beta=self.beta)
        return weighted_reduce(loss, weight, self.reduction)
