"""MATLAB-style filtering helpers shared by the classical metrics (private module).

``fspecial_gaussian`` mirrors MATLAB ``fspecial('gaussian', n, sigma)``; ``pad_symmetric`` is
MATLAB's ``'symmetric'`` boundary (mirror including the edge sample), which torch's ``reflect``
is not; ``filter2d`` is a depthwise correlation, i.e. MATLAB ``filter2`` / ``imfilter``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fspecial_gaussian(
    size: int,
    sigma: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | None = None,
) -> torch.Tensor:
    """The normalised ``size × size`` Gaussian window of MATLAB ``fspecial``; shape (size, size)."""
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    w = g[:, None] * g[None, :]
    return w / w.sum()


def gaussian_1d(
    size: int,
    sigma: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | None = None,
) -> torch.Tensor:
    """The 1-D factor g of ``fspecial_gaussian`` (= g gᵀ); shape (size,)."""
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def _mirror_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    # MATLAB 'symmetric': ... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...; period 2n covers any pad width.
    i = torch.arange(-before, n + after, device=device) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def pad_symmetric(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Pad (…, H, W) by ``(left, right, top, bottom)`` with MATLAB's ``'symmetric'`` rule."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    x = x.index_select(-2, _mirror_index(h, top, bottom, x.device))
    return x.index_select(-1, _mirror_index(w, left, right, x.device))


def filter2d(x: torch.Tensor, window: torch.Tensor, *, padding: str = "valid") -> torch.Tensor:
    """Correlate every channel of (B, C, H, W) with one 2-D ``window`` (kh, kw).

    ``padding``: ``"valid"`` (MATLAB ``filter2(..., 'valid')``), ``"zeros"`` (``filter2 'same'``),
    ``"replicate"`` or ``"symmetric"`` (``imfilter`` with that boundary, ``'same'`` size). For
    ``'same'`` the window centre is MATLAB's ``floor((k + 1) / 2)``.
    """
    c = x.shape[1]
    kh, kw = window.shape
    weight = window.to(x).expand(c, 1, kh, kw)
    if padding != "valid":
        top, left = (kh - 1) // 2, (kw - 1) // 2
        pad = (left, kw - 1 - left, top, kh - 1 - top)
        if padding == "symmetric":
            x = pad_symmetric(x, pad)
        elif padding == "zeros":
            x = F.pad(x, pad)
        elif padding == "replicate":
            x = F.pad(x, pad, mode="replicate")
        else:
            raise ValueError(
                f"padding={padding!r} is not one of 'valid', 'zeros', 'replicate', 'symmetric'"
            )
    factors = _separable(window)
    if factors is None:
        return F.conv2d(x, weight, groups=c)
    # a rank-1 window (a Gaussian): a column pass then a row pass, kh + kw multiply-adds per
    # pixel instead of kh·kw (float64 convolutions on the CPU are slow); equal up to rounding
    col, row = (f.to(x) for f in factors)
    x = F.conv2d(x, col.view(1, 1, kh, 1).expand(c, 1, kh, 1), groups=c)
    return F.conv2d(x, row.view(1, 1, 1, kw).expand(c, 1, 1, kw), groups=c)


def _separable(window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(column, row)`` with ``window == column ⊗ row`` to rounding, or None (not rank 1)."""
    w = window.double()
    total = w.sum()
    if w.shape[0] < 3 or w.shape[1] < 3 or total == 0:
        return None
    col, row = w.sum(1), w.sum(0) / total
    if (torch.outer(col, row) - w).abs().max() > 1e-12 * w.abs().max():
        return None
    return col, row


def filter_separable_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``filter2(g gᵀ, x, 'valid')`` per channel as two 1-D passes (k² → 2k multiply-adds)."""
    c, k = x.shape[1], g.numel()
    g = g.to(x)
    x = F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def average_downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """MATLAB ``imfilter(x, ones(f)/f^2, 'symmetric')`` then ``x(1:f:end, 1:f:end)``.

    (B, C, H, W) → (B, C, ceil(H/f), ceil(W/f)); used by Wang's SSIM (automatic downsampling)
    and MS-SSIM (f = 2) reference scripts.
    """
    if factor == 1:
        return x
    before = (factor - 1) // 2
    x = pad_symmetric(x, (before, factor - 1 - before, before, factor - 1 - before))
    return F.avg_pool2d(x, factor, stride=factor)
