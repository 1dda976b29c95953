"""Natural-scene statistics shared by NIQE and BRISQUE (Mittal, Moorthy, Bovik 2012).

MSCN coefficients (eq. 1 of the BRISQUE paper) and the moment-matching fits of a generalised
Gaussian (GGD) and an asymmetric GGD (AGGD) to them, exactly as the LIVE MATLAB releases do:
the shape α is the grid point of 0.2:0.001:10 whose moment ratio is nearest the sample's. All
fits are batched over leading dimensions and run in the input dtype (use float64).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from visionzoo.iqa.classical._filters import filter2d

# |I - μ| below this (0..255 scale) means a flat 7×7 neighbourhood: the exact MSCN there is 0,
# and what a float filter returns instead is rounding residue. Its fate decides the AGGD side
# counts of saturated blocks (TID2013 I19 moves NIQE by 5 %, BRISQUE by 10 %), so it is set on
# purpose (see ``mscn``). Real deviations are ≥ ~1e-4 (one grey level × the window's corner
# weight), so 1e-8 separates the two safely.
FLAT_TOL = 1e-8
# The four pairwise-product directions of both papers: circshift by [0 1], [1 0], [1 1], [-1 1].
SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


def gamma_fn(t: torch.Tensor) -> torch.Tensor:
    """Γ(t) for t > 0."""
    return torch.exp(torch.lgamma(t))


@lru_cache(maxsize=8)
def _shape_grid(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return 0.2 + 0.001 * torch.arange(9801, dtype=dtype, device=device)


def mscn(
    image: torch.Tensor, window: torch.Tensor, *, padding: str, flat: str = "zero"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(I - μ) / (σ + 1) with Gaussian-weighted local μ, σ: (B, 1, H, W) → (mscn, σ), same shape.

    ``padding``: ``"replicate"`` for NIQE (``imfilter``), ``"zeros"`` for BRISQUE (``filter2``).
    Pixel values are expected on the 0..255 scale the constant 1 was chosen for.
    ``flat`` fixes the MSCN of flat neighbourhoods: ``"zero"`` (exact arithmetic; reproduces the
    LIVE NIQE scores) or ``"conv2"``, which mimics MATLAB ``conv2``'s rounding: exact for grey 0
    and powers of two (scaling by 2^k is exact), a same-signed residue otherwise — a
    positive pairwise product. This reproduces the LIVE BRISQUE scores; ``"zero"`` misses
    TID2013 I08 by 10 % and torch's own residue misses I19 by 10 %.
    """
    mu = filter2d(image, window, padding=padding)
    sigma = (filter2d(image * image, window, padding=padding) - mu * mu).abs().sqrt()
    diff = image - mu
    is_flat = diff.abs() < FLAT_TOL
    if flat == "zero":
        diff = torch.where(is_flat, 0, diff)
    elif flat == "conv2":
        exact = (image == 0) | (torch.frexp(image).mantissa == 0.5)
        diff = torch.where(is_flat, torch.where(exact, 0, FLAT_TOL * 1e-3), diff)
    else:
        raise ValueError(f"flat={flat!r} is not 'zero' or 'conv2'")
    return diff / (sigma + 1), sigma


def fit_ggd(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GGD fit over the last dim (``estimateggdparam.m``): (…, N) → (α, σ²), each (…)."""
    grid = _shape_grid(v.dtype, v.device)
    r_grid = gamma_fn(1 / grid) * gamma_fn(3 / grid) / gamma_fn(2 / grid) ** 2
    sigma_sq = v.pow(2).mean(-1)
    rho = sigma_sq / v.abs().mean(-1) ** 2
    alpha = grid[(rho[..., None] - r_grid).abs().argmin(-1)]
    return alpha, sigma_sq


def fit_aggd(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AGGD fit over the last dim (``estimateaggdparam.m``): (…, N) → (α, left σ, right σ).

    A side with no samples gives a NaN σ, as in MATLAB (NIQE's ``nanmean``/``nancov`` drop it).
    """
    grid = _shape_grid(v.dtype, v.device)
    r_grid = gamma_fn(2 / grid) ** 2 / (gamma_fn(1 / grid) * gamma_fn(3 / grid))
    neg, pos = v < 0, v > 0
    sq = v * v
    left = ((sq * neg).sum(-1) / neg.sum(-1)).sqrt()
    right = ((sq * pos).sum(-1) / pos.sum(-1)).sqrt()
    g = left / right
    r_hat = v.abs().mean(-1) ** 2 / sq.mean(-1)
    r_norm = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    # An all-NaN argmin is index 1 in MATLAB, so a NaN ratio gives α = 0.2 (not NaN).
    alpha = grid[(r_grid - r_norm[..., None]).pow(2).nan_to_num(nan=torch.inf).argmin(-1)]
    return alpha, left, right


def shifted_products(x: torch.Tensor) -> torch.Tensor:
    """x · circshift(x, s) for each of ``SHIFTS`` (last two dims): (…, H, W) → (4, …, H, W)."""
    return torch.stack([x * torch.roll(x, shifts=s, dims=(-2, -1)) for s in SHIFTS])
