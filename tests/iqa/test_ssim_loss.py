"""SSIMLoss / MSSSIMLoss: registered names, 1 - metric, and float64 gradcheck."""

from __future__ import annotations

import torch

import visionzoo.iqa.classical.losses as losses
from visionzoo.iqa.classical import ms_ssim, ssim
from visionzoo.registry import create_loss


def test_losses_registered_and_equal_one_minus_metric() -> None:
    assert isinstance(create_loss("ssim"), losses.SSIMLoss)
    assert isinstance(create_loss("ms_ssim"), losses.MSSSIMLoss)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(1, 3, 176, 176, generator=g), torch.rand(1, 3, 176, 176, generator=g)
    torch.testing.assert_close(losses.SSIMLoss()(x, y), 1 - ssim(x, y, channels="rgb").mean())
    torch.testing.assert_close(
        losses.MSSSIMLoss(reduction="none")(x, y), 1 - ms_ssim(x, y, channels="rgb")
    )
    assert losses.SSIMLoss()(x, x).abs() < 1e-6


def test_gradcheck_float64() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64)
    y = (0.6 * x.detach() + 0.4 * y).requires_grad_(False)
    loss = losses.SSIMLoss(kernel_size=3, sigma=0.8)
    assert torch.autograd.gradcheck(lambda a: loss(a, y), (x,))
    ms = losses.MSSSIMLoss(weights=(0.4, 0.6), kernel_size=3, sigma=0.8)
    assert torch.autograd.gradcheck(lambda a: ms(a, y), (x,))
