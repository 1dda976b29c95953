"""IoU-family and smooth L1 box losses against torchvision / torch and hand-computed SIoU."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import (
    box_iou,
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
)

from visionzoo import create_loss
from visionzoo.losses.box import IOU_KINDS, aligned_box_iou

Reference = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _tv_iou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1 - box_iou(pred, target).diagonal()


TORCHVISION: dict[str, Reference] = {
    "iou": _tv_iou_loss,
    "giou": generalized_box_iou_loss,
    "diou": distance_box_iou_loss,
    "ciou": complete_box_iou_loss,
}


def _boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 60
    wh = 1 + torch.rand(n, 2, generator=generator, dtype=torch.float64) * 30
    return torch.cat((xy, xy + wh), 1)


def _box_pairs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 (N, 4) pairs: random (many disjoint), jittered, identical and nested boxes."""
    g = torch.Generator().manual_seed(seed)
    pred = _boxes(32, g)
    random = _boxes(12, g)
    jittered = pred[12:20] + torch.randn(8, 4, generator=g, dtype=torch.float64)
    identical = pred[20:26].clone()
    inner = torch.rand(6, 2, generator=g, dtype=torch.float64) * 0.3 + 0.1
    wh = pred[26:, 2:] - pred[26:, :2]
    nested = torch.cat((pred[26:, :2] + inner * wh, pred[26:, 2:] - inner.flip(1) * wh), 1)
    target = torch.cat((random, jittered, identical, nested))
    assert (target[:, 2:] > target[:, :2]).all()
    return pred, target


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", sorted(TORCHVISION))
def test_iou_losses_match_torchvision(kind: str, reduction: str) -> None:
    pred, target = _box_pairs()
    pred.requires_grad_(True)
    target.requires_grad_(True)
    ours = create_loss(f"{kind}_loss", reduction=reduction)(pred, target)
    ref = _reduce(TORCHVISION[kind](pred, target), reduction)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)

    grads = torch.autograd.grad(ours.sum(), (pred, target))
    ref_grads = torch.autograd.grad(ref.sum(), (pred, target))
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_aligned_box_iou_any_leading_shape() -> None:
    pred, target = _box_pairs(1)
    for kind in IOU_KINDS:
        flat = aligned_box_iou(pred, target, kind)
        batched = aligned_box_iou(pred.reshape(4, 8, 4), target.reshape(4, 8, 4), kind)
        assert batched.shape == (4, 8)
        torch.testing.assert_close(batched.reshape(-1), flat)
        single = aligned_box_iou(pred[3], target[3], kind)
        assert single.shape == ()
        torch.testing.assert_close(single, flat[3])


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "siou"])
def test_gradients_are_exact(kind: str) -> None:
    """Finite differences agree with autograd (CIoU is excluded: its α is held constant)."""
    g = torch.Generator().manual_seed(2)
    pred = _boxes(6, g)
    target = pred + torch.randn(6, 4, generator=g, dtype=torch.float64) * 2
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: aligned_box_iou(p, target, kind), (pred,))


@pytest.mark.parametrize("kind", IOU_KINDS)
def test_zero_size_boxes_are_finite(kind: str) -> None:
    pred = torch.tensor(
        [[5.0, 5.0, 5.0, 9.0], [5.0, 5.0, 9.0, 5.0], [5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]],
        requires_grad=True,
    )
    target = torch.tensor(
        [[4.0, 4.0, 8.0, 8.0], [5.0, 5.0, 9.0, 5.0], [5.0, 5.0, 5.0, 5.0], [1.0, 2.0, 3.0, 3.0]]
    )
    sim = aligned_box_iou(pred, target, kind)
    (grad,) = torch.autograd.grad(sim.sum(), pred)
    assert torch.isfinite(sim).all() and torch.isfinite(grad).all()


def test_half_precision_is_computed_in_float32() -> None:
    pred, target = _box_pairs()
    out = aligned_box_iou(pred.half(), target.half(), "ciou")
    assert out.dtype == torch.float32
    torch.testing.assert_close(
        out, aligned_box_iou(pred, target, "ciou").float(), atol=1e-2, rtol=0
    )


def test_identical_boxes_give_zero_loss() -> None:
    pred, _ = _box_pairs()
    for kind in IOU_KINDS:
        loss = create_loss(f"{kind}_loss", reduction="none")(pred, pred.clone())
        torch.testing.assert_close(loss, torch.zeros_like(loss), atol=1e-6, rtol=0)


def test_weighted_reductions() -> None:
    pred, target = _box_pairs()
    weight = torch.rand(len(pred), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    plain = 1 - aligned_box_iou(pred, target, "giou")
    loss = {r: create_loss("giou_loss", reduction=r) for r in ("mean", "sum", "none")}
    torch.testing.assert_close(loss["none"](pred, target, weight), plain * weight)
    torch.testing.assert_close(loss["sum"](pred, target, weight), (plain * weight).sum())
    torch.testing.assert_close(
        loss["mean"](pred, target, weight), (plain * weight).sum() / weight.sum()
    )
    zero = loss["mean"](pred, target, torch.zeros_like(weight))
    assert zero.item() == 0.0


def test_no_boxes_give_zero_not_nan() -> None:
    pred = torch.zeros(0, 4, requires_grad=True)
    for kind in IOU_KINDS:
        loss = create_loss(f"{kind}_loss")(pred, torch.zeros(0, 4))
        assert loss.item() == 0.0 and loss.requires_grad


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown IoU kind"):
        aligned_box_iou(torch.zeros(4), torch.zeros(4), "eiou")
    with pytest.raises(ValueError, match="reduction"):
        create_loss("ciou_loss", reduction="avg")
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        aligned_box_iou(torch.zeros(2, 5), torch.zeros(2, 5))


def _siou_loss_by_hand(box: tuple[float, ...], gt: tuple[float, ...]) -> float:
    """SIoU loss of one box pair, step by step as in Gevorgyan (2022)."""
    x1, y1, x2, y2 = box
    gx1, gy1, gx2, gy2 = gt
    w, h, gw, gh = x2 - x1, y2 - y1, gx2 - gx1, gy2 - gy1
    inter = max(0.0, min(x2, gx2) - max(x1, gx1)) * max(0.0, min(y2, gy2) - max(y1, gy1))
    iou = inter / (w * h + gw * gh - inter)
    # angle cost: x = c_h / σ = sin(α) with c_h the vertical centre offset
    cx, cy, gcx, gcy = (x1 + x2) / 2, (y1 + y2) / 2, (gx1 + gx2) / 2, (gy1 + gy2) / 2
    sigma = math.hypot(gcx - cx, gcy - cy)
    x = (max(gcy, cy) - min(gcy, cy)) / sigma
    angle = 1 - 2 * math.sin(math.asin(x) - math.pi / 4) ** 2
    # distance cost: c_w, c_h now the enclosing box's width and height
    enc_w = max(x2, gx2) - min(x1, gx1)
    enc_h = max(y2, gy2) - min(y1, gy1)
    gamma = 2 - angle
    rho_x = ((gcx - cx) / enc_w) ** 2
    rho_y = ((gcy - cy) / enc_h) ** 2
    distance = (1 - math.exp(-gamma * rho_x)) + (1 - math.exp(-gamma * rho_y))
    # shape cost, θ = 4
    omega_w = abs(w - gw) / max(w, gw)
    omega_h = abs(h - gh) / max(h, gh)
    shape = (1 - math.exp(-omega_w)) ** 4 + (1 - math.exp(-omega_h)) ** 4
    return 1 - iou + (distance + shape) / 2


SIOU_CASES = [
    # diagonal shift of equal squares: IoU = 1/7, α = π/4 so Λ = 1, γ = 1, ρ_x = ρ_y = (1/3)², Ω = 0
    ((0.0, 0.0, 2.0, 2.0), (1.0, 1.0, 3.0, 3.0), 1 - 1 / 7 + (1 - math.exp(-1 / 9))),
    # touching along x, widths 4 vs 2: IoU = 0, α = 0 so Λ = 0, γ = 2, ρ_x = (3/6)², ω_w = 1/2
    (
        (0.0, 0.0, 4.0, 2.0),
        (4.0, 0.0, 6.0, 2.0),
        1 + ((1 - math.exp(-0.5)) + (1 - math.exp(-0.5)) ** 4) / 2,
    ),
    # general angle, partial overlap, both shape terms
    ((0.0, 0.0, 2.0, 4.0), (1.0, 1.0, 7.0, 4.0), None),
    ((10.0, 20.0, 14.0, 23.0), (2.0, 3.0, 9.0, 30.0), None),
]


@pytest.mark.parametrize(("box", "gt", "closed_form"), SIOU_CASES)
def test_siou_matches_paper_by_hand(
    box: tuple[float, ...], gt: tuple[float, ...], closed_form: float | None
) -> None:
    by_hand = _siou_loss_by_hand(box, gt)
    if closed_form is not None:
        assert by_hand == pytest.approx(closed_form, abs=1e-12)
    ours = create_loss("siou_loss")(
        torch.tensor([box], dtype=torch.float64), torch.tensor([gt], dtype=torch.float64)
    )
    assert ours.item() == pytest.approx(by_hand, abs=1e-6)


def test_siou_loss_is_bounded() -> None:
    """0 ≤ loss ≤ 1 + (2(1 - e⁻²) + 2(1 - e⁻¹)⁴)/2 ≈ 2.03: IoU ∈ [0, 1], each ρ < 1, γ ≤ 2, ω ≤ 1.

    The supremum exceeds 2 only for far-apart boxes with extreme size ratios; ordinary boxes
    stay within [0, 2].
    """
    pred, target = _box_pairs()
    far = target + torch.tensor([500.0, 80.0, 500.0, 80.0], dtype=torch.float64)
    bound = 1 + (2 * (1 - math.exp(-2)) + 2 * (1 - math.exp(-1)) ** 4) / 2
    for t in (target, far):
        loss = create_loss("siou_loss", reduction="none")(pred, t)
        assert (loss >= -1e-7).all() and (loss <= 2).all()
    extreme = create_loss("siou_loss")(
        torch.tensor([[0.0, 0.0, 1e-3, 1e-3]], dtype=torch.float64),
        torch.tensor([[1e4, 1e2, 1e4 + 1, 1e2 + 1]], dtype=torch.float64),
    )
    assert 2 < extreme.item() <= bound


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("beta", [1.0, 0.3, 0.0])
def test_smooth_l1_matches_torch(beta: float, reduction: str) -> None:
    g = torch.Generator().manual_seed(4)
    pred = torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(10, 4, generator=g, dtype=torch.float64)
    ours = create_loss("smooth_l1", beta=beta, reduction=reduction)(pred, target)
    ref = F.smooth_l1_loss(pred, target, beta=beta, reduction=reduction)
    torch.testing.assert_close(ours, ref)
    weight = torch.rand(10, 1, generator=g, dtype=torch.float64)
    weighted = create_loss("smooth_l1", beta=beta, reduction=reduction)(pred, target, weight)
    elementwise = F.smooth_l1_loss(pred, target, beta=beta, reduction="none") * weight
    expected = {
        "none": elementwise,
        "sum": elementwise.sum(),
        "mean": elementwise.sum() / (weight.sum() * 4),
    }
    torch.testing.assert_close(weighted, expected[reduction])
