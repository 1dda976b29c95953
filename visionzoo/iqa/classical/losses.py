"""``1 - SSIM`` and ``1 - MS-SSIM`` training losses, registered as ``ssim`` and ``ms_ssim``.

Importing this module registers them; the iqa family imports it. Both are differentiable
(``quantize`` is off) and reduce the per-image losses with ``reduction`` ("mean" | "sum" |
"none").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from visionzoo.iqa.classical.ssim import MS_SSIM_WEIGHTS, ms_ssim, ssim
from visionzoo.registry import register_loss


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction={reduction!r} is not one of 'mean', 'sum', 'none'")


@register_loss("ssim")
class SSIMLoss(nn.Module):
    """``1 - SSIM(pred, target)`` (Wang et al. 2004) of (B, C, H, W) images → scalar or (B,).

    Defaults compare all channels at full resolution (``channels="rgb"``, no downsampling), the
    usual choice for image restoration training; see :func:`~.ssim.ssim` for the options.
    """

    def __init__(
        self,
        *,
        data_range: float = 1.0,
        channels: str = "rgb",
        downsample: bool | int | str = False,
        kernel_size: int = 11,
        sigma: float = 1.5,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.kwargs = dict(
            data_range=data_range,
            channels=channels,
            downsample=downsample,
            kernel_size=kernel_size,
            sigma=sigma,
        )
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _reduce(1 - ssim(pred, target, **self.kwargs), self.reduction)


@register_loss("ms_ssim")
class MSSSIMLoss(nn.Module):
    """``1 - MS-SSIM(pred, target)`` (Wang et al. 2003) of (B, C, H, W) images → scalar or (B,).

    ``weights`` sets the scales (five by default, needing ≥ 176 px per side with the 11-px
    window); fewer weights or a smaller window suit small crops.
    """

    def __init__(
        self,
        *,
        data_range: float = 1.0,
        channels: str = "rgb",
        weights: Sequence[float] = MS_SSIM_WEIGHTS,
        kernel_size: int = 11,
        sigma: float = 1.5,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.kwargs = dict(
            data_range=data_range,
            channels=channels,
            weights=tuple(weights),
            kernel_size=kernel_size,
            sigma=sigma,
        )
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _reduce(1 - ms_ssim(pred, target, **self.kwargs), self.reduction)
