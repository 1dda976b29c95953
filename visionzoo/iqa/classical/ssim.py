"""SSIM (Wang et al., IEEE TIP 2004) and MS-SSIM (Wang, Simoncelli, Bovik, Asilomar 2003).

Both follow the authors' MATLAB scripts (``ssim.m`` 2011 revision, ``msssim.m``): an 11×11
Gaussian window (σ = 1.5), ``'valid'`` filtering (no padding; the map is ``H-10 × W-10``),
C1 = (K1·L)², C2 = (K2·L)², population (not sample) statistics. Colour is reduced first
(``channels``); with ``"rgb"`` the per-channel maps are averaged, as scikit-image does with
``channel_axis``. Inputs are (B, C, H, W) floats in [0, data_range]; outputs are (B,).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from visionzoo.iqa.classical._filters import average_downsample, filter_separable_valid, gaussian_1d
from visionzoo.iqa.classical.color import to_channels

# Wang et al. 2003, Table/eq. 7: exponents of the five scales (fine → coarse).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(x.shape)}")


def ssim_maps(
    x: torch.Tensor,
    y: torch.Tensor,
    gauss: torch.Tensor,
    *,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure (cs) maps over the ``'valid'`` region (TIP 2004, eq. 13).

    ``gauss`` is the 1-D factor of the window. (B, C, H, W) × 2 → two (B, C, H-k+1, W-k+1) maps.
    """
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    stats = filter_separable_valid(torch.cat((x, y, x * x, y * y, x * y), dim=1), gauss)
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.chunk(5, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x, var_y, cov = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    return (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs, cs


def _auto_factor(h: int, w: int) -> int:
    # ssim.m: f = max(1, round(min(M, N) / 256)); MATLAB's round is half away from zero.
    return max(1, math.floor(min(h, w) / 256 + 0.5))


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    channels: str = "y",
    downsample: bool | int | str = "auto",
    kernel_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    quantize: bool = False,
    padding: str = "valid",
) -> torch.Tensor:
    """Mean SSIM of each image pair: (B, C, H, W) × 2 → (B,), higher is better (1 = identical).

    ``channels``: ``"y"`` (rgb2ycbcr luma), ``"gray"`` (MATLAB rgb2gray) or ``"rgb"`` (mean of
    per-channel SSIM); grey inputs are used as they are. ``downsample``: ``"auto"`` or ``True``
    is ssim.m's rule f = max(1, round(min(H, W)/256)) with an f×f averaging filter; ``False``
    (or 1) keeps full resolution, as scikit-image, torchmetrics and the IQA-PyTorch calibration
    do; an int fixes f. ``quantize`` rounds the converted channel to 8 bits like MATLAB on
    ``uint8`` input (needs ``data_range=1``). ``padding="reflect"`` averages a same-size map
    of reflection-padded images instead of the valid region (torchmetrics' convention).
    """
    _check_pair(x, y)
    x = to_channels(x, channels, quantize=quantize)
    y = to_channels(y, channels, quantize=quantize)
    if downsample is True or downsample == "auto":
        f = _auto_factor(*x.shape[-2:])
    elif downsample is False:
        f = 1
    elif isinstance(downsample, int) and downsample >= 1:
        f = downsample
    else:
        raise ValueError(f"downsample={downsample!r}: use 'auto', True, False or an int >= 1")
    x, y = average_downsample(x, f), average_downsample(y, f)
    if min(x.shape[-2:]) < kernel_size:
        raise ValueError(
            f"ssim: image {tuple(x.shape[-2:])} (after downsampling by {f}) is smaller than the "
            f"{kernel_size}×{kernel_size} window"
        )
    if padding == "reflect":
        p = (kernel_size - 1) // 2
        x, y = F.pad(x, (p, p, p, p), mode="reflect"), F.pad(y, (p, p, p, p), mode="reflect")
    elif padding != "valid":
        raise ValueError(f"padding={padding!r} is not 'valid' or 'reflect'")
    gauss = gaussian_1d(kernel_size, sigma, dtype=x.dtype, device=x.device)
    s, _ = ssim_maps(x, y, gauss, data_range=data_range, k1=k1, k2=k2)
    return s.mean(dim=(1, 2, 3))


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    channels: str = "y",
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    kernel_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    quantize: bool = False,
    padding: str = "valid",
) -> torch.Tensor:
    """MS-SSIM (Wang 2003, eq. 7): ∏_{j<M} cs_j^{w_j} · ssim_M^{w_M}; (B, C, H, W) × 2 → (B,).

    One scale per weight (five by default); between scales both images are halved by 2×2
    averaging with symmetric borders, as ``msssim.m``. Needs min(H, W) ≥ kernel_size · 2^(M-1).
    Negative mean cs / SSIM values (MATLAB would return a complex number) are clamped to 0.
    ``channels``/``quantize`` as in :func:`ssim`; ``"rgb"`` averages the channel means per scale.
    ``padding="reflect"`` takes the last scale's SSIM over reflection-padded images (cs terms
    stay on the valid region), which is what torchmetrics computes.
    """
    if padding not in ("valid", "reflect"):
        raise ValueError(f"padding={padding!r} is not 'valid' or 'reflect'")
    _check_pair(x, y)
    x = to_channels(x, channels, quantize=quantize)
    y = to_channels(y, channels, quantize=quantize)
    levels = len(weights)
    need = kernel_size * 2 ** (levels - 1)
    if min(x.shape[-2:]) < need:
        raise ValueError(
            f"ms_ssim: {levels} scales with a {kernel_size}-px window need images of at least "
            f"{need} px per side, got {tuple(x.shape[-2:])}; pass fewer weights"
        )
    gauss = gaussian_1d(kernel_size, sigma, dtype=x.dtype, device=x.device)
    w = torch.as_tensor(tuple(weights), dtype=x.dtype, device=x.device)
    values = []
    for level in range(levels):
        last = level == levels - 1
        if last and padding == "reflect":
            p = (kernel_size - 1) // 2
            x, y = F.pad(x, (p, p, p, p), mode="reflect"), F.pad(y, (p, p, p, p), mode="reflect")
        s, cs = ssim_maps(x, y, gauss, data_range=data_range, k1=k1, k2=k2)
        m = s if last else cs
        values.append(m.mean(dim=(2, 3)).mean(1))
        if level < levels - 1:
            x, y = average_downsample(x, 2), average_downsample(y, 2)
    stacked = torch.stack(values, dim=1).clamp_min(0)
    return torch.prod(stacked**w, dim=1)
