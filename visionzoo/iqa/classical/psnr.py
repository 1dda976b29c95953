"""Peak signal-to-noise ratio, batched: 10 · log10(data_range² / MSE) per image."""

from __future__ import annotations

import torch

from visionzoo.iqa.classical.color import to_channels


def psnr(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    channels: str = "rgb",
    quantize: bool = False,
) -> torch.Tensor:
    """PSNR in dB of each pair: (B, C, H, W) × 2 → (B,); higher is better, ``inf`` if equal.

    The MSE runs over every value of the compared channels (``"rgb"``: all three, like
    scikit-image ``peak_signal_noise_ratio`` on an H×W×3 array; ``"y"``: rgb2ycbcr luma, the
    super-resolution convention; ``"gray"``: MATLAB rgb2gray).
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(
            f"psnr: x and y must both be (B, C, H, W), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    x = to_channels(x, channels, quantize=quantize)
    y = to_channels(y, channels, quantize=quantize)
    mse = (x - y).pow(2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(data_range**2 / mse)
